//! Messages between the nodes that share one database: rows of
//! `node_message`, announced with `NOTIFY` on a channel named after the
//! schema, so installs in different schemas of one database do not hear
//! each other. Each end holds a session of its own, outside the pool.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::NoTls;

use crate::store::{Error, Result};
use postgres::Client;

/// How long a message is kept for nodes that fell behind.
const KEEP: &str = "1 minute";
/// How often a sender deletes what is past [`KEEP`].
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The channel of this schema's install.
fn channel(client: &mut Client) -> Result<String> {
    let row = client.query_one("SELECT 'agenthub_' || md5(current_schema())", &[])?;
    Ok(row.try_get(0)?)
}

/// A session that is kept open, and opened again after it fails.
struct Session {
    config: postgres::Config,
    client: Option<(Client, String)>,
}

impl Session {
    fn get(&mut self) -> Result<&mut (Client, String)> {
        if self.client.is_none() {
            let mut client = self.config.connect(NoTls).map_err(Error::from)?;
            let channel = channel(&mut client)?;
            self.client = Some((client, channel));
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::internal("no database session"))
    }

    /// Forgets a session that failed, so the next call opens a new one.
    fn failed<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

pub(in crate::store) struct Sender {
    session: Session,
    pruned: Instant,
}

impl Sender {
    pub(super) fn new(config: postgres::Config) -> Sender {
        Sender {
            session: Session {
                config,
                client: None,
            },
            pruned: Instant::now(),
        }
    }

    /// Stores `bodies` from `node` and wakes the other nodes, in one
    /// transaction (a NOTIFY is delivered when it commits).
    pub(in crate::store) fn send(&mut self, node: uuid::Uuid, bodies: &[String]) -> Result<()> {
        let prune = self.pruned.elapsed() >= PRUNE_EVERY;
        let result = self.session.get().and_then(|(client, channel)| {
            let mut tx = client.transaction()?;
            tx.execute(
                "INSERT INTO node_message (node, body) SELECT $1, unnest($2::text[])",
                &[&node, &bodies],
            )?;
            if prune {
                tx.execute(
                    &format!(
                        "DELETE FROM node_message WHERE created_at < now() - interval '{KEEP}'"
                    ),
                    &[],
                )?;
            }
            tx.batch_execute(&format!("NOTIFY {channel}"))?;
            tx.commit()?;
            Ok(())
        });
        if result.is_ok() && prune {
            self.pruned = Instant::now();
        }
        self.session.failed(result)
    }
}

pub(in crate::store) struct Receiver {
    session: Session,
    /// The last message read; `None` until the first session starts
    /// listening (messages from before are not this node's business).
    last: Option<i64>,
}

impl Receiver {
    pub(super) fn new(config: postgres::Config) -> Receiver {
        Receiver {
            session: Session {
                config,
                client: None,
            },
            last: None,
        }
    }

    /// Waits up to `timeout` for a notification, then returns the messages
    /// stored since the last call, oldest first, as `(node, body)`.
    pub(in crate::store) fn wait(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<(uuid::Uuid, String)>> {
        let last = &mut self.last;
        let result = self.session.get().and_then(|(client, channel)| {
            if last.is_none() {
                client.batch_execute(&format!("LISTEN {channel}"))?;
                let row = client.query_one("SELECT coalesce(max(id), 0) FROM node_message", &[])?;
                *last = Some(row.try_get(0)?);
            }
            // any notification (or none within the timeout) leads to a
            // read: several notifications may have been folded into one
            {
                let mut notifications = client.notifications();
                let _ = notifications.timeout_iter(timeout).next()?;
                // the rest arrived with it: the read below covers them
                while notifications.iter().next()?.is_some() {}
            }
            let after = last.unwrap_or_default();
            let rows = client.query(
                "SELECT id, node, body FROM node_message WHERE id > $1 ORDER BY id LIMIT 1000",
                &[&after],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                *last = Some(row.try_get(0)?);
                out.push((row.try_get(1)?, row.try_get(2)?));
            }
            Ok(out)
        });
        if result.is_err() {
            // a new session listens again and starts from the newest
            self.last = None;
        }
        self.session.failed(result)
    }
}
