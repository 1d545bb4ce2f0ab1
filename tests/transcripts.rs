//! Task transcripts: what a daemon reports is stored once per seq,
//! redacted, read back by those who may read the task, bounded with a
//! clear 413, and published as `task:message`.

mod common;

use agenthub::domain::Role;
use common::{machine, Machine};
use serde_json::{json, Value};

/// A task claimed and started on the machine's runtime.
async fn running(m: &Machine) -> String {
    let task = m.app.task(&m.alice.token, &m.agent, "fix it", 0).await;
    let r = m.app.claim(&m.daemon, &m.rt).await;
    assert_eq!(r.body["task"]["id"], task.as_str(), "{:?}", r.body);
    let r = m
        .app
        .post(
            &format!("/api/daemon/tasks/{task}/start"),
            &m.daemon,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    task
}

async fn report(m: &Machine, task: &str, messages: Value) -> common::Reply {
    m.app
        .post(
            &format!("/api/daemon/tasks/{task}/messages"),
            &m.daemon,
            json!({ "messages": messages }),
        )
        .await
}

async fn transcript(m: &Machine, task: &str, query: &str) -> Vec<Value> {
    let r = m
        .app
        .get(
            &format!("/api/tasks/{task}/messages{query}"),
            &m.alice.token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body.as_array().expect("an array").clone()
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[actix_web::test]
async fn messages_are_kept_in_seq_order_once_per_seq() {
    let m = machine(json!({})).await;
    let task = running(&m).await;
    let r = report(
        &m,
        &task,
        json!([
            {"seq": 2, "type": "tool_use", "tool": "bash", "input": {"command": "ls"}},
            {"seq": 1, "type": "text", "content": "Looking at the tree"},
        ]),
    )
    .await;
    assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})));
    // a batch sent again after a lost reply, and one more: seq 2 keeps
    // what was first reported
    let r = report(
        &m,
        &task,
        json!([
            {"seq": 2, "type": "tool_use", "tool": "bash", "input": {"command": "rm -rf /"}},
            {"seq": 3, "type": "tool_result", "tool": "bash", "output": "src\ntests"},
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let all = transcript(&m, &task, "").await;
    assert_eq!(seqs(&all), [1, 2, 3]);
    let mut first = all[0].clone();
    assert!(first["created_at"].is_string());
    first.as_object_mut().unwrap().remove("created_at");
    assert_eq!(
        first,
        json!({"task_id": task, "seq": 1, "type": "text", "content": "Looking at the tree"})
    );
    assert_eq!(all[1]["input"], json!({"command": "ls"}));
    assert_eq!(all[2]["output"], "src\ntests");
    assert_eq!(seqs(&transcript(&m, &task, "?after_seq=1").await), [2, 3]);
    // Multica's name for it
    assert_eq!(seqs(&transcript(&m, &task, "?since=2").await), [3]);
    let r = m
        .app
        .get(&format!("/api/daemon/tasks/{task}/messages"), &m.daemon)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Value::Array(all));
    assert_eq!(
        m.app.count(&format!(
            "SELECT count(*) FROM task_message WHERE task_id = '{task}'"
        )),
        3
    );

    // after complete, a last flush is still kept
    let r = m
        .app
        .post(
            &format!("/api/daemon/tasks/{task}/complete"),
            &m.daemon,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = report(
        &m,
        &task,
        json!([{"seq": 4, "type": "text", "content": "done"}]),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(seqs(&transcript(&m, &task, "").await), [1, 2, 3, 4]);
    for query in ["?after_seq=-1", "?after_seq=x", "?limit=0", "?limit=1001"] {
        let r = m
            .app
            .get(
                &format!("/api/tasks/{task}/messages{query}"),
                &m.alice.token,
            )
            .await;
        assert_eq!(r.status, 400, "{query}");
    }
}

#[actix_web::test]
async fn secrets_are_redacted_before_they_are_stored_or_published() {
    let m = machine(json!({})).await;
    let task = running(&m).await;
    let mut events = m.app.state.events.subscribe(m.ws.parse().unwrap());
    let hex40 = "0123456789abcdef0123456789abcdef01234567";
    // (what is sent, what it becomes, the part that must not be kept)
    let secrets: Vec<(String, &str, String)> = [
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----".to_string(),
            "[REDACTED PRIVATE KEY]",
            "MIIEpAIBAAKCAQEA",
        ),
        (format!("mul_{hex40}"), "[REDACTED AGENTHUB TOKEN]", hex40),
        (format!("mdt_{hex40}"), "[REDACTED AGENTHUB TOKEN]", hex40),
        (format!("mat_{hex40}"), "[REDACTED AGENTHUB TOKEN]", hex40),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(), "[REDACTED API KEY]", "api03-abcdefghijklmnop"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz".into(), "[REDACTED API KEY]", "proj-abcdefghijklmnop"),
        ("AKIAIOSFODNN7EXAMPLE".into(), "[REDACTED AWS KEY]", "IOSFODNN7EXAMPLE"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            "[REDACTED AWS SECRET]",
            "wJalrXUtnFEMI",
        ),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789".into(), "[REDACTED GITHUB TOKEN]", "ghp_abcdefghij"),
        ("github_pat_11ABCDEFG0123456789_abcdefghij".into(), "[REDACTED GITHUB TOKEN]", "11ABCDEFG0123456789"),
        ("glpat-abcdefghijklmnopqrst".into(), "[REDACTED GITLAB TOKEN]", "glpat-abcdefghij"),
        ("xoxb-1234567890-abcdefghij".into(), "[REDACTED SLACK TOKEN]", "1234567890-abcdefghij"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz01234".into(), "[REDACTED GOOGLE API KEY]", "SyA-abcdefghijklmnop"),
        ("sk_live_abcdefghijklmnop1234".into(), "[REDACTED STRIPE KEY]", "abcdefghijklmnop1234"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
            "[REDACTED JWT]",
            "dozjgNryP4J3jVmNHl0w5N",
        ),
        ("Bearer abc.def-123xyz".into(), "Bearer [REDACTED]", "abc.def-123xyz"),
        ("postgres://ada:hunter2@db/prod".into(), "postgres://ada:[REDACTED]@db/prod", "hunter2"),
        ("ANTHROPIC_API_KEY=abc123xyz".into(), "ANTHROPIC_API_KEY=[REDACTED]", "abc123xyz"),
        ("password: correct-horse".into(), "password: [REDACTED]", "correct-horse"),
    ]
    .into_iter()
    .map(|(secret, label, hidden): (String, &str, &str)| (secret, label, hidden.to_string()))
    .collect();
    let messages: Vec<Value> = secrets
        .iter()
        .enumerate()
        .map(|(i, (secret, _, _))| {
            json!({"seq": i, "type": "tool_result", "tool": "bash",
                   "content": format!("saw {secret} here"),
                   "output": format!("out {secret}"),
                   "input": {"env": [format!("in {secret}")]}})
        })
        .collect();
    let r = report(&m, &task, Value::Array(messages)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let stored = transcript(&m, &task, "").await;
    let published: Vec<Value> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| e.kind == "task:message")
        .map(|e| e.payload())
        .collect();
    assert_eq!(published.len(), secrets.len());
    for (i, (secret, label, _)) in secrets.iter().enumerate() {
        for message in [&stored[i], &published[i]] {
            assert_eq!(message["content"], format!("saw {label} here"), "{secret}");
            assert_eq!(message["output"], format!("out {label}"), "{secret}");
            assert_eq!(
                message["input"],
                json!({"env": [format!("in {label}")]}),
                "{secret}"
            );
        }
    }
    let dump = m.app.dump();
    for (secret, _, hidden) in &secrets {
        assert!(
            !dump.contains(hidden.as_str()),
            "{secret} reached the database"
        );
    }
}

#[actix_web::test]
async fn an_oversized_message_or_a_full_transcript_is_a_413_that_stores_nothing() {
    let m = machine(json!({})).await;
    let task = running(&m).await;
    let r = report(
        &m,
        &task,
        json!([
            {"seq": 1, "type": "text", "content": "fits"},
            {"seq": 2, "type": "text", "content": "x".repeat(33 * 1024)},
        ]),
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(r.error(), "messages[1] is too large (limit 32768 bytes)");
    assert!(transcript(&m, &task, "").await.is_empty());

    // 16 MiB of text in 30 KiB messages, 32 to a request
    let chunk = "y".repeat(30 * 1024);
    let per_message = 30 * 1024 + "text".len();
    let fit = 16 * 1024 * 1024 / per_message;
    let mut seq = 0;
    while seq < fit {
        let batch: Vec<Value> = (seq..fit.min(seq + 32))
            .map(|s| json!({"seq": s, "type": "text", "content": chunk}))
            .collect();
        seq += batch.len();
        let r = report(&m, &task, Value::Array(batch)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = report(
        &m,
        &task,
        json!([
            {"seq": fit, "type": "text", "content": "small"},
            {"seq": fit + 1, "type": "text", "content": chunk},
        ]),
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "the transcript of this task is full (limit 16777216 bytes)"
    );
    assert_eq!(
        m.app.count(&format!(
            "SELECT count(*) FROM task_message WHERE task_id = '{task}'"
        )),
        fit as i64,
        "nothing of the refused batch was kept"
    );
    // a repeat of what is stored still answers 200: it adds nothing
    let r = report(
        &m,
        &task,
        json!([{"seq": 0, "type": "text", "content": chunk}]),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn bad_messages_are_400s_naming_the_field_and_store_nothing() {
    let m = machine(json!({})).await;
    let task = running(&m).await;
    let before = m.app.dump();
    for (messages, error) in [
        (
            json!([{"type": "text"}]),
            "messages[0].seq must be an integer from 0 to 2147483647",
        ),
        (
            json!([{"seq": -1, "type": "text"}]),
            "messages[0].seq must be an integer from 0 to 2147483647",
        ),
        (json!([{"seq": 1}]), "messages[0].type is required"),
        (
            json!([{"seq": 1, "type": "t".repeat(65)}]),
            "messages[0].type is too long (at most 64 bytes)",
        ),
        (
            json!([{"seq": 1, "type": "text", "content": 5}]),
            "messages[0].content must be a string",
        ),
        (
            json!([{"seq": 1, "type": "text", "input": "ls"}]),
            "messages[0].input must be an object",
        ),
        (
            json!([{"seq": 1, "type": "text"}, {"seq": 2, "type": "text", "content": "a\u{0}b"}]),
            "messages[1].content must not contain NUL characters",
        ),
        (
            json!([{"seq": 1, "type": "tool_use", "input": {"k": "\u{0}"}}]),
            "messages[0].input must not contain NUL characters",
        ),
        (json!("hi"), "messages must be an array"),
    ] {
        let r = report(&m, &task, messages.clone()).await;
        assert_eq!((r.status, r.error()), (400, error), "{messages}");
    }
    assert_eq!(before, m.app.dump());
}

#[actix_web::test]
async fn only_those_who_may_read_the_task_read_its_transcript() {
    let m = machine(json!({"visibility": "private"})).await;
    let task = running(&m).await;
    report(
        &m,
        &task,
        json!([{"seq": 1, "type": "text", "content": "secret plan"}]),
    )
    .await;
    let app = &m.app;
    let admin = app.add_user("ada@example.com", Some((&m.ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&m.ws, Role::Member)));
    let (mallory, _) = app.init_user("mallory@example.com");
    let path = format!("/api/tasks/{task}/messages");
    assert_eq!(app.get(&path, &admin.token).await.status, 200);
    for token in [&bob.token, &mallory.token] {
        let r = app.get(&path, token).await;
        assert_eq!((r.status, r.error()), (404, "task not found"));
    }
    // another machine's daemon of the same member reaches neither route
    let laptop = app.daemon_token(&m.alice.token, &m.ws, "laptop").await;
    let r = app
        .get(&format!("/api/daemon/tasks/{task}/messages"), &laptop)
        .await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    let r = app
        .post(
            &format!("/api/daemon/tasks/{task}/messages"),
            &laptop,
            json!({"messages": [{"seq": 9, "type": "text", "content": "forged"}]}),
        )
        .await;
    assert_eq!((r.status, r.error()), (404, "task not found"));
    // a queued task has nothing to report yet
    let queued = app.task(&m.alice.token, &m.agent, "later", 0).await;
    let r = report(&m, &queued, json!([{"seq": 1, "type": "text"}])).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "cannot report on task: it is queued")
    );
    assert_eq!(seqs(&transcript(&m, &task, "").await), [1]);
}
