//! `GET /metrics`: Prometheus text for operators.

mod common;

use common::spawn_app;
use serde_json::json;

async fn scrape(app: &common::TestApp) -> String {
    let mut res = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    String::from_utf8(res.body().await.unwrap().to_vec()).unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[actix_web::test]
async fn metrics_count_runtimes_tasks_requests_and_pool_waits() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let rt = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    app.runtime(&alice.token, &ws, "mbp", "codex").await;
    app.post(
        "/api/daemon/deregister",
        &alice.token,
        json!({"runtime_ids": [rt]}),
    )
    .await;
    let agent = app.agent(&alice.token, &ws, &rt, json!({})).await;
    app.task(&alice.token, &agent, "a", 0).await;
    app.task(&alice.token, &agent, "b", 0).await;
    app.get(
        "/api/runtimes/00000000-0000-4000-8000-000000000000/activity",
        &alice.token,
    )
    .await;

    let text = scrape(&app).await;
    assert_eq!(value(&text, r#"agenthub_runtimes{status="online"}"#), 1.0);
    assert_eq!(value(&text, r#"agenthub_runtimes{status="offline"}"#), 1.0);
    assert_eq!(value(&text, r#"agenthub_tasks{status="queued"}"#), 2.0);
    assert_eq!(value(&text, r#"agenthub_tasks{status="running"}"#), 0.0);
    assert_eq!(
        value(
            &text,
            r#"agenthub_http_requests_total{method="POST",route="/api/daemon/register",status="200"}"#
        ),
        2.0
    );
    // routes are counted by pattern, not by id
    assert_eq!(
        value(
            &text,
            r#"agenthub_http_requests_total{method="GET",route="/api/runtimes/{id}/activity",status="404"}"#
        ),
        1.0
    );
    assert!(value(&text, "agenthub_db_pool_wait_seconds_count") > 0.0);
    assert!(text.contains("agenthub_sweep_duration_seconds_count"));
    assert!(!text.contains(&ws), "no ids in metrics");
}

#[actix_web::test]
async fn sweeps_are_timed() {
    let app = common::spawn_app_with(|c| c.sweeper.interval_secs = 1).await;
    let mut swept = false;
    for _ in 0..60 {
        if value(&scrape(&app).await, "agenthub_sweep_duration_seconds_count") >= 1.0 {
            swept = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(swept, "no sweep recorded");
}

#[actix_web::test]
async fn custom_methods_share_one_label() {
    let app = spawn_app().await;
    for i in 0..200 {
        let r = app
            .request(&format!("PROBE{i}"), "/health", None, None)
            .await;
        assert!(r.status < 500, "{r:?}");
    }
    let text = scrape(&app).await;
    assert!(!text.contains("PROBE"), "a custom method became a label");
    let other: f64 = text
        .lines()
        .filter(|l| l.starts_with(r#"agenthub_http_requests_total{method="other","#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(other, 200.0, "{text}");
}
