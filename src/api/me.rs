//! `GET /api/me`: the authenticated user.

use actix_web::{web, HttpResponse};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::{users, Store};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me));
}

async fn me(db: web::Data<Store>, caller: AuthUser) -> Result<HttpResponse, ApiError> {
    let user = db
        .read(move |conn| users::get(conn, caller.user_id))
        .await?
        // the token outlived its user: treat it as any unknown token
        .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    Ok(HttpResponse::Ok().json(user))
}
