use std::collections::HashMap;

use marquee::settings::Settings;
use marquee::startup::{Application, StartupError};

use crate::helpers::{root, TestSchema};

#[tokio::test]
async fn an_unreachable_shard_stops_startup_naming_it_and_why() {
    let mut schema = TestSchema::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    schema.settings.database.shards[1].primary.port = closed.port();
    schema.settings.database.shards[1].primary.failover.clear();

    let err = Application::build(schema.settings.clone())
        .await
        .expect_err("shard-1 is down");

    let message = err.to_string();
    assert!(
        matches!(err, StartupError::Unreachable(ref errors) if errors.len() == 1),
        "{message}"
    );
    assert!(message.contains("shard-1 primary"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", closed.port())),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[test]
fn environment_variables_override_configuration_files() {
    let env = HashMap::from([
        ("MARQUEE__HTTP__PORT".to_owned(), "9555".to_owned()),
        (
            "MARQUEE__DATABASE__POOL__MAX_SIZE".to_owned(),
            "7".to_owned(),
        ),
    ]);

    let settings = Settings::load(&root(), None, env).expect("loads");

    assert_eq!(settings.http.port, 9555);
    assert_eq!(settings.database.pool.max_size, 7);
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let env = HashMap::from([
        (
            "MARQUEE__DATABASE__SCHEMA".to_owned(),
            "Robert'); drop".to_owned(),
        ),
        ("MARQUEE__ADMIN__TOKEN".to_owned(), "short".to_owned()),
        ("MARQUEE__HTTP__MAX_BODY_BYTES".to_owned(), "10".to_owned()),
    ]);

    let message = Settings::load(&root(), None, env)
        .expect_err("invalid")
        .to_string();

    assert!(message.contains("database.schema"), "{message}");
    assert!(message.contains("admin.token"), "{message}");
    assert!(message.contains("http.max_body_bytes"), "{message}");
}

#[test]
fn production_refuses_the_sandboxes_and_every_key_that_ships_with_the_code() {
    let env = HashMap::from([
        ("MARQUEE__ENVIRONMENT".to_owned(), "production".to_owned()),
        (
            "MARQUEE__BOOKING__TICKET_SIGNING_SECRET".to_owned(),
            "marquee-local-ticket-signing-secret".to_owned(),
        ),
    ]);

    let message = Settings::load(&root(), None, env)
        .expect_err("refused")
        .to_string();

    for key in [
        "payments.gateway_url",
        "sms.carrier_url",
        "payments.secret_key",
        "MARQUEE__PAYMENTS__SECRET_KEY",
        "sms.auth_token",
        "MARQUEE__SMS__AUTH_TOKEN",
        "sms.account_sid",
        "booking.ticket_signing_secret is the development default",
    ] {
        assert!(message.contains(key), "{key} not named in: {message}");
    }
}

#[test]
fn production_starts_with_real_providers_and_keys_of_its_own() {
    let env = HashMap::from([
        ("MARQUEE__ENVIRONMENT".to_owned(), "production".to_owned()),
        (
            "MARQUEE__PAYMENTS__GATEWAY_URL".to_owned(),
            "https://payments.example.com".to_owned(),
        ),
        (
            "MARQUEE__PAYMENTS__SECRET_KEY".to_owned(),
            "sk_live_a_key_of_this_deployment".to_owned(),
        ),
        (
            "MARQUEE__SMS__CARRIER_URL".to_owned(),
            "https://sms.example.com".to_owned(),
        ),
        (
            "MARQUEE__SMS__AUTH_TOKEN".to_owned(),
            "a carrier token of this deployment".to_owned(),
        ),
        (
            "MARQUEE__SMS__ACCOUNT_SID".to_owned(),
            "AC11111111111111111111111111111111".to_owned(),
        ),
    ]);

    let settings = Settings::load(&root(), None, env).expect("loads");

    assert_eq!(
        settings.environment,
        marquee::settings::Environment::Production
    );
}

#[test]
fn a_missing_ticket_signing_secret_is_refused_in_every_environment() {
    let env = HashMap::from([(
        "MARQUEE__BOOKING__TICKET_SIGNING_SECRET".to_owned(),
        String::new(),
    )]);

    let message = Settings::load(&root(), None, env)
        .expect_err("refused")
        .to_string();

    assert!(
        message.contains("booking.ticket_signing_secret must be at least 32 characters"),
        "{message}"
    );
}
