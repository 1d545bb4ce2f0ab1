//! Background jobs, as actix interval actors started by `serve`.

pub mod heartbeats;
pub mod sweeper;
