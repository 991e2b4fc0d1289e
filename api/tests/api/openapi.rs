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

/// Operations anyone may call, each for a reason: probes, browsing the
/// catalogue (a showtime's waiting room included), the ticket keys
/// scanners need, a device id for guests, and the ways into an account
/// (which cannot need one).
const PUBLIC: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /v1/movies",
    "GET /v1/movies/{id}",
    "GET /v1/search",
    "GET /v1/search/suggest",
    "GET /v1/showtimes/{id}",
    "GET /v1/showtimes/{id}/seats",
    "GET /v1/showtimes/{id}/waiting-room",
    "POST /v1/devices",
    "GET /v1/theaters",
    "GET /v1/theaters/{id}",
    "GET /v1/theaters/{id}/screens",
    "GET /v1/showtimes/{id}/seats/stream",
    "GET /v1/tickets/signing-key",
    "POST /v1/auth/registrations",
    "POST /v1/auth/verification-requests",
    "POST /v1/auth/email-verifications",
    "POST /v1/auth/sessions",
    "POST /v1/auth/refresh",
    "POST /v1/auth/password-resets",
    "POST /v1/auth/password-resets/confirmation",
];

fn schemes(operation: &serde_json::Value) -> Vec<String> {
    operation["security"]
        .as_array()
        .map(|alternatives| {
            alternatives
                .iter()
                .flat_map(|alternative| {
                    let names = alternative.as_object().expect("requirement").keys();
                    if alternative
                        .as_object()
                        .is_some_and(serde_json::Map::is_empty)
                    {
                        vec!["anyone".to_owned()]
                    } else {
                        names.cloned().collect()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_operation_declares_who_may_call_it() {
    let spec: serde_json::Value = serde_json::from_str(&checked_in()).expect("json");
    let mut public_seen = Vec::new();
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let name = format!("{} {path}", method.to_ascii_uppercase());
            let schemes = schemes(operation);
            if path.starts_with("/v1/admin/") {
                assert!(
                    !schemes.is_empty() && schemes.iter().all(|s| s == "staff" || s == "admin"),
                    "{name} is an admin route open to {schemes:?}"
                );
            } else if path.starts_with("/v1/me") {
                assert_eq!(schemes, vec!["customer"], "{name}");
            } else if schemes.is_empty() {
                assert!(
                    PUBLIC.contains(&name.as_str()),
                    "{name} is public by accident"
                );
                public_seen.push(name);
            } else {
                assert!(
                    !PUBLIC.contains(&name.as_str()),
                    "{name} is listed public but is not"
                );
            }
        }
    }
    for name in PUBLIC {
        assert!(
            public_seen.iter().any(|seen| seen == name),
            "{name} no longer exists"
        );
    }
    let bearer: Vec<&str> = ["customer", "staff", "admin"].to_vec();
    for name in bearer {
        assert_eq!(
            spec["components"]["securitySchemes"][name]["scheme"], "bearer",
            "{name}"
        );
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
