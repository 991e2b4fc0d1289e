use marquee::routes;

use crate::helpers::{root, spawn_app};

fn checked_in() -> String {
    std::fs::read_to_string(root().join("openapi/marquee.json"))
        .expect("openapi/marquee.json exists")
}

#[test]
fn the_checked_in_spec_matches_the_code() {
    let generated = routes::spec(&routes::service("/"));

    assert!(
        generated == checked_in(),
        "openapi/marquee.json is stale: run `make openapi` and commit the result"
    );
}

#[test]
fn every_operation_declares_the_errors_the_edge_can_answer() {
    let spec: serde_json::Value = serde_json::from_str(&checked_in()).expect("json");
    let paths = spec["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
            continue;
        }
        for (method, operation) in operations.as_object().expect("operations") {
            let responses = operation["responses"].as_object().expect("responses");
            let mut required = vec!["400", "404", "429", "500", "503"];
            if operation.get("requestBody").is_some() {
                required.extend(["413", "415", "422"]);
            }
            for status in required {
                let declared = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} lacks {status}"))["content"];
                assert!(
                    declared.get("application/problem+json").is_some(),
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[test]
fn request_bodies_are_json_only() {
    let spec: serde_json::Value = serde_json::from_str(&checked_in()).expect("json");
    for operations in spec["paths"].as_object().expect("paths").values() {
        for operation in operations.as_object().expect("operations").values() {
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                assert_eq!(content.keys().collect::<Vec<_>>(), vec!["application/json"]);
            }
        }
    }
}

#[tokio::test]
async fn the_served_spec_is_the_checked_in_spec_and_docs_render_it() {
    let app = spawn_app().await;

    let served = app.get("/openapi.json").await.text().await.expect("text");
    assert_eq!(served, checked_in());

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert!(docs.text().await.expect("html").contains("SwaggerUIBundle"));
}
