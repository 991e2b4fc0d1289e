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
