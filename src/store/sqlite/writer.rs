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
use tokio::sync::oneshot;

use rusqlite::Connection;

use crate::store::{Conn, Error, Failure};

/// Most jobs one transaction holds.
const MAX_BATCH: usize = 128;

/// What the writer does with one job: run it inside the open transaction,
/// or refuse it when the transaction could not even start.
pub(crate) trait Job: Send {
    /// Runs the job in its savepoint.
    fn run(self: Box<Self>, conn: &Connection) -> Ran;
    fn refuse(self: Box<Self>, error: Error);
    /// Runs outside any transaction, before the batch (connection settings).
    fn is_direct(&self) -> bool {
        false
    }
}

/// Answers a job that succeeded, with the outcome of its batch's commit.
pub(crate) type Answer = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// What running a job left.
pub(crate) enum Ran {
    /// It succeeded: answer it once the batch commits.
    Answer(Answer),
    /// It failed and was undone (and answered).
    Done,
    /// It failed on full or failing storage and was undone: the fault is
    /// reported to the health state, then `answer` tells the caller (so a
    /// caller that saw the error finds the health state already set).
    Faulted(Faulted),
    /// It failed and its savepoint could not be undone (SQLite ends the
    /// whole transaction on some storage errors): the batch's transaction
    /// must not commit. The job is answered as in [`Ran::Faulted`] when
    /// it met a storage fault, else already.
    Broken(Option<Faulted>),
}

/// Runs one statement of the writer's own (a savepoint, a transaction
/// boundary) from the statement cache: these run several times per
/// request, and parsing them each time is a measurable part of the
/// writer's work.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A job made from a closure and the channel its caller waits on (an
/// async request awaits it without holding a thread).
struct Write<T, E, F> {
    f: F,
    reply: Reply<Result<T, E>>,
}

/// A storage fault a job met, and the answer to send once it is reported.
pub(crate) struct Faulted {
    fault: Error,
    answer: Box<dyn FnOnce() + Send>,
}

/// Answers a failed job at once, or, when it met a storage fault, leaves
/// the answer for after the fault is reported.
fn failed<T, E>(reply: Reply<Result<T, E>>, error: E) -> Ran
where
    T: Send + 'static,
    E: Failure,
{
    match fault_of(reply, error) {
        Some(faulted) => Ran::Faulted(faulted),
        None => Ran::Done,
    }
}

/// The fault `error` is, with its answer deferred; or `None`, answered.
fn fault_of<T, E>(reply: Reply<Result<T, E>>, error: E) -> Option<Faulted>
where
    T: Send + 'static,
    E: Failure,
{
    match error
        .store_error()
        .filter(|e| e.is_storage_fault())
        .cloned()
    {
        Some(fault) => Some(Faulted {
            fault,
            answer: Box::new(move || reply.send(Err(error))),
        }),
        None => {
            reply.send(Err(error));
            None
        }
    }
}

/// Where a job's outcome goes: a thread blocked on it, or a task awaiting
/// it.
enum Reply<R> {
    Blocking(mpsc::SyncSender<R>),
    Async(oneshot::Sender<R>),
}

impl<R> Reply<R> {
    /// Delivers `outcome`; a caller that stopped waiting is no error.
    fn send(self, outcome: R) {
        let _ = match self {
            Reply::Blocking(reply) => reply.send(outcome).map_err(drop),
            Reply::Async(reply) => reply.send(outcome).map_err(drop),
        };
    }
}

