//! Builds the HTTP server from a [`Config`]: used by `agenthub serve` and by
//! the tests, which start the real app on port 0 against a temporary file.

mod edge;

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{Server, Service};
use actix_web::http::header;
use actix_web::middleware::{Condition, ErrorHandlers, Logger};
use actix_web::{error, web, App, HttpServer};

use actix::Actor;

use crate::config::{Config, SweeperConfig};
use crate::daemon_hub::DaemonHub;
use crate::error::ApiError;
use crate::events::EventBus;
use crate::heartbeats::Heartbeats;
use crate::jobs::heartbeats::HeartbeatFlusher;
use crate::jobs::sweeper::{Sweeper, Sweeping};
use crate::metrics::Metrics;
use crate::store::{OpenError, Store};

/// How long in-flight requests get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = Box::pin(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::warn!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    });
    #[cfg(unix)]
    let terminate = Box::pin(async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    });
    #[cfg(not(unix))]
    let terminate = Box::pin(std::future::pending::<()>());
    futures_util::future::select(interrupt, terminate).await;
}

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the event relay: {0}")]
    Relay(std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    state: State,
    sweeper: SweeperConfig,
    webhooks: crate::config::WebhooksConfig,
}

/// What every request handler and background job shares.
#[derive(Clone)]
pub struct State {
    pub db: Store,
    pub events: EventBus,
    pub metrics: Metrics,
    pub heartbeats: Heartbeats,
    pub daemon_hub: DaemonHub,
}

impl<'a> From<&'a State> for Sweeping<'a> {
    fn from(state: &'a State) -> Sweeping<'a> {
        Sweeping {
            db: &state.db,
            events: &state.events,
            heartbeats: &state.heartbeats,
        }
    }
}

