//! Keyset pagination of the long lists: `?limit=N&cursor=C`, a plain JSON
//! array per page, and the next page's cursor in `X-Next-Cursor` and
//! `Link` while more rows follow.

mod common;

use agenthub::domain::Role;
use common::{registration, spawn_app, TestApp};
use serde_json::{json, Value};

/// One page: status, body, and the next-page headers.
struct Page {
    status: u16,
    body: Value,
    next: Option<String>,
    link: Option<String>,
}

impl Page {
    fn ids(&self) -> Vec<String> {
        self.body
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {}", self.body))
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn get_page(app: &TestApp, path: &str, token: &str) -> Page {
    let mut res = app
        .client
        .get(format!("{}{path}", app.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (next, link) = (header("X-Next-Cursor"), header("Link"));
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
    Page {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).expect("json"),
        next,
        link,
    }
}

/// Follows the cursors from `first` to the end; returns every page's ids.
async fn walk(app: &TestApp, first: &str, token: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = first.to_string();
    loop {
        let page = get_page(app, &path, token).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages.push(page.ids());
        let Some(cursor) = page.next else {
            assert_eq!(page.link, None);
            return pages;
        };
        let sep = if first.contains('?') { '&' } else { '?' };
        path = format!("{first}{sep}cursor={cursor}");
        assert!(pages.len() < 100, "no end in sight");
    }
}

/// The ids in the database, in the given order (the pages' contract).
fn ids_in_order(app: &TestApp, sql: &str) -> Vec<String> {
    app.column(sql)
}

#[actix_web::test]
async fn runtimes_come_a_hundred_at_a_time_and_a_cursor_walk_sees_each_once() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    // one registration carries up to 100 runtimes, one per type
    for (daemon, range) in [("mbp", 0..100), ("studio", 100..200), ("mini", 200..250)] {
        let types: Vec<String> = range.map(|i| format!("agent-cli-{i}")).collect();
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let r = app
            .post(
                "/api/daemon/register",
                &alice.token,
                registration(&ws, daemon, &types),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let expected = ids_in_order(&app, "SELECT id FROM agent_runtime ORDER BY created_at, id");
    assert_eq!(expected.len(), 250);

    let first = format!("/api/runtimes?workspace_id={ws}");
    let page = get_page(&app, &first, &alice.token).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.ids(), expected[..100]);
    let cursor = page.next.expect("a next cursor");
    assert_eq!(
        page.link.as_deref(),
        Some(format!("<{first}&cursor={cursor}>; rel=\"next\"").as_str())
    );

    let pages = walk(&app, &first, &alice.token).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert_eq!(pages.concat(), expected);

    let pages = walk(&app, &format!("{first}&limit=7"), &alice.token).await;
    assert_eq!(pages.len(), 36);
    assert_eq!(pages.concat(), expected);
    let pages = walk(&app, &format!("{first}&limit=500"), &alice.token).await;
    assert_eq!(pages, [expected]);
}

#[actix_web::test]
async fn the_link_header_leads_to_the_next_page_with_the_same_filters() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    for (token, daemon) in [(&alice.token, "a"), (&bob.token, "b")] {
        let r = app
            .post(
                "/api/daemon/register",
                token,
                registration(&ws, daemon, &["claude", "codex", "gemini"]),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut path = format!("/api/runtimes?workspace_id={ws}&owner=me&limit=2");
    loop {
        pages += 1;
        let page = get_page(&app, &path, &bob.token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for runtime in page.body.as_array().unwrap() {
            assert_eq!(runtime["owner_id"], bob.id.as_str());
            seen.push(runtime["id"].as_str().unwrap().to_string());
        }
        let Some(link) = page.link else { break };
        let target = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("{link}"));
        path = target.to_string();
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 3);
}

#[actix_web::test]
async fn a_page_resumes_after_its_cursor_even_when_that_row_is_gone() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let r = app
        .register(&alice.token, &ws, "mbp", &["a", "b", "c", "d", "e"])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let expected = ids_in_order(&app, "SELECT id FROM agent_runtime ORDER BY created_at, id");
    let first = format!("/api/runtimes?workspace_id={ws}&limit=2");
    let page = get_page(&app, &first, &alice.token).await;
    assert_eq!(page.ids(), expected[..2]);
    let r = app
        .delete(&format!("/api/runtimes/{}", expected[1]), &alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cursor = page.next.unwrap();
    let page = get_page(&app, &format!("{first}&cursor={cursor}"), &alice.token).await;
    assert_eq!(page.ids(), expected[2..4]);
}

#[actix_web::test]
async fn agents_and_an_agents_tasks_are_paginated() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    for visibility in ["workspace", "private", "workspace", "private", "workspace"] {
        app.agent(&alice.token, &ws, &rt, json!({ "visibility": visibility }))
            .await;
    }
    let all = ids_in_order(&app, "SELECT id FROM agent ORDER BY created_at, id");
    let public = ids_in_order(
        &app,
        "SELECT id FROM agent WHERE visibility = 'workspace' ORDER BY created_at, id",
    );
    let first = format!("/api/agents?workspace_id={ws}&limit=2");
    let pages = walk(&app, &first, &alice.token).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), all);
    // a member's pages hold only what they may see
    let pages = walk(&app, &first, &bob.token).await;
    assert_eq!(pages.len(), 2);
    assert_eq!(pages.concat(), public);

    let agent = &public[0];
    for n in 0..5 {
        app.task(&alice.token, agent, &format!("task {n}"), 0).await;
    }
    let newest_first = ids_in_order(
        &app,
        "SELECT id FROM agent_task_queue ORDER BY created_at DESC, id DESC",
    );
    let pages = walk(
        &app,
        &format!("/api/agents/{agent}/tasks?limit=2"),
        &bob.token,
    )
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), newest_first);
    let page = get_page(&app, &format!("/api/agents/{agent}/tasks"), &bob.token).await;
    assert_eq!(page.ids(), newest_first);
    assert_eq!(page.next, None);
}

