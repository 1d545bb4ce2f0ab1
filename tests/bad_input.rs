//! Bad input over every documented route: malformed JSON, wrong types,
//! huge numbers, invalid UTF-8, junk and foreign ids, oversized bodies and
//! path junk. Nothing may answer 5xx, and no refused request may change
//! the database. The cases are drawn from a seeded generator, so a failure
//! names a case that can be replayed.

mod common;

use common::{spawn_app, spawn_app_with};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

const CASES_PER_ROUTE: usize = 40;
const SEED: u64 = 0x5eed_a9e1;

fn id_junk(foreign: &[String]) -> Vec<String> {
    let mut junk: Vec<String> = [
        "x",
        "0",
        "-1",
        "99999999999999999999999999",
        "%00",
        "%FF%FE",
        "..%2F..%2Fetc%2Fpasswd",
        "'%20OR%201=1--",
        "00000000-0000-0000-0000-000000000000",
        "6F9619FF8B86D011B42D00C04FC964FF",
        "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
        "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "6f9619ff-8b86-d011-b42d-00c04fc964ff-",
        "%E2%80%AE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    junk.push("a".repeat(5000));
    junk.push(uuid::Uuid::new_v4().to_string());
    junk.extend(foreign.iter().cloned());
    junk
}

fn bodies() -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = [
        "",
        "{",
        "}",
        "[",
        "null",
        "[]",
        "[1,2,3]",
        "\"string\"",
        "12",
        "{\"a\":}",
        "{'single': 'quotes'}",
        "{\"name\": 5, \"prompt\": [], \"email\": {}, \"role\": 7}",
        "{\"workspace_id\": 12, \"daemon_id\": [], \"runtimes\": \"x\"}",
        "{\"runtime_id\": 99999999999999999999999999999}",
        "{\"runtime_ids\": \"not-a-list\"}",
        "{\"runtime_ids\": [\"x\", 1, null]}",
        "{\"max_concurrent_tasks\": 1e400, \"name\": true}",
        "{\"priority\": 1.5e300, \"prompt\": 3}",
        "{\"expires_in_days\": -99999999999999999999}",
        "{\"status\": 5, \"duration_ms\": \"fast\"}",
        "{\"target_version\": {}}",
        "{\"entries\": \"x\"}",
        "{\"usage\": 7}",
        "{\"slug\": 0, \"name\": null}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    b.push(vec![0xff, 0xfe, 0x7b, 0x22, 0x80]);
    b.push(b"{\"name\": \"\xff\xfe\"}".to_vec());
    b.push("[".repeat(10_000).into_bytes());
    b.push(vec![0u8; 64]);
    b
}

#[actix_web::test]
async fn no_bad_input_causes_a_5xx_or_a_change() {
    // the sweeper stays out of the before/after comparisons: a run longer
    // than the stale window (slow machine, PostgreSQL) would see it mark
    // the runtimes offline between two dumps
    let app = spawn_app_with(|c| c.sweeper.interval_secs = 86_400).await;
    let (alice, ws) = app.init_user("alice@example.com");
    let (mallory, mws) = app.init_user("mallory@example.com");
    // foreign objects the junk may point at
    let mrt = app.runtime(&mallory.token, &mws, "m", "claude").await;
    let magent = app.agent(&mallory.token, &mws, &mrt, json!({})).await;
    let mtask = app.task(&mallory.token, &magent, "m", 0).await;
    // alice's own, so authorization passes and only the input is wrong
    let rt = app.runtime(&alice.token, &ws, "a", "claude").await;
    let foreign = vec![mws.clone(), mrt, magent, mtask];
    let junk = id_junk(&foreign);
    let bodies = bodies();
    let workspace_headers: Vec<Vec<u8>> = vec![
        b"junk".to_vec(),
        vec![0xff, 0xfe],
        mws.clone().into_bytes(),
        b"".to_vec(),
    ];
    let queries = [
        "",
        "?days=-1",
        "?days=abc&tz=Mars%2FOlympus",
        "?days=99999999999999999999",
        "?owner=%FF&include_archived=maybe",
        "?workspace_id=%00",
    ];
    let routes = app.documented_routes().await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut sent = 0;

    for (method, template) in &routes {
        if template == "/api/events" {
            continue; // a stream; its scoping is covered in tests/events.rs
        }
        for case in 0..CASES_PER_ROUTE {
            let mut path = template.clone();
            while let Some(start) = path.find('{') {
                let end = start + path[start..].find('}').unwrap();
                path.replace_range(start..=end, junk.choose(&mut rng).unwrap());
            }
            path.push_str(queries.choose(&mut rng).unwrap());
            let body = bodies.choose(&mut rng).unwrap().clone();
            let mut headers = Vec::new();
            if rng.random_bool(0.7) {
                headers.push((
                    "X-Workspace-ID",
                    workspace_headers.choose(&mut rng).unwrap().clone(),
                ));
            }
            let before = app.dump();
            let (status, text) = app
                .send_raw(
                    &method.to_uppercase(),
                    &path,
                    &alice.token,
                    body.clone(),
                    &headers,
                )
                .await;
            sent += 1;
            // an object with unknown fields is a valid (if odd) request to
            // create a token; everything else must leave the file alone
            if !(status < 300 && method == "post" && template == "/api/tokens") {
                assert_eq!(
                    before,
                    app.dump(),
                    "{method} {path} body {:?} → {status} {text} changed the database",
                    String::from_utf8_lossy(&body)
                );
            }
            assert!(
                status < 500,
                "case {case} of {method} {template}: {method} {path} body {:?} → {status} {text}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{method} {path}: error reply not JSON: {text}"));
                assert!(
                    v["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{method} {path}: {text}"
                );
            }
        }
        // and one oversized body per writing route
        if method != "get" && method != "delete" {
            let path = template.replace("{id}", &rt);
            let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
            let (status, text) = app
                .send_raw(&method.to_uppercase(), &path, &alice.token, huge, &[])
                .await;
            assert!(status < 500, "oversized {method} {path}: {status} {text}");
        }
    }
    assert!(sent > 1500, "{sent} requests");
}

#[actix_web::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let huge =
        json!({"workspace_id": ws, "daemon_id": "x".repeat(2 * 1024 * 1024), "runtimes": [{}]});
    let r = app.post("/api/daemon/register", &alice.token, huge).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error(), "request body too large (limit 1048576 bytes)");
    assert_eq!(app.count("SELECT count(*) FROM agent_runtime"), 0);
}
