//! `/api/openapi.json` documents exactly the routes the handlers register.

mod common;

use std::collections::BTreeSet;

use common::spawn_app;

/// (method, path) of every `.route("<path>", web::<method>()` in src/api.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = rest[at + ".route(".len()..].trim_start();
            let Some(quoted) = rest.strip_prefix('"') else {
                continue;
            };
            let end = quoted.find('"').unwrap();
            let route_path = &quoted[..end];
            let after = quoted[end + 1..]
                .trim_start()
                .trim_start_matches(',')
                .trim_start();
            let method: String = after
                .strip_prefix("web::")
                .unwrap_or_else(|| {
                    panic!(
                        "{}: route {route_path} without web::<method>",
                        path.display()
                    )
                })
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            // routes of src/api/mod.rs sit at the root, the others under /api
            let full = if path.ends_with("mod.rs") {
                route_path.to_string()
            } else {
                format!("/api{route_path}")
            };
            routes.insert((method, full));
            rest = after;
        }
    }
    routes
}

#[actix_web::test]
async fn openapi_document_lists_every_route_and_nothing_else() {
    let app = spawn_app().await;
    let r = app.request("GET", "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in r.body["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let registered = registered_routes();
    assert!(registered.len() > 40, "found {} routes", registered.len());
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "openapi.json lists routes that do not exist: {stale:?}"
    );
}