#[actix_web::test]
async fn a_bad_limit_or_cursor_is_400() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let lists = [
        format!("/api/runtimes?workspace_id={ws}&"),
        format!("/api/agents?workspace_id={ws}&"),
        format!("/api/agents/{agent}/tasks?"),
    ];
    for list in &lists {
        for limit in ["0", "501", "-1", "ten", "1.5", "99999999999999999999999"] {
            let page = get_page(&app, &format!("{list}limit={limit}"), &alice.token).await;
            assert_eq!(page.status, 400, "{list}limit={limit}");
            assert_eq!(
                page.body["error"],
                "limit must be an integer between 1 and 500"
            );
        }
        let forged = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("yesterday|not-an-id")
        };
        for cursor in ["x", "%00", "!!!!", forged.as_str()] {
            let page = get_page(&app, &format!("{list}cursor={cursor}"), &alice.token).await;
            assert_eq!(page.status, 400, "{list}cursor={cursor}");
            assert_eq!(page.body["error"], "invalid cursor");
        }
        let page = get_page(&app, &format!("{list}limit=500"), &alice.token).await;
        assert_eq!(page.status, 200, "{list}");
    }
}

#[actix_web::test]
async fn a_page_of_tasks_ends_early_rather_than_carry_megabytes() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    let prompt = "p".repeat(64 * 1024);
    let mut queued = Vec::new();
    for _ in 0..100 {
        queued.push(app.task(&alice.token, &agent, &prompt, 0).await);
    }
    // 100 prompts of 64 KiB are 6.4 MiB: the first page stops near 4 MiB
    let first = format!("/api/agents/{agent}/tasks");
    let page = get_page(&app, &first, &alice.token).await;
    let n = page.ids().len();
    assert!((60..=64).contains(&n), "{n} tasks on the first page");
    assert!(
        page.next.is_some(),
        "a page that ended early says more follow"
    );
    let seen: Vec<String> = walk(&app, &first, &alice.token).await.concat();
    queued.reverse();
    assert_eq!(seen, queued, "every task once, newest first");
}

#[actix_web::test]
async fn a_transcript_is_read_a_page_at_a_time_by_seq() {
    let m = common::machine(json!({})).await;
    let task = m.app.task(&m.alice.token, &m.agent, "x", 0).await;
    m.app.claim(&m.daemon, &m.rt).await;
    let messages: Vec<Value> = (1..=5)
        .map(|seq| json!({"seq": seq, "type": "text", "content": format!("m{seq}")}))
        .collect();
    let r = m
        .app
        .post(
            &format!("/api/daemon/tasks/{task}/messages"),
            &m.daemon,
            json!({ "messages": messages }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seqs = |page: &Page| -> Vec<i64> {
        page.body
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["seq"].as_i64().unwrap())
            .collect()
    };
    let first = get_page(
        &m.app,
        &format!("/api/tasks/{task}/messages?limit=2"),
        &m.alice.token,
    )
    .await;
    assert_eq!(seqs(&first), [1, 2]);
    assert_eq!(first.next.as_deref(), Some("2"));
    let link = first.link.expect("a Link header");
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(path, _)| path.to_string())
        .expect("rel=next");
    assert_eq!(
        next,
        format!("/api/tasks/{task}/messages?limit=2&after_seq=2")
    );
    let second = get_page(&m.app, &next, &m.alice.token).await;
    assert_eq!(seqs(&second), [3, 4]);
    let last = get_page(
        &m.app,
        &format!("/api/tasks/{task}/messages?limit=2&after_seq=4"),
        &m.alice.token,
    )
    .await;
    assert_eq!(seqs(&last), [5]);
    assert_eq!((last.next, last.link), (None, None));
}
