//! The `agenthub` binary: its commands, config handling and online backup,
//! run as a real process.
//!
//! Most tests drive it with `--db <file>` and stay on SQLite whatever engine
//! the suite runs on, because they check the file itself (tables, WAL,
//! permissions, backup copies). The `postgres_*` tests at the end cover the
//! commands on PostgreSQL through `AGENTHUB_DATABASE_URL` when the suite
//! runs there (`AGENTHUB_TEST_POSTGRES`).

mod common;

use std::path::Path;
use std::process::Output;

use common::{binary, count_in, select_in, sqlite, ServerProcess, TestDb};
use serde_json::Value;

fn run(dir: &Path, args: &[&str]) -> Output {
    binary()
        .current_dir(dir)
        .args(args)
        .env_remove("AGENTHUB_DB")
        .env_remove("AGENTHUB_DATABASE_URL")
        .env_remove("AGENTHUB_LISTEN")
        .output()
        .expect("run agenthub")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    serde_json::from_str(text.trim()).expect("json")
}

/// `agenthub init --json` for ada@example.com on `db`.
fn init_json(dir: &Path, db: &str) -> Value {
    stdout_json(&run(
        dir,
        &["init", "--email", "ada@example.com", "--db", db, "--json"],
    ))
}

/// `GET /api/workspaces/{ws}/members` with `token`, which must answer 200.
async fn members_of(client: &awc::Client, server: &ServerProcess, ws: &str, token: &str) -> Value {
    let mut res = client
        .get(format!("{}/api/workspaces/{ws}/members", server.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn init_prints_ids_and_token_as_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "init",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
            "--workspace",
            "Lab",
            "--json",
        ],
    );
    let v = stdout_json(&out);
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("mul_") && token.len() == 44);
    assert_eq!(v["user_id"].as_str().unwrap().len(), 36);
    assert_eq!(v["workspace_id"].as_str().unwrap().len(), 36);
    // the default database file in the working directory, owner-only
    let db = dir.path().join("agenthub.db");
    let rows = select_in(
        &db,
        r#"SELECT u.name, w.name, m.role FROM "user" u JOIN member m ON m.user_id = u.id
           JOIN workspace w ON w.id = m.workspace_id"#,
    );
    assert_eq!(rows, [["Ada", "Lab", "owner"]]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn init_with_an_existing_email_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["init", "--email", "ada@example.com"])
        .status
        .success());
    let out = run(dir.path(), &["init", "--email", "ADA@example.com"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let out = run(dir.path(), &["init", "--email", "not-an-email"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid email"));
}

#[actix_web::test]
async fn user_add_and_token_create_give_working_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("team.db");
    let db_arg = db.to_str().unwrap();
    let init = init_json(dir.path(), db_arg);
    let ws = init["workspace_id"].as_str().unwrap();
    let added = stdout_json(&run(
        dir.path(),
        &[
            "user",
            "add",
            "--email",
            "bob@example.com",
            "--workspace",
            ws,
            "--role",
            "admin",
            "--db",
            db_arg,
            "--json",
        ],
    ));
    assert_eq!(added["workspace_id"], ws);
    let created = stdout_json(&run(
        dir.path(),
        &[
            "--db",
            db_arg,
            "token",
            "create",
            "--email",
            "bob@example.com",
            "--name",
            "ci",
            "--json",
        ],
    ));
    assert_eq!(created["user_id"], added["user_id"]);

    let server = ServerProcess::start(dir.path(), &db);
    let client = awc::Client::default();
    for token in [
        added["token"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    ] {
        let members = members_of(&client, &server, ws, token).await;
        let bob = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "bob@example.com")
            .unwrap()
            .clone();
        assert_eq!(bob["role"], "admin");
    }

    // errors: unknown workspace, unknown user, bad role
    let missing = "00000000-0000-4000-8000-000000000000";
    let out = run(
        dir.path(),
        &[
            "user",
            "add",
            "--email",
            "c@example.com",
            "--workspace",
            missing,
            "--db",
            db_arg,
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = run(
        dir.path(),
        &[
            "token",
            "create",
            "--email",
            "nobody@example.com",
            "--db",
            db_arg,
        ],
    );
    assert!(!out.status.success());
    let out = run(
        dir.path(),
        &[
            "user",
            "add",
            "--email",
            "d@example.com",
            "--workspace",
            ws,
            "--role",
            "boss",
            "--db",
            db_arg,
        ],
    );
    assert!(!out.status.success());
    // nothing half-made by the failed commands
    assert_eq!(count_in(&db, r#"SELECT count(*) FROM "user""#), 2);
}

#[test]
fn migrate_creates_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["migrate", "--db", "fresh.db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh = dir.path().join("fresh.db");
    let tables = sqlite::tables(&fresh);
    assert_eq!(
        tables,
        [
            "agent",
            "agent_fallback",
            "agent_runtime",
            "agent_task_queue",
            "budget",
            "daemon_token",
            "invitation",
            "machine_limit",
            "member",
            "personal_access_token",
            "pricing_override",
            "runtime_probe",
            "runtime_usage",
            "runtime_usage_quarter",
            "task_message",
            "task_outcome_agent_block",
            "task_outcome_block",
            "task_token",
            "task_usage",
            "usage_agent_block",
            "usage_block",
            "usage_zone_day",
            "user",
            "webhook",
            "webhook_delivery",
            "webhook_event",
            "workspace"
        ]
    );
    assert_eq!(sqlite::journal_mode(&fresh), "wal");
    // a second run has nothing to do
    let out = run(dir.path(), &["migrate", "--db", "fresh.db"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 migration(s) applied"));
}

#[test]
fn unknown_config_key_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[database]\npath = \"x.db\"\npoolsize = 4\n",
    )
    .unwrap();
    let out = run(dir.path(), &["serve"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("poolsize"), "{}", stderr(&out));
    assert!(!dir.path().join("x.db").exists());

    std::fs::write(
        dir.path().join("bad.toml"),
        "[sweeper]\ninterval_secs = \"often\"\n",
    )
    .unwrap();
    let out = run(dir.path(), &["migrate", "--config", "bad.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("interval_secs"), "{}", stderr(&out));

    std::fs::write(dir.path().join("zero.toml"), "[database]\npool_size = 0\n").unwrap();
    let out = run(dir.path(), &["--config", "zero.toml", "migrate"]);
    assert!(
        stderr(&out).contains("database.pool_size"),
        "{}",
        stderr(&out)
    );

    let out = binary()
        .current_dir(dir.path())
        .args(["--config", "zero.toml", "serve"])
        .env("AGENTHUB_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("server.listen"), "{}", stderr(&out));

    let out = run(dir.path(), &["migrate", "--config", "missing.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"));
}

#[actix_web::test]
async fn serve_reads_config_toml_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = \"from-config.db\"\n"),
    )
    .unwrap();
    // no subcommand: serve is the default
    let mut child = binary()
        .current_dir(dir.path())
        .env_remove("AGENTHUB_DB")
        .env_remove("AGENTHUB_LISTEN")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = awc::Client::default();
    let mut answered = false;
    for _ in 0..200 {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
        {
            answered = res.status().is_success();
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "server did not answer on the configured port");
    assert!(dir.path().join("from-config.db").exists());
}

#[test]
fn shipped_config_toml_is_valid_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = agenthub::config::Config::from_file(&path).expect("shipped config.toml parses");
    assert_eq!(config, agenthub::config::Config::default());
}

#[actix_web::test]
async fn backup_while_writing_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let db_arg = db.to_str().unwrap();
    let init = init_json(dir.path(), db_arg);
    let token = init["token"].as_str().unwrap().to_string();
    let server = ServerProcess::start(dir.path(), &db);

    // writers keep creating workspaces while backups are taken
    let base = server.base.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let base = base.clone();
            let token = token.clone();
            actix_web::rt::spawn(async move {
                let client = awc::Client::default();
                let mut ok = 0;
                for i in 0..40 {
                    let res = client
                        .post(format!("{base}/api/workspaces"))
                        .insert_header(("Authorization", format!("Bearer {token}")))
                        .send_json(&serde_json::json!({"name": format!("ws {w}-{i}")}))
                        .await
                        .unwrap();
                    assert_eq!(res.status().as_u16(), 201);
                    ok += 1;
                }
                ok
            })
        })
        .collect();

    let mut copies = Vec::new();
    for n in 0..3 {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(40)).await;
        let copy = dir.path().join(format!("copy-{n}.db"));
        let copy_arg = copy.to_str().unwrap().to_string();
        let db_arg = db_arg.to_string();
        let dir_path = dir.path().to_path_buf();
        let out = actix_web::rt::task::spawn_blocking(move || {
            run(&dir_path, &["backup", &copy_arg, "--db", &db_arg])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        copies.push(copy);
    }
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert_eq!(written, 160);

    for copy in copies {
        assert_eq!(sqlite::integrity_check(&copy), "ok");
        assert_eq!(sqlite::foreign_key_violations(&copy), 0);
        let workspaces = count_in(&copy, "SELECT count(*) FROM workspace");
        let owners = count_in(&copy, "SELECT count(*) FROM member WHERE role = 'owner'");
        // a snapshot: every workspace in it came with its owner
        assert!((1..=161).contains(&workspaces), "{workspaces}");
        assert_eq!(workspaces, owners);
    }
    drop(server);
    assert_eq!(count_in(&db, "SELECT count(*) FROM workspace"), 161);
}

#[actix_web::test]
async fn sigterm_shuts_down_cleanly_and_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let db_arg = db.to_str().unwrap();
    let init = init_json(dir.path(), db_arg);
    let token = init["token"].as_str().unwrap().to_string();
    let mut server = ServerProcess::start(dir.path(), &db);
    let client = awc::Client::default();
    for i in 0..20 {
        let res = client
            .post(format!("{}/api/workspaces", server.base))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send_json(&serde_json::json!({"name": format!("ws {i}")}))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    let wal = dir.path().join("live.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "writes sit in the WAL"
    );

    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // the WAL was folded into the main file (and removed with the last connection)
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    assert_eq!(sqlite::integrity_check(&db), "ok");
    assert_eq!(count_in(&db, "SELECT count(*) FROM workspace"), 21);
}

#[actix_web::test]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let init = init_json(dir.path(), db.to_str().unwrap());
    let (token, ws) = (
        init["token"].as_str().unwrap(),
        init["workspace_id"].as_str().unwrap(),
    );
    let mut server = ServerProcess::start(dir.path(), &db);
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish();
    let mut stream = client
        .get(format!("{}/api/events?workspace_id={ws}", server.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);

    let started = std::time::Instant::now();
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // the stream ends instead of keeping the server up for its grace period
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            break;
        }
    }
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "shutdown waited on the stream"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[actix_web::test]
async fn backup_refuses_the_live_database_however_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let db_arg = db.to_str().unwrap();
    let token = init_json(dir.path(), db_arg)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let server = ServerProcess::start(dir.path(), &db);
    std::os::unix::fs::symlink(&db, dir.path().join("alias.db")).unwrap();
    std::fs::hard_link(&db, dir.path().join("hard.db")).unwrap();

    for (dest, what) in [
        (db_arg.to_string(), "itself"),
        ("./live.db".to_string(), "itself"),
        ("sub/../live.db".to_string(), "itself"),
        ("alias.db".to_string(), "itself"),
        ("hard.db".to_string(), "itself"),
        (format!("{db_arg}-wal"), "its own -wal file"),
        (format!("{db_arg}-shm"), "its own -shm file"),
    ] {
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let out = run(dir.path(), &["backup", &dest, "--db", db_arg]);
        assert_eq!(out.status.code(), Some(1), "backup to {dest} succeeded");
        assert_eq!(
            stderr(&out),
            format!("error: cannot back up the database onto {what}: {dest}")
        );
    }

    // the server's writes after the refused backups are all still there
    let client = awc::Client::default();
    let res = client
        .post(format!("{}/api/workspaces", server.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(&serde_json::json!({"name": "after the backup"}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    drop(server);
    assert_eq!(count_in(&db, "SELECT count(*) FROM workspace"), 2);
}

#[test]
fn backups_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    init_json(dir.path(), db.to_str().unwrap());
    let fresh = dir.path().join("fresh.db");
    let replaced = dir.path().join("replaced.db");
    std::fs::write(&replaced, "an older copy").unwrap();
    std::fs::set_permissions(&replaced, std::fs::Permissions::from_mode(0o644)).unwrap();

    for copy in [&fresh, &replaced] {
        // under the common umask, which leaves new files world-readable
        let out = std::process::Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg("umask 022; exec \"$0\" backup \"$1\" --db \"$2\"")
            .arg(env!("CARGO_BIN_EXE_agenthub"))
            .arg(copy)
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mode = std::fs::metadata(copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", copy.display());
        assert_eq!(sqlite::integrity_check(copy), "ok");
    }
}

/// `agenthub ARGS` in `dir` on `db`: `--db <file>`, or a PostgreSQL schema
/// through `AGENTHUB_DATABASE_URL`.
fn run_on(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    let mut command = binary();
    command
        .current_dir(dir)
        .args(args)
        .env_remove("AGENTHUB_DB")
        .env_remove("AGENTHUB_DATABASE_URL")
        .env_remove("AGENTHUB_LISTEN");
    db.point(&mut command);
    command.output().expect("run agenthub")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The files in `dir`, by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `url` with a password in it, and how agenthub shows that URL (the
/// password hidden); `None` when the URL names no user to give one.
fn with_password(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    // a URL that carries a password keeps it; the test server trusts its
    // role, so one added where there was none is never asked for
    let secret = if userinfo.contains(':') {
        url.to_string()
    } else {
        format!("{scheme}://{user}:s3cret-pw@{host}")
    };
    Some((secret, format!("{scheme}://{user}:***@{host}")))
}

#[test]
fn postgres_migrate_applies_the_schema_once_and_hides_the_password() {
    // needs the suite's PostgreSQL server (AGENTHUB_TEST_POSTGRES)
    if !common::on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let url = db.url().unwrap().to_string();
    let shipped =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
            .unwrap()
            .count();
    assert!(shipped >= 1);

    let (first, shown) = match with_password(&url) {
        Some((secret, shown)) => (TestDb::Postgres(secret), shown),
        None => (db.clone(), url.clone()),
    };
    let out = run_on(dir.path(), &first, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{shown}: {shipped} migration(s) applied")
    );
    assert!(!stdout(&out).contains("s3cret-pw"), "{}", stdout(&out));

    // a second run has nothing to do
    let out = run_on(dir.path(), &db, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{url}: 0 migration(s) applied"));
    // the schema is there, and no SQLite file was made beside it
    assert_eq!(count_in(&db, r#"SELECT count(*) FROM "user""#), 0);
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

#[actix_web::test]
async fn postgres_init_and_user_add_give_working_tokens() {
    // needs the suite's PostgreSQL server (AGENTHUB_TEST_POSTGRES)
    if !common::on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    let init = stdout_json(&run_on(
        dir.path(),
        &db,
        &[
            "init",
            "--email",
            "ada@example.com",
            "--workspace",
            "Lab",
            "--json",
        ],
    ));
    let ws = init["workspace_id"].as_str().unwrap();
    let added = stdout_json(&run_on(
        dir.path(),
        &db,
        &[
            "user",
            "add",
            "--email",
            "bob@example.com",
            "--workspace",
            ws,
            "--role",
            "admin",
            "--json",
        ],
    ));
    assert_eq!(added["workspace_id"], ws);
    assert_eq!(count_in(&db, r#"SELECT count(*) FROM "user""#), 2);
    let rows = select_in(
        &db,
        r#"SELECT u.email, w.name, m.role FROM "user" u JOIN member m ON m.user_id = u.id
           JOIN workspace w ON w.id = m.workspace_id ORDER BY u.email"#,
    );
    assert_eq!(
        rows,
        [
            ["ada@example.com", "Lab", "owner"],
            ["bob@example.com", "Lab", "admin"]
        ]
    );
    // the address is taken, whatever its case
    let out = run_on(
        dir.path(),
        &db,
        &["user", "add", "--email", "BOB@example.com"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(count_in(&db, r#"SELECT count(*) FROM "user""#), 2);

    // the server on the same database takes the tokens the commands printed
    let server = ServerProcess::start(dir.path(), &db);
    let client = awc::Client::default();
    for token in [
        init["token"].as_str().unwrap(),
        added["token"].as_str().unwrap(),
    ] {
        let members = members_of(&client, &server, ws, token).await;
        assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
    }
    drop(server);
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

#[test]
fn postgres_backup_points_to_postgres_tools_and_writes_nothing() {
    // needs the suite's PostgreSQL server (AGENTHUB_TEST_POSTGRES)
    if !common::on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(dir.path());
    stdout_json(&run_on(
        dir.path(),
        &db,
        &["init", "--email", "ada@example.com", "--json"],
    ));
    let out = run_on(dir.path(), &db, &["backup", "copy.db"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: backup failed: "), "{err}");
    assert!(
        err.contains("back up a PostgreSQL database with its own tools") && err.contains("pg_dump"),
        "{err}"
    );
    // neither the copy nor a temporary file beside it
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    // and the database is untouched
    assert_eq!(count_in(&db, r#"SELECT count(*) FROM "user""#), 1);
}

#[test]
fn a_database_url_that_is_not_postgres_stops_startup_naming_it() {
    // runs on either engine: the URL is refused before any database is
    // opened, so no PostgreSQL server is needed
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[database]\nurl = \"sqlite://agenthub.db\"\n",
    )
    .unwrap();
    for args in [&["migrate"][..], &["init", "--email", "ada@example.com"]] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("database.url"), "{err}");
    }
    // serve stops too, before listening
    let mut child = binary()
        .current_dir(dir.path())
        .arg("serve")
        .env_remove("AGENTHUB_DB")
        .env_remove("AGENTHUB_DATABASE_URL")
        .env("AGENTHUB_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with a database.url that is not PostgreSQL");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("database.url"), "{err}");
    // nothing was made in its place
    assert_eq!(files_in(dir.path()), ["config.toml"]);
}
