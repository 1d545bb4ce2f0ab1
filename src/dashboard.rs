//! The dashboard: the files of `static/`, embedded into the binary at build
//! time so the one binary is complete, served at `/` and `/static/…`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/static/{path:.*}", web::get().to(asset));
}

fn serve(path: &str) -> Result<HttpResponse, ApiError> {
    let file = Assets::get(path).ok_or_else(|| ApiError::not_found("not found"))?;
    Ok(HttpResponse::Ok()
        .content_type(file.metadata.mimetype())
        // small files, rebuilt with the binary: always revalidate
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::HeaderName::from_static("x-content-type-options"),
            "nosniff",
        ))
        .body(file.data.into_owned()))
}

async fn index() -> Result<HttpResponse, ApiError> {
    serve("index.html")
}

async fn asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&path.into_inner())
}
