//! The embedded dashboard in a real headless Chromium: `tests/browser/
//! dashboard.mjs` drives it against the real binary (with second-scale
//! sweeper thresholds) while playing the daemon. Screenshots of each page
//! land in `tests/artifacts/`.
//!
//! Needs Debian's `chromium` and the npm packages: `scripts/install-test-deps.sh`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{binary, ServerProcess, TestDb};

#[actix_web::test]
async fn dashboard_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && root.join("node_modules/playwright-core").exists(),
        "the browser test needs Chromium and playwright-core: run scripts/install-test-deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[sweeper]\ninterval_secs = 1\nstale_after_secs = 3\n",
    )
    .unwrap();
    let db = TestDb::fresh(dir.path());
    let mut init = binary();
    init.current_dir(dir.path()).args([
        "init",
        "--email",
        "ui@example.com",
        "--name",
        "Ada",
        "--json",
    ]);
    db.point(&mut init);
    let out = init.output().unwrap();
    assert!(out.status.success());
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = ServerProcess::start(dir.path(), &db);

    let artifacts = root.join("tests/artifacts");
    let run = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(root)
            .arg("tests/browser/dashboard.mjs")
            .arg(&server.base)
            .arg(init["token"].as_str().unwrap())
            .arg(init["workspace_id"].as_str().unwrap())
            .arg(&artifacts)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"));
    for shot in [
        "runtimes",
        "runtime-usage",
        "runtimes-swept",
        "workspace-usage",
        "runtimes-phone",
    ] {
        assert!(
            root.join(format!("tests/artifacts/{shot}.png")).exists(),
            "{shot}.png"
        );
    }
}
