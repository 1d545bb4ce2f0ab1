//! Sends the outbox's webhook deliveries (see [`crate::store::webhooks`]).
//!
//! One thread of its own takes the due deliveries under a lease, posts
//! each one from a thread of its own (at most [`PARALLEL`] at once, each
//! bounded by [`TIMEOUT`]), then records what each met: a slow or dead
//! endpoint holds only its own delivery, never a request or the sweeper.
//! A delivery the server dies in the middle of is due again when its lease
//! ends: at least once, with the event's stable id to tell repeats apart.
//!
//! Every connection goes through [`Guard`]: a target that resolves to a
//! loopback, link-local or private address is refused unless
//! `[webhooks] allow_private_targets` says otherwise, at the moment of the
//! connection, whatever the name resolved to when it was registered.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::config::WebhooksConfig;
use crate::domain::Timestamp;
use crate::store::webhooks::{self, Attempt, Due};
use crate::store::Store;

/// Most deliveries sent at once.
pub const PARALLEL: i64 = 8;

/// How long one delivery may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a taken delivery is leased to this sender: past it, a sender
/// that died is taken for dead and the delivery is sent again.
const LEASE_SECS: i64 = 60;

/// How long the outbox keeps an event and its deliveries.
const KEEP_DAYS: i64 = 7;

/// Whether `ip` is an address a webhook may not reach unless private
/// targets are allowed: loopback, unspecified, link-local, private,
/// shared (CGNAT), multicast, broadcast, documentation and reserved
/// ranges, and IPv4 addresses written as IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

/// The resolver every delivery connects through: only the addresses a
/// webhook may reach.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    pub allow_private: bool,
}

impl ureq::Resolver for Guard {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if self.allow_private {
            return Ok(all);
        }
        let allowed: Vec<SocketAddr> = all.into_iter().filter(|a| !is_private(a.ip())).collect();
        if allowed.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the target is a loopback, link-local or private address \
                 ([webhooks] allow_private_targets is off)",
            ));
        }
        Ok(allowed)
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes a key of any length
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The body a delivery posts: the event, its type, workspace and time, and
/// what it is about under `data`.
pub fn body(due: &Due) -> String {
    json!({
        "id": due.event_id,
        "type": due.event,
        "workspace_id": due.workspace_id,
        "created_at": due.created_at,
        "data": due.payload,
    })
    .to_string()
}

/// Posts one delivery; whether the endpoint took it (any 2xx), and the
/// attempt as recorded.
fn send(agent: &ureq::Agent, due: &Due) -> (bool, Attempt) {
    let body = body(due);
    let now = Timestamp::now();
    let timestamp = chrono::Utc::now().timestamp();
    let reply = agent
        .post(&due.url)
        .set("Content-Type", "application/json")
        .set("User-Agent", "agenthub-webhooks")
        .set("X-Agenthub-Event-Id", &due.event_id)
        .set("X-Agenthub-Event", &due.event)
        .set("X-Agenthub-Timestamp", &timestamp.to_string())
        .set(
            "X-Agenthub-Signature",
            &signature(&due.secret, timestamp, &body),
        )
        .send_string(&body);
    let attempt = |status_code: Option<u16>, error: Option<String>| Attempt {
        at: now,
        status_code,
        error,
    };
    match reply {
        Ok(response) if (200..300).contains(&response.status()) => {
            (true, attempt(Some(response.status()), None))
        }
        Ok(response) => (
            false,
            attempt(
                Some(response.status()),
                Some(format!("the endpoint answered {}", response.status())),
            ),
        ),
        Err(ureq::Error::Status(code, _)) => (
            false,
            attempt(Some(code), Some(format!("the endpoint answered {code}"))),
        ),
        Err(ureq::Error::Transport(transport)) => {
            let mut error = transport.to_string();
            error.truncate(500);
            (false, attempt(None, Some(error)))
        }
    }
}

/// When a delivery that just failed its `attempts`th attempt is tried
/// next; `None` once its event is [`webhooks::GIVE_UP_AFTER_SECS`] old.
fn next_attempt(due: &Due, attempts: usize, now: Timestamp) -> Option<Timestamp> {
    let next = now + chrono::Duration::seconds(webhooks::backoff_secs(attempts));
    let give_up = due.created_at + chrono::Duration::seconds(webhooks::GIVE_UP_AFTER_SECS);
    (next <= give_up).then_some(next)
}

/// The background sender; stops when dropped (a delivery in flight then
/// finishes on its own, or is sent again after a restart).
pub struct Sender {
    stop: Arc<AtomicBool>,
    _thread: Option<JoinHandle<()>>,
}

