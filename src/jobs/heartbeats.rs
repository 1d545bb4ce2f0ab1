//! The actor that writes buffered heartbeats (see `crate::heartbeats`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context};

use crate::heartbeats::{Heartbeats, FLUSH_EVERY};
use crate::store::Store;

pub struct HeartbeatFlusher {
    heartbeats: Heartbeats,
    db: Store,
    busy: Arc<AtomicBool>,
}

impl HeartbeatFlusher {
    pub fn new(heartbeats: Heartbeats, db: Store) -> HeartbeatFlusher {
        HeartbeatFlusher {
            heartbeats,
            db,
            busy: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Actor for HeartbeatFlusher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(FLUSH_EVERY, |flusher, _| {
            if flusher.busy.swap(true, Ordering::AcqRel) {
                return;
            }
            let (heartbeats, db) = (flusher.heartbeats.clone(), flusher.db.clone());
            let busy = flusher.busy.clone();
            actix::spawn(async move {
                let result = actix_web::web::block(move || heartbeats.flush(&db)).await;
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => log::warn!("writing heartbeats failed: {e}"),
                    Err(e) => log::warn!("writing heartbeats failed: {e}"),
                }
                busy.store(false, Ordering::Release);
            });
        });
    }
}
