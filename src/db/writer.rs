//! The one writer: a thread that owns the only connection that writes, and
//! commits concurrent writes together.
//!
//! Each write request is a job. The thread takes every job waiting when it
//! is free (up to [`MAX_BATCH`]), opens one `BEGIN IMMEDIATE` transaction,
//! runs each job inside its own `SAVEPOINT` — a job that fails (or panics)
//! rolls back to its savepoint and gets its error at once, without touching
//! the others — and commits the batch with one fsync (`synchronous=FULL`
//! stays). Only then are the jobs that succeeded answered, so a 200 still
//! means the write is on disk. Under load, jobs pile up while a commit is
//! syncing and the next batch takes them all: the cost of an fsync is
//! shared by every request waiting for it, and an idle server commits a
//! lone write at once, with no waiting window.
//!
//! Reads never wait for this thread: they use the separate read pool.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;

use crate::error::ApiError;

/// Most jobs one transaction holds.
const MAX_BATCH: usize = 128;

/// What the writer does with one job: run it inside the open transaction,
/// or refuse it when the transaction could not even start.
pub(crate) trait Job: Send {
    /// Runs the job in its savepoint; `Some(answer)` when it is to be
    /// answered once the batch commits.
    fn run(self: Box<Self>, conn: &Connection) -> Option<Answer>;
    fn refuse(self: Box<Self>, error: ApiError);
    /// Runs outside any transaction, before the batch (connection settings).
    fn is_direct(&self) -> bool {
        false
    }
}

/// Answers a job that succeeded, with the outcome of its batch's commit.
pub(crate) type Answer = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

/// A job made from a closure and the channel its caller waits on.
struct Write<T, F> {
    f: F,
    reply: mpsc::SyncSender<Result<T, ApiError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, ApiError> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Option<Answer> {
        let Write { f, reply } = *self;
        if let Err(e) = conn.execute_batch("SAVEPOINT request") {
            let _ = reply.send(Err(e.into()));
            return None;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(ApiError::internal("a write panicked; it was rolled back")));
        let outcome = outcome.and_then(|value| {
            conn.execute_batch("RELEASE request")?;
            Ok(value)
        });
        match outcome {
            Ok(value) => Some(Box::new(move |committed: Result<(), ApiError>| {
                let _ = reply.send(committed.map(|()| value));
            })),
            Err(error) => {
                // undoes this job only; the batch goes on
                let undone = conn.execute_batch("ROLLBACK TO request; RELEASE request");
                if let Err(e) = undone {
                    log::error!("could not roll back a failed write: {e}");
                }
                let _ = reply.send(Err(error));
                None
            }
        }
    }

    fn refuse(self: Box<Self>, error: ApiError) {
        let _ = self.reply.send(Err(error));
    }
}

/// A closure run on the writer's connection outside any transaction.
struct Direct<F> {
    f: F,
    reply: mpsc::SyncSender<Result<(), ApiError>>,
}

impl<F> Job for Direct<F>
where
    F: FnOnce(&Connection) -> Result<(), ApiError> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Option<Answer> {
        let Direct { f, reply } = *self;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(ApiError::internal("a writer setting panicked")));
        let _ = reply.send(outcome);
        None
    }

    fn refuse(self: Box<Self>, error: ApiError) {
        let _ = self.reply.send(Err(error));
    }

    fn is_direct(&self) -> bool {
        true
    }
}

/// The writer thread's mailbox.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

/// What the writer reports about each batch, for the storage health state.
pub(crate) trait Observer: Send + 'static {
    /// A batch committed; `changed` when it changed rows.
    fn committed(&self, changed: bool);
    /// A batch (or its start) failed with `error`.
    fn failed(&self, error: &ApiError);
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn spawn(conn: Connection, observer: impl Observer) -> std::io::Result<Writer> {
        let (jobs, inbox) = mpsc::channel::<Box<dyn Job>>();
        thread::Builder::new()
            .name("agenthub-writer".into())
            .spawn(move || run(conn, inbox, observer))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` on the writer's connection between batches, outside any
    /// transaction (connection settings), and waits for it.
    pub fn direct<F>(&self, f: F) -> Result<(), ApiError>
    where
        F: FnOnce(&Connection) -> Result<(), ApiError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(Direct { f, reply }))
            .map_err(|_| ApiError::internal("the database writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| ApiError::internal("the database writer dropped a request"))?
    }

    /// Runs `f` in the next batch and waits for its commit. Blocks: call
    /// it off the async executor.
    pub fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(Write { f, reply }))
            .map_err(|_| ApiError::internal("the database writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| ApiError::internal("the database writer dropped a write"))?
    }
}

fn run(mut conn: Connection, inbox: mpsc::Receiver<Box<dyn Job>>, observer: impl Observer) {
    // ends when every Db handle (every sender) is gone
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch, &observer);
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Box<dyn Job>>, observer: &impl Observer) {
    let (direct, batch): (Vec<_>, Vec<_>) = batch.into_iter().partition(|job| job.is_direct());
    for job in direct {
        job.run(conn);
    }
    if batch.is_empty() {
        return;
    }
    let before = conn.total_changes();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = ApiError::from(e);
        observer.failed(&error);
        for job in batch {
            job.refuse(same(&error));
        }
        return;
    }
    let answers: Vec<Answer> = batch.into_iter().filter_map(|job| job.run(conn)).collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            observer.committed(conn.total_changes() > before);
            for answer in answers {
                answer(Ok(()));
            }
        }
        Err(e) => {
            let error = ApiError::from(e);
            observer.failed(&error);
            if !conn.is_autocommit() {
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    log::error!("could not roll back a failed commit: {e}");
                }
            }
            for answer in answers {
                answer(Err(same(&error)));
            }
        }
    }
}

/// `error` again, for each request of a batch that failed as a whole (the
/// detail was logged once where it was made).
fn same(error: &ApiError) -> ApiError {
    match error {
        ApiError::Busy => ApiError::Busy,
        ApiError::StorageFull => ApiError::StorageFull,
        ApiError::StorageUnavailable(why) => ApiError::StorageUnavailable(why),
        _ => ApiError::Internal,
    }
}
