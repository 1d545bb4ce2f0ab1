//! agenthub: a self-hosted control plane for coding-agent runtimes.
//!
//! Module map:
//! * [`config`] — config.toml + environment → [`config::Config`]
//! * [`app`] — the actix server built from a config (used by `serve` and tests)
//! * [`store`] — every read and write, as domain operations over a
//!   [`store::Conn`]; the SQLite engine and its SQL in `store::sqlite`
//! * [`auth`] — bearer tokens and workspace scoping as extractors
//! * [`api`] — HTTP handlers, one module per resource
//! * [`dashboard`] — the embedded web UI in `static/`
//! * [`admin`] — the operations behind `init`, `user add`, `token create`
//! * [`copy`] — `copy-data`: an install moved between engines
//! * [`access`] — one function per access rule (runtime reach, control)
//! * [`events`] — the in-process workspace event bus
//! * [`failures`] — tasks failed in bulk and what to publish about them
//! * [`daemon_hub`] — the daemons' open control sockets, by runtime
//! * [`heartbeats`] — group commit of heartbeats
//! * [`probes`] — pings and update requests waiting for a daemon
//! * [`jobs`] — background jobs (the sweeper)
//! * [`metrics`] — Prometheus metrics at `/metrics`
//! * [`error`] — the API's one error type
//!
//! Each capability is an `api::<resource>` module over `store::<table>`
//! modules, on top of the schema in `migrations/`.

pub mod access;
pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod copy;
pub mod daemon_hub;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod events;
pub mod failures;
pub mod heartbeats;
pub mod jobs;
pub mod metrics;
pub mod pricing;
pub mod probes;
pub mod redact;
pub mod relay;
pub mod store;
pub mod webhooks;
