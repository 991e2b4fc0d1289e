//! What the carrier refuses whatever the number: malformed numbers and
//! bodies, wrong credentials, another account.

use std::time::Duration;

use marquee_sms::{SmsError, SmsProvider};

use crate::helpers::{key, message, provider, spawn_carrier, ACCOUNT_SID, AUTH_TOKEN, FROM, VALID};

#[tokio::test]
async fn a_number_not_in_e164_form_is_refused_permanently_as_invalid() {
    let app = spawn_carrier().await;

    for to in [
        "4155550123",
        "+1 415 555 0123",
        "+1-415-555-0123",
        "tel:+14155550123",
    ] {
        let err = app.provider.send(&message(to, "hello")).await.unwrap_err();

        assert!(
            matches!(err, SmsError::InvalidNumber { code: 21211, .. }),
            "{to}: {err:?}"
        );
        assert!(err.is_permanent(), "{to}");
    }
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn an_empty_body_is_refused_permanently() {
    let app = spawn_carrier().await;

    let err = app.provider.send(&message(VALID, "")).await.unwrap_err();

    assert!(
        matches!(
            err,
            SmsError::Rejected {
                status: 400,
                code: Some(21602),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn a_body_over_1600_characters_is_refused_permanently_as_too_long() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message(VALID, &"a".repeat(1601)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, SmsError::BodyTooLong { code: 21617, .. }),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn a_wrong_auth_token_is_refused_permanently() {
    let app = spawn_carrier().await;
    let intruder = provider(
        &app.carrier.url(),
        ACCOUNT_SID,
        "0000000000000000000000000000000a",
        Duration::from_secs(2),
    );

    let err = intruder.send(&message(VALID, "hello")).await.unwrap_err();

    assert!(
        matches!(
            err,
            SmsError::AuthenticationRefused {
                code: Some(20003),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn another_accounts_credentials_are_refused() {
    let app = spawn_carrier().await;
    let other = provider(
        &app.carrier.url(),
        "AC00000000000000000000000000000000",
        AUTH_TOKEN,
        Duration::from_secs(2),
    );

    let err = other.send(&message(VALID, "hello")).await.unwrap_err();

    assert!(
        matches!(err, SmsError::AuthenticationRefused { .. }),
        "{err:?}"
    );
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn a_request_without_credentials_gets_a_401_asking_for_basic_auth() {
    let app = spawn_carrier().await;

    let response = app.http.get(app.messages_url()).send().await.unwrap();

    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn another_accounts_messages_are_not_found() {
    let app = spawn_carrier().await;

    let response = app
        .http
        .post(format!(
            "{}/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json",
            app.carrier.url()
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .form(&[("To", VALID), ("From", FROM), ("Body", "hello")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 20404);
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn missing_or_malformed_fields_are_refused_with_their_own_codes() {
    let app = spawn_carrier().await;

    for (form, code) in [
        (vec![("From", FROM), ("Body", "hello")], 21604),
        (vec![("To", VALID), ("Body", "hello")], 21603),
        (
            vec![("To", VALID), ("From", "Marquee"), ("Body", "hello")],
            21212,
        ),
        (vec![("To", VALID), ("From", FROM)], 21602),
    ] {
        let response = app.post(Some(&key()), &form).await;

        assert_eq!(response.status(), 400, "{form:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{form:?}");
    }
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn a_json_body_is_refused_as_not_a_form() {
    let app = spawn_carrier().await;

    let response = app
        .http
        .post(app.messages_url())
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .json(&serde_json::json!({ "To": VALID, "From": FROM, "Body": "hello" }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 70002);
    assert!(app.carrier.messages().is_empty());
}
