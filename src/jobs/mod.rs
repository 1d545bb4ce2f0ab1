//! Background jobs, as actix interval actors started by `serve`.

pub mod sweeper;
