//! The actor that writes buffered heartbeats (see `crate::heartbeats`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context};

use crate::app::State;
use crate::heartbeats::FLUSH_EVERY;

pub struct HeartbeatFlusher {
    state: State,
    busy: Arc<AtomicBool>,
}

impl HeartbeatFlusher {
    pub fn new(state: State) -> HeartbeatFlusher {
        HeartbeatFlusher {
            state,
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
            let state = flusher.state.clone();
            let busy = flusher.busy.clone();
            actix::spawn(async move {
                let result = actix_web::web::block(move || state.heartbeats.flush(&state.db)).await;
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