impl Application {
    /// Opens and migrates the database, binds the listener and builds the
    /// server; nothing runs until [`Application::run_until_stopped`].
    pub fn build(config: Config) -> Result<Application, StartError> {
        let db = Store::open(&config.database, crate::metrics::latency_histogram())?;
        let state = State {
            metrics: Metrics::new(&db),
            db,
            events: EventBus::new(),
            heartbeats: Heartbeats::default(),
            daemon_hub: DaemonHub::new(),
        };
        crate::relay::start(&state.db, &state.events, &state.daemon_hub)
            .map_err(StartError::Relay)?;
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?
            .port();
        let sweeper = config.sweeper.clone();
        let webhooks = config.webhooks.clone();
        let server =
            server(config, state.clone(), listener).map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Application {
            port,
            server,
            state,
            sweeper,
            webhooks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// Starts the background jobs and serves until SIGINT/SIGTERM: then it
    /// ends the event streams and daemon sockets, lets in-flight requests finish, writes the
    /// buffered heartbeats and checkpoints the WAL into the main file.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let events = self.state.events.clone();
        let daemon_hub = self.state.daemon_hub.clone();
        actix_web::rt::spawn(async move {
            shutdown_signal().await;
            log::info!("shutting down: finishing in-flight requests");
            events.close_streams();
            daemon_hub.close();
            handle.stop(true).await;
        });
        let state = &self.state;
        let sweeper = Sweeper::new(state.into(), state.metrics.clone(), self.sweeper).start();
        let flusher = HeartbeatFlusher::new(state.heartbeats.clone(), state.db.clone()).start();
        let sender = crate::webhooks::Sender::start(state.db.clone(), &self.webhooks);
        let result = self.server.await;
        drop((sweeper, flusher, sender));
        let state = self.state;
        let closing = web::block(move || {
            state.heartbeats.flush(&state.db)?;
            state.db.checkpoint()
        });
        match closing.await {
            Ok(Ok(())) => log::info!("database checkpointed, shutting down"),
            Ok(Err(e)) => log::warn!("final checkpoint failed: {e}"),
            Err(e) => log::warn!("final checkpoint failed: {e}"),
        }
        result
    }
}

fn server(config: Config, state: State, listener: TcpListener) -> std::io::Result<Server> {
    let db = web::Data::new(state.db);
    let events = web::Data::new(state.events);
    let heartbeats = web::Data::new(state.heartbeats);
    let metrics = web::Data::new(state.metrics);
    let daemon_hub = web::Data::new(state.daemon_hub);
    let webhooks = web::Data::new(config.webhooks.clone());
    let origins = config.server.cors_allowed_origins.clone();
    let body_timeout = Duration::from_secs(config.server.body_timeout_secs);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(db.clone())
            .app_data(events.clone())
            .app_data(heartbeats.clone())
            .app_data(metrics.clone())
            .app_data(daemon_hub.clone())
            .app_data(webhooks.clone())
            .app_data(json_config())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                let detail = match err {
                    error::PathError::Deserialize(e) => e.to_string(),
                    other => other.to_string(),
                };
                ApiError::bad_request(format!("invalid id in path: {detail}")).into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request(format!("invalid query: {err}")).into()
            }))
            .configure(crate::api::configure)
            .configure(crate::dashboard::configure)
            .default_service(web::to(edge::unrouted))
            // innermost, so a timed-out body's 408 replaces whatever the
            // extractor made of it and still gets CORS headers
            .wrap_fn(move |req, srv| {
                let (req, expired) = edge::with_body_deadline(req, body_timeout);
                let response = srv.call(req);
                async move {
                    let res = response.await?;
                    if expired.get() {
                        return Ok(edge::body_timed_out(res));
                    }
                    Ok(res.map_into_boxed_body())
                }
            })
            .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
            // outside CORS, so its refusals are JSON too
            .wrap(ErrorHandlers::new().default_handler(edge::json_error_body))
            .wrap_fn({
                let metrics = metrics.clone();
                move |req, srv| {
                    let metrics = metrics.clone();
                    let response = srv.call(req);
                    async move {
                        let res = response.await?;
                        let route = res
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".to_string());
                        let method = res.request().method().as_str().to_string();
                        metrics.record_request(&method, &route, res.status().as_u16());
                        Ok(res)
                    }
                }
            })
            // heartbeats and health checks arrive many times a second from
            // every daemon and probe; /metrics counts them instead
            .wrap(
                Logger::new("%a \"%r\" %s %b %Dms")
                    .exclude("/health")
                    .exclude("/api/daemon/heartbeat"),
            )
    })
    // a daemon socket's wake-up must not wait ~40 ms for the ACK of the
    // frame before it (Nagle's algorithm meeting the peer's delayed ACK);
    // replies are written whole, so nothing gains from coalescing
    .tcp_nodelay(true)
    .listen(listener)?
    // run_until_stopped handles SIGINT/SIGTERM itself, so it can end the
    // event streams before waiting for requests to finish
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .run();
    Ok(server)
}

/// JSON bodies: any content type or none (so `curl -d` and bare clients
/// work), a size limit, and 4xx errors in the API's error shape.
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type(|_| true)
        .content_type_required(false)
        .error_handler(|err, _| {
            let api = match &err {
                error::JsonPayloadError::Overflow { .. }
                | error::JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::PayloadTooLarge(edge::too_large_message())
                }
                error::JsonPayloadError::Deserialize(e) => {
                    ApiError::bad_request(format!("invalid request body: {e}"))
                }
                other => ApiError::bad_request(format!("invalid request body: {other}")),
            };
            api.into()
        })
}

/// Browsers may call the API from the listed origins, and always from the
/// origin the dashboard itself is served from.
fn cors(origins: &[String]) -> Cors {
    let origins = origins.to_vec();
    Cors::default()
        .allowed_origin_fn(move |origin, head| {
            let origin = origin.as_bytes();
            let same_host = head.headers.get(header::HOST).is_some_and(|host| {
                let host = host.as_bytes();
                [b"http://".as_slice(), b"https://".as_slice()]
                    .iter()
                    .any(|scheme| origin.strip_prefix(*scheme) == Some(host))
            });
            same_host || origins.iter().any(|o| o.as_bytes() == origin)
        })
        .allow_any_method()
        .allow_any_header()
        .max_age(3600)
}
