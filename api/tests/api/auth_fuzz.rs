//! Property tests of the auth routes: whatever body arrives, the answer is
//! a 4xx problem+json, never a 5xx, and nothing is signed in by accident.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::accounts::accounts_app_with;
use crate::helpers::assert_problem;

const ROUTES: &[&str] = &[
    "/v1/auth/registrations",
    "/v1/auth/sessions",
    "/v1/auth/refresh",
    "/v1/auth/email-verifications",
    "/v1/auth/password-resets",
    "/v1/auth/password-resets/confirmation",
    "/v1/auth/verification-requests",
];

const FIELDS: &[&str] = &[
    "email",
    "password",
    "name",
    "totp",
    "token",
    "refresh_token",
    "new_password",
    "role",
    "admin",
];

/// Any JSON, weighted toward the shapes auth bodies take: objects with the
/// known field names holding values of every type, oversized strings and
/// near-miss addresses and tokens.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        ".{0,40}",
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}",
        "[0-9a-f]{32}\\.[A-Za-z0-9_-]{43}",
        "[0-9]{6}",
        Just("x".repeat(5000)),
        Just("\u{0}\u{7f}".to_owned()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text.prop_map(Value::String),
    ];
    let nested = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    let field_object =
        prop::collection::btree_map(prop::sample::select(FIELDS), nested.clone(), 0..5).prop_map(
            |map| {
                Value::Object(
                    map.into_iter()
                        .map(|(key, value)| ((*key).to_owned(), value))
                        .collect::<Map<String, Value>>(),
                )
            },
        );
    prop_oneof![3 => field_object, 1 => nested]
}

#[tokio::test]
async fn auth_routes_answer_any_body_with_a_problem_and_never_sign_anyone_in() {
    // Limits high enough that every case reaches its handler.
    let app = accounts_app_with(|settings| {
        settings.auth.credential_rate_limit.per_second = 10_000;
        settings.auth.credential_rate_limit.burst = 10_000;
        // The per-client limit too: with its default (100/s, burst 200)
        // a case was limited once while the whole suite ran.
        settings.http.rate_limit.per_second = 10_000;
        settings.http.rate_limit.burst = 10_000;
    })
    .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let strategy = (prop::sample::select(ROUTES), json_value());
    for case in 0..256 {
        let (route, body) = strategy.new_tree(&mut runner).expect("a case").current();
        let response = app
            .client
            .post(app.url(route))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        *statuses.entry(status).or_default() += 1;
        // Well-formed registrations and reset requests are accepted (202)
        // without saying whether the address exists; everything else fails.
        if status == 202 {
            assert!(
                [
                    "/v1/auth/registrations",
                    "/v1/auth/password-resets",
                    "/v1/auth/verification-requests"
                ]
                .contains(&route),
                "case {case}: {route} accepted {body}"
            );
            continue;
        }
        assert!(
            (400..500).contains(&status),
            "case {case}: {route} answered {status} to {body}"
        );
        assert_problem(response, status).await;
    }
    assert!(!statuses.contains_key(&429), "{statuses:?}");
    assert!(
        statuses.get(&422).copied().unwrap_or(0) > 50,
        "cases reach validation: {statuses:?}"
    );
}