impl Sender {
    pub fn start(db: Store, config: &WebhooksConfig) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .redirects(0)
            .resolver(Guard {
                allow_private: config.allow_private_targets,
            })
            .build();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || run(&db, &agent, &flag))
            .map_err(|e| log::error!("cannot start the webhook sender: {e}"))
            .ok();
        Sender {
            stop,
            _thread: thread,
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(db: &Store, agent: &ureq::Agent, stop: &AtomicBool) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) {
        let busy = match round(db, agent, &in_flight) {
            Ok(started) => started > 0,
            Err(e) => {
                log::warn!("webhook deliveries: {e}");
                false
            }
        };
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = std::time::Instant::now();
            prune(db);
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Keeps the outbox bounded: events older than [`KEEP_DAYS`], and a
/// workspace's beyond [`webhooks::MAX_EVENTS_PER_WORKSPACE`], go with
/// their deliveries, a batch per transaction (at most a hundred each time:
/// the rest go an hour later), so no write holds the database long.
fn prune(db: &Store) {
    let before = Timestamp::now() - chrono::Duration::days(KEEP_DAYS);
    for _ in 0..100 {
        match db.write_blocking(move |tx| webhooks::prune(tx, before)) {
            Ok(n) if n as i64 == webhooks::PRUNE_BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                log::warn!("webhook outbox prune: {e}");
                return;
            }
        }
    }
    for _ in 0..100 {
        let keep = webhooks::MAX_EVENTS_PER_WORKSPACE;
        match db.write_blocking(move |tx| webhooks::cap(tx, keep)) {
            Ok(n) if n as i64 == webhooks::PRUNE_BATCH => continue,
            Ok(_) => break,
            Err(e) => {
                log::warn!("webhook outbox cap: {e}");
                return;
            }
        }
    }
}

/// Takes as many due deliveries as there are free slots and starts each
/// on a thread of its own, which records what it met: a slow endpoint
/// holds its own slot only. How many it started.
fn round(
    db: &Store,
    agent: &ureq::Agent,
    in_flight: &Arc<AtomicUsize>,
) -> Result<usize, crate::store::Error> {
    let free = PARALLEL.saturating_sub(in_flight.load(Ordering::Acquire) as i64);
    if free == 0 {
        return Ok(0);
    }
    let now = Timestamp::now();
    if !db.read_blocking(move |conn| webhooks::any_due(conn, now))? {
        return Ok(0);
    }
    let lease = now + chrono::Duration::seconds(LEASE_SECS);
    let due = db.write_blocking(move |tx| webhooks::take_due(tx, now, lease, free))?;
    let started = due.len();
    for due in due {
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (db, agent, in_flight) = (db.clone(), agent.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new()
            .name("webhook-send".into())
            .spawn(move || {
                deliver(&db, &agent, &due);
                in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            // the lease runs out and another round sends it
            log::warn!("cannot start a webhook delivery: {e}");
        }
    }
    Ok(started)
}

/// Sends one delivery and records the attempt: delivered, tried again
/// after [`webhooks::backoff_secs`], or given up.
fn deliver(db: &Store, agent: &ureq::Agent, due: &Due) {
    let (delivered, attempt) = send(agent, due);
    let next = if delivered {
        None
    } else {
        next_attempt(due, due.attempts + 1, attempt.at)
    };
    let (webhook, seq) = (due.webhook_id, due.seq);
    let recorded =
        db.write_blocking(move |tx| webhooks::record(tx, webhook, seq, &attempt, delivered, next));
    if let Err(e) = recorded {
        // the lease runs out and it is sent again: at least once
        log::warn!("cannot record a webhook delivery: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused_and_public_ones_allowed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_resolver_refuses_private_targets_unless_allowed() {
        use ureq::Resolver;
        let refused = Guard {
            allow_private: false,
        }
        .resolve("127.0.0.1:80");
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(io::ErrorKind::PermissionDenied)
        );
        let refused = Guard {
            allow_private: false,
        }
        .resolve("[::1]:443");
        assert!(refused.is_err());
        let allowed = Guard {
            allow_private: true,
        }
        .resolve("127.0.0.1:80");
        assert_eq!(allowed.ok(), Some(vec!["127.0.0.1:80".parse().unwrap()]));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 does not cover this message; the value is checked
        // against an independent HMAC in tests/webhooks.rs too
        let a = signature("secret", 1700000000, "{}");
        assert!(a.starts_with("sha256="));
        assert_eq!(a.len(), 7 + 64);
        assert_ne!(a, signature("secret", 1700000001, "{}"));
        assert_ne!(a, signature("other", 1700000000, "{}"));
    }

    #[test]
    fn retries_start_within_ten_seconds_and_stop_after_a_day() {
        assert!(webhooks::backoff_secs(1) <= 10);
        assert!(webhooks::backoff_secs(2) > webhooks::backoff_secs(1));
        assert_eq!(webhooks::backoff_secs(100), 3600);
        let total: i64 = (1..=webhooks::MAX_ATTEMPTS_KEPT)
            .map(webhooks::backoff_secs)
            .sum();
        assert!(
            total > webhooks::GIVE_UP_AFTER_SECS,
            "attempts kept cover the day"
        );
    }
}
