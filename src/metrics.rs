//! `GET /metrics`: Prometheus text exposition — runtimes and tasks by
//! status (counted at scrape time), requests by route and status, sweep
//! durations and connection-pool waits.
//!
//! The endpoint needs no token, like `/health`: it shows counts only, never
//! ids or names. Bind the server to loopback or a private network (the
//! default) if even counts should stay private.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::{RuntimeStatus, TaskStatus};
use crate::error::ApiError;
use crate::store::Store;
use crate::store::{runtimes, tasks};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// One of [`STANDARD_METHODS`] or `other`: anyone can send any method
    /// string, and every distinct label set is a series kept for good.
    method: &'static str,
    /// The route pattern (`/api/runtimes/{id}`), never the raw path, so ids
    /// do not multiply series.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

const STANDARD_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The `method` label of a request: its method if standard, else `other`.
fn method_label(method: &str) -> &'static str {
    STANDARD_METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    runtimes: Family<StatusLabel, Gauge>,
    tasks: Family<StatusLabel, Gauge>,
    sweeps: Histogram,
}

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// Buckets from 0.1 ms to ~13 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new(db: &Store) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let runtimes = Family::<StatusLabel, Gauge>::default();
        let tasks = Family::<StatusLabel, Gauge>::default();
        let sweeps = latency_histogram();
        registry.register(
            "agenthub_http_requests",
            "HTTP requests by method, route pattern and status",
            requests.clone(),
        );
        registry.register("agenthub_runtimes", "Runtimes by status", runtimes.clone());
        registry.register("agenthub_tasks", "Tasks by status", tasks.clone());
        registry.register(
            "agenthub_sweep_duration_seconds",
            "Duration of background sweeps",
            sweeps.clone(),
        );
        registry.register(
            "agenthub_db_pool_wait_seconds",
            "Time spent waiting for a database connection (and, for writes, the writer turn)",
            db.pool_wait().clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                runtimes,
                tasks,
                sweeps,
            }),
        }
    }

    /// Counts one request; `route` must be a registered route pattern or
    /// `unmatched`, never the raw path.
    pub fn record_request(&self, method: &str, route: &str, status: u16) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: route.to_string(),
                status,
            })
            .inc();
    }

    pub fn record_sweep(&self, seconds: f64) {
        self.inner.sweeps.observe(seconds);
    }

    /// One gauge per value of `known` (0 for those with no rows).
    fn set_counts<S: PartialEq + std::fmt::Display>(
        family: &Family<StatusLabel, Gauge>,
        known: &[S],
        counts: &[(S, i64)],
    ) {
        for status in known {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            family
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(n);
        }
    }
}

pub async fn scrape(
    db: web::Data<Store>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let (runtimes, tasks) = db
        .read(|conn| -> Result<_, ApiError> {
            Ok((
                runtimes::count_by_status(conn)?,
                tasks::count_by_status(conn)?,
            ))
        })
        .await?;
    Metrics::set_counts(&metrics.inner.runtimes, RuntimeStatus::ALL, &runtimes);
    Metrics::set_counts(&metrics.inner.tasks, TaskStatus::ALL, &tasks);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.inner.registry)
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn only_standard_methods_are_labels() {
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("OPTIONS"), "OPTIONS");
        assert_eq!(method_label("patch"), "other");
        assert_eq!(method_label("PROPFIND"), "other");
    }
}
