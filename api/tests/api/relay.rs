//! The outbox relay against the real broker: committed changes reach their
//! topic keyed by aggregate, in order; one relay holds each shard; events
//! wait in the outbox while the broker cannot be reached; holds, payments,
//! refunds and account changes write their events with the change.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, TestSchema};

/// Every message on `topic` whose key is `key`, read from the start by a
/// consumer group of its own, once at least `count` arrived.
fn messages_for(bootstrap: &str, topic: &str, key: &str, count: usize) -> Vec<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", Uuid::new_v4().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while found.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            if message.key() == Some(key.as_bytes()) {
                let body: Value =
                    serde_json::from_slice(message.payload().expect("payload")).expect("json");
                found.push(body);
            }
        }
    }
    found
}

#[tokio::test]
async fn committed_changes_reach_the_broker_keyed_by_their_aggregate_in_order() {
    let app = spawn_app().await;
    let created = app
        .create_movie(json!({"title": "Relay", "genres": ["drama"]}))
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let movie: Value = created.json().await.expect("json");
    let id = movie["id"].as_str().expect("id").to_owned();
    for runtime in [101, 102] {
        let updated = app
            .client
            .put(app.url(&format!("/v1/admin/movies/{id}")))
            .bearer_auth(app.admin_token())
            .json(&json!({"title": "Relay", "genres": ["drama"], "runtime_minutes": runtime}))
            .send()
            .await
            .expect("answer");
        assert_eq!(updated.status().as_u16(), 200);
    }
    let broker = app.schema.settings.broker.bootstrap_servers.clone();
    let messages =
        tokio::task::spawn_blocking(move || messages_for(&broker, "marquee.catalog", &id, 3))
            .await
            .expect("consumer task");
    assert!(messages.len() >= 3, "{messages:?}");
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(
        seqs, sorted,
        "one aggregate's events arrive in commit order"
    );
    assert!(messages.iter().all(|m| m["aggregate"] == "movie"));
}

#[tokio::test]
async fn one_relay_holds_each_shard_until_its_lease_lapses() {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrations apply");
    let shard = &storage.cluster().shards()[0];
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = Duration::from_millis(300);
    assert!(storage
        .hold_relay_lease(shard, first, lease)
        .await
        .expect("lease"));
    assert!(!storage
        .hold_relay_lease(shard, second, lease)
        .await
        .expect("lease"));
    assert!(storage
        .hold_relay_lease(shard, first, lease)
        .await
        .expect("renewed"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(storage
        .hold_relay_lease(shard, second, lease)
        .await
        .expect("taken over"));
    assert!(!storage
        .hold_relay_lease(shard, first, lease)
        .await
        .expect("lease"));
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_the_broker_is_unreachable_and_go_out_after() {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrations apply");
    storage.load_placement().await.expect("placement");
    let movie = crate::shards::new_movie("Outage");
    storage.create_movie(&movie).await.expect("movie");
    let node = storage.movie_node(movie.id).expect("routed");
    let shard = storage.cluster().shard(&node).expect("shard");
    let settings = marquee_relay::Settings {
        delivery_timeout_ms: 1_500,
        lease_seconds: 1,
        ..marquee_relay::Settings::default()
    };

    let down = marquee_relay::Relay::new(
        storage.clone(),
        "127.0.0.1:1",
        settings.clone(),
        &prometheus::Registry::new(),
    )
    .expect("relay");
    assert!(down.run_once().await.is_err(), "nothing acknowledged");
    let waiting = storage.unpublished(shard, 100).await.expect("outbox");
    assert!(waiting.iter().any(|event| event.aggregate_id == movie.id));

    // The broker is back (another relay, once the first one's lease
    // lapsed): the waiting events go out and are marked published.
    tokio::time::sleep(Duration::from_secs(settings.lease_seconds + 1)).await;
    let up = Arc::new(
        marquee_relay::Relay::new(
            storage.clone(),
            &schema.settings.broker.bootstrap_servers,
            settings,
            &prometheus::Registry::new(),
        )
        .expect("relay"),
    );
    let sent = up.run_once().await.expect("published");
    assert!(sent >= 1);
    let left = storage.unpublished(shard, 100).await.expect("outbox");
    assert!(left.iter().all(|event| event.aggregate_id != movie.id));
    let key = movie.id.to_string();
    let bootstrap = schema.settings.broker.bootstrap_servers.clone();
    let messages =
        tokio::task::spawn_blocking(move || messages_for(&bootstrap, "marquee.catalog", &key, 1))
            .await
            .expect("consumer task");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["node"], node.as_str());
}

/// Every `aggregate/event` in the deployment's outboxes.
async fn outbox_events(app: &crate::helpers::TestApp) -> std::collections::BTreeSet<String> {
    let mut events = std::collections::BTreeSet::new();
    for shard in &app.schema.settings.database.shards {
        let client = crate::helpers::connect(&shard.primary)
            .await
            .expect("connect");
        for row in client
            .query(
                &format!("select aggregate, event from {}.outbox", app.schema.name),
                &[],
            )
            .await
            .expect("outbox")
        {
            events.insert(format!(
                "{}/{}",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            ));
        }
    }
    events
}

#[tokio::test]
async fn holds_payments_refunds_and_account_changes_write_their_events_with_the_change() {
    let app =
        crate::accounts::accounts_app_with(|settings| settings.booking.hold_ttl_seconds = 1).await;
    let (_, tokens) = crate::accounts::signed_up(&app, "events").await;
    let (showtime, _) = crate::booking::show(&app, 3, 8).await;

    let (lapsing, _) = crate::booking::held(&app, showtime, "late@example.com", &["A-3"]).await;
    let (hold, token) =
        crate::booking::held(&app, showtime, "ada@example.com", &["B-2", "B-3"]).await;
    let order: Value = crate::booking::pay(&app, &hold, &token, "events", "tok_visa")
        .await
        .json()
        .await
        .expect("json");
    let cancelled = app
        .client
        .post(app.url(&format!(
            "/v1/orders/{}/cancellation",
            order["id"].as_str().expect("id")
        )))
        .header("Booking-Token", &token)
        .json(&json!({"seats": ["B-2"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(cancelled.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    app.state.storage.expire_holds().await.expect("sweep");
    let user = crate::accounts::user_id(&tokens);
    app.state
        .storage
        .set_name(user, "Grace Hopper")
        .await
        .expect("renamed");

    let events = outbox_events(&app).await;
    for expected in [
        "account/account.registered",
        "account/account.email_verified",
        "account/account.profile_changed",
        "hold/hold.expired",
        "order/order.confirmed",
        "order/order.cancelled",
        "payment/payment.captured",
        "payment/payment.refunded",
        "showtime/seats.held",
        "showtime/seats.sold",
        "showtime/seats.released",
    ] {
        assert!(events.contains(expected), "no {expected} among {events:?}");
    }
    let lapsed: Uuid = lapsing["id"]
        .as_str()
        .expect("hold id")
        .parse()
        .expect("uuid");
    let mut told = 0;
    for shard in &app.schema.settings.database.shards {
        let client = crate::helpers::connect(&shard.primary)
            .await
            .expect("connect");
        let row = client
            .query_one(
                &format!(
                    "select count(*) from {}.outbox where event = 'hold.expired' and aggregate_id = $1",
                    app.schema.name
                ),
                &[&lapsed],
            )
            .await
            .expect("count");
        told += row.get::<_, i64>(0);
    }
    assert_eq!(told, 1, "the lapsed hold is told of once");
}