impl<T, E, F> Job for Write<T, E, F>
where
    T: Send + 'static,
    E: Failure,
    F: FnOnce(&Conn<'_>) -> Result<T, E> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Write { f, reply } = *self;
        if let Err(e) = run_cached(conn, "SAVEPOINT request") {
            return failed(reply, E::from(Error::from(e)));
        }
        let outcome =
            catch_unwind(AssertUnwindSafe(|| f(&Conn::sqlite(conn)))).unwrap_or_else(|_| {
                Err(E::from(Error::internal(
                    "a write panicked; it was rolled back",
                )))
            });
        let outcome = outcome.and_then(|value| {
            run_cached(conn, "RELEASE request").map_err(|e| E::from(e.into()))?;
            Ok(value)
        });
        match outcome {
            Ok(value) => Ran::Answer(Box::new(move |committed: Result<(), Error>| {
                reply.send(committed.map(|()| value).map_err(E::from));
            })),
            Err(error) => {
                // undoes this job only; the batch goes on
                match conn.execute_batch("ROLLBACK TO request; RELEASE request") {
                    Ok(()) => failed(reply, error),
                    Err(e) => {
                        log::error!("could not roll back a failed write: {e}");
                        Ran::Broken(fault_of(reply, error))
                    }
                }
            }
        }
    }

    fn refuse(self: Box<Self>, error: Error) {
        self.reply.send(Err(E::from(error)));
    }
}

/// A closure run on the writer's connection outside any transaction.
struct Direct<F> {
    f: F,
    reply: mpsc::SyncSender<Result<(), Error>>,
}

impl<F> Job for Direct<F>
where
    F: FnOnce(&Connection) -> Result<(), Error> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Direct { f, reply } = *self;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(Error::internal("a writer setting panicked")));
        let _ = reply.send(outcome);
        Ran::Done
    }

    fn refuse(self: Box<Self>, error: Error) {
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
    fn failed(&self, error: &Error);
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
    pub fn direct<F>(&self, f: F) -> Result<(), Error>
    where
        F: FnOnce(&Connection) -> Result<(), Error> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(Direct { f, reply }))
            .map_err(|_| Error::internal("the database writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| Error::internal("the database writer dropped a request"))?
    }

    /// Queues `f` for the next batch; the receiver gets its outcome once
    /// the batch has committed (or failed).
    pub fn submit<T, E, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T, E>>, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue(f, Reply::Async(reply))?;
        Ok(answer)
    }

    fn queue<T, E, F>(&self, f: F, reply: Reply<Result<T, E>>) -> Result<(), E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        self.jobs
            .send(Box::new(Write { f, reply }))
            .map_err(|_| E::from(Error::internal("the database writer has stopped")))
    }

    /// Runs `f` in the next batch and waits for its commit. Blocks: call
    /// it off the async executor.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Failure,
        F: FnOnce(&Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.queue(f, Reply::Blocking(reply))?;
        answer
            .recv()
            .map_err(|_| E::from(Error::internal("the database writer dropped a write")))?
    }
}

fn run(mut conn: Connection, inbox: mpsc::Receiver<Box<dyn Job>>, observer: impl Observer) {
    // ends when every Store handle (every sender) is gone
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
    let mut jobs = batch.into_iter().peekable();
    while jobs.peek().is_some() {
        commit_some(conn, &mut jobs, observer);
    }
}

/// Runs jobs from `jobs` in one transaction and commits it; stops early
/// (leaving the rest for a fresh transaction) when a job leaves the
/// transaction unfit to commit — SQLite ended it (a disk full or I/O error
/// mid-write rolls everything back) or a failed job could not be undone.
fn commit_some(
    conn: &mut Connection,
    jobs: &mut impl Iterator<Item = Box<dyn Job>>,
    observer: &impl Observer,
) {
    let before = conn.total_changes();
    if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
        let error = Error::from(e);
        observer.failed(&error);
        for job in jobs {
            job.refuse(error.clone());
        }
        return;
    }
    let mut answers = Vec::new();
    let mut faults = Vec::new();
    let mut broken = false;
    for job in jobs.by_ref() {
        match job.run(conn) {
            Ran::Answer(answer) => answers.push(answer),
            Ran::Done => {}
            Ran::Faulted(faulted) => faults.push(faulted),
            Ran::Broken(faulted) => {
                faults.extend(faulted);
                broken = true;
            }
        }
        // outside a transaction, the next job's savepoint would commit on
        // its own: never go on in that state
        if broken || conn.is_autocommit() {
            broken = true;
            break;
        }
    }
    let committed = if broken {
        Err(Error::internal(
            "a write batch was abandoned: the database ended its transaction",
        ))
    } else {
        run_cached(conn, "COMMIT").map_err(Error::from)
    };
    match committed {
        Ok(()) => {
            observer.committed(conn.total_changes() > before);
            // a job that met full or failing storage reports it even when
            // the rest of its batch committed (and whether or not its
            // caller is still waiting)
            for Faulted { fault, answer } in faults {
                observer.failed(&fault);
                answer();
            }
            for answer in answers {
                answer(Ok(()));
            }
        }
        Err(error) => {
            for Faulted { fault, answer } in faults {
                observer.failed(&fault);
                answer();
            }
            observer.failed(&error);
            if !conn.is_autocommit() {
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    log::error!("could not roll back a failed batch: {e}");
                }
            }
            for answer in answers {
                answer(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl Observer for Quiet {
        fn committed(&self, _: bool) {}
        fn failed(&self, _: &Error) {}
    }

    fn job<F>(f: F) -> (Box<dyn Job>, mpsc::Receiver<Result<(), Error>>)
    where
        F: FnOnce(&Conn<'_>) -> Result<(), Error> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        (
            Box::new(Write {
                f,
                reply: Reply::Blocking(reply),
            }),
            answer,
        )
    }

    fn insert(n: i64) -> impl FnOnce(&Conn<'_>) -> Result<(), Error> + Send + 'static {
        move |c| {
            Ok(c.sql()
                .execute("INSERT INTO t VALUES (?1)", [n])
                .map(|_| ())?)
        }
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .unwrap();
        conn
    }

    /// Remembers what the writer reported, in order.
    #[derive(Default)]
    struct Recording(std::sync::Mutex<Vec<String>>);
    impl Observer for &'static Recording {
        fn committed(&self, changed: bool) {
            self.0.lock().unwrap().push(format!("committed {changed}"));
        }
        fn failed(&self, error: &Error) {
            self.0.lock().unwrap().push(format!("failed {error}"));
        }
    }

    #[test]
    fn a_job_meeting_full_storage_is_reported_even_when_its_batch_commits() {
        let mut conn = connection();
        let (a, a_answer) = job(insert(1));
        let (b, b_answer) = job(|_| Err(Error::Full));
        // nobody waits for b's answer any more
        drop(b_answer);
        let seen: &'static Recording = Box::leak(Box::default());
        commit_batch(&mut conn, vec![a, b], &seen);
        assert!(a_answer.recv().unwrap().is_ok());
        assert_eq!(rows(&conn), [1]);
        assert_eq!(
            *seen.0.lock().unwrap(),
            ["committed true", "failed the database disk is full"]
        );
    }

    #[test]
    fn a_failed_write_is_undone_alone() {
        let mut conn = connection();
        let (a, a_answer) = job(insert(1));
        let (b, b_answer) = job(|c| {
            insert(2)(c)?;
            insert(1)(c) // a duplicate: fails after writing 2
        });
        let (c, c_answer) = job(insert(3));
        commit_batch(&mut conn, vec![a, b, c], &Quiet);
        assert!(a_answer.recv().unwrap().is_ok());
        assert!(b_answer.recv().unwrap().is_err());
        assert!(c_answer.recv().unwrap().is_ok());
        assert_eq!(rows(&conn), [1, 3]);
    }

    #[test]
    fn a_batch_whose_transaction_ended_is_abandoned_not_committed_piecemeal() {
        let mut conn = connection();
        let (a, a_answer) = job(insert(1));
        // stands for SQLite rolling the transaction back on a disk error
        let (b, b_answer) = job(|c| {
            c.sql().execute_batch("ROLLBACK")?;
            Ok(())
        });
        let (c, c_answer) = job(insert(3));
        commit_batch(&mut conn, vec![a, b, c], &Quiet);
        assert!(a_answer.recv().unwrap().is_err(), "its write was lost");
        assert!(b_answer.recv().unwrap().is_err());
        // the rest runs in a transaction of its own
        assert!(c_answer.recv().unwrap().is_ok());
        assert_eq!(rows(&conn), [3]);
    }
}
