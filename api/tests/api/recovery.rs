//! Orders a crash left pending are settled by exactly one instance: two
//! instances recovering at once confirm each paid order once and refund
//! nothing, and an instance that dies mid-recovery hands its orders to
//! another once its lease runs out.

use std::sync::Arc;
use std::time::Duration;

use marquee_booking::fairness::{Client, ClientKeys};
use marquee_booking::{Booking, Render};
use marquee_payments::{
    AuthorizeRequest, GatewayConfig, PaymentProvider, PaymentState, SandboxCardConfig,
    SandboxCardProvider, SandboxGateway,
};
use marquee_ratelimit::{Slots, SlotsSettings};
use marquee_storage::holds::{RoomEntry, SeatChoice};
use marquee_storage::orders::{BeginOrder, Begun, Order};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::booking::show;
use crate::helpers::{spawn_app, TestApp};

struct Plain;

impl Render for Plain {
    fn order(&self, order: &Order) -> Value {
        json!({ "id": order.id, "status": order.status })
    }

    fn problem(&self, status: u16, slug: &str, detail: &str) -> Value {
        json!({ "status": status, "type": slug, "detail": detail })
    }
}

fn instance(app: &TestApp, provider: Arc<SandboxCardProvider>, lease_seconds: u64) -> Booking {
    let settings = marquee_booking::Settings {
        recovery_after_seconds: 0,
        recovery_lease_seconds: lease_seconds,
        ticket_signing_secret: "a ticket key for the recovery tests, long enough".to_owned(),
        ..marquee_booking::Settings::default()
    };
    Booking::new(
        app.state.storage.clone(),
        provider,
        settings,
        &prometheus::Registry::new(),
        ClientKeys::new(b"recovery test client keys"),
        Slots::new(
            None,
            format!("{}live", app.schema.name),
            SlotsSettings::default(),
        ),
    )
    .expect("booking")
}

async fn gateway() -> (marquee_payments::RunningGateway, Arc<SandboxCardProvider>) {
    let gateway = SandboxGateway::new(GatewayConfig::new("sk_test_recovery"))
        .start("127.0.0.1:0")
        .await
        .expect("gateway");
    let provider = Arc::new(SandboxCardProvider::new(SandboxCardConfig {
        base_url: gateway.url(),
        secret_key: secrecy::SecretString::from("sk_test_recovery".to_owned()),
        timeout: Duration::from_secs(2),
    }));
    (gateway, provider)
}

/// Purchases that got as far as a captured payment before their instance
/// died: the orders, pending.
async fn paid_and_abandoned(
    app: &TestApp,
    booking: &Booking,
    provider: &SandboxCardProvider,
    showtime: Uuid,
    seats: &[&str],
) -> Vec<Order> {
    let mut orders = Vec::new();
    for seat in seats {
        let choice = SeatChoice::Seats(vec![(*seat).to_owned()]);
        let (hold, token) = booking
            .hold(
                showtime,
                &format!("{seat}@example.com"),
                &choice,
                None,
                &Client::default(),
                RoomEntry::NoPass,
            )
            .await
            .expect("hold");
        let token_hash = marquee_booking::token_hash(&token);
        let begun = app
            .state
            .storage
            .begin_order(&BeginOrder {
                key: &Uuid::new_v4().to_string(),
                request_hash: b"request",
                order_id: marquee_sharding::ids::sibling(hold.id),
                hold_id: hold.id,
                token_hash: &token_hash,
                payment_method: "card",
                provider: provider.name(),
                payment_window: Duration::from_secs(300),
                authorization_id: marquee_sharding::ids::sibling(hold.id),
            })
            .await
            .expect("begin");
        let Begun::Started(order) = begun else {
            panic!("a new key starts an order")
        };
        let authorization = provider
            .authorize(&AuthorizeRequest {
                reference: order.id.to_string(),
                token: format!("tok_visa_{}", seat.replace('-', "")),
                amount: order.amount,
                currency: order.currency.clone(),
                idempotency_key: Uuid::new_v4().to_string(),
            })
            .await
            .expect("authorized");
        provider
            .capture(&authorization.id, order.amount, &Uuid::new_v4().to_string())
            .await
            .expect("captured");
        orders.push(*order);
    }
    orders
}

async fn refunded(provider: &SandboxCardProvider, order: &Order) -> i64 {
    provider
        .find(&order.id.to_string())
        .await
        .expect("gateway answers")
        .expect("payment exists")
        .refunded
}

#[tokio::test]
async fn two_instances_recovering_the_same_orders_confirm_each_once_and_refund_nothing() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 3, 8).await;
    let (_gateway, provider) = gateway().await;
    let first = instance(&app, Arc::clone(&provider), 30);
    let second = instance(&app, Arc::clone(&provider), 30);
    let seats = ["A-1", "A-2", "A-3", "B-1", "B-2", "B-3", "C-1", "C-2"];
    let orders = paid_and_abandoned(&app, &first, &provider, showtime, &seats).await;

    let (a, b) = tokio::join!(first.recover(&Plain), second.recover(&Plain));
    let settled = a.expect("first recovers") + b.expect("second recovers");
    assert_eq!(settled, seats.len(), "each order settled by one instance");
    for order in &orders {
        let stored = app
            .state
            .storage
            .order(order.id)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(stored.status, "confirmed", "order {}", order.id);
        assert_eq!(stored.tickets.len(), 1);
        assert_eq!(
            refunded(&provider, order).await,
            0,
            "never confirmed and refunded"
        );
        let record = provider
            .find(&order.id.to_string())
            .await
            .expect("gateway answers")
            .expect("payment");
        assert_eq!(record.state, PaymentState::Captured);
    }
    let (a, b) = tokio::join!(first.recover(&Plain), second.recover(&Plain));
    assert_eq!(
        a.expect("recovers") + b.expect("recovers"),
        0,
        "nothing left"
    );
}

#[tokio::test]
async fn an_instance_that_dies_mid_recovery_hands_its_orders_over_after_its_lease() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (_gateway, provider) = gateway().await;
    let survivor = instance(&app, Arc::clone(&provider), 2);
    let orders = paid_and_abandoned(&app, &survivor, &provider, showtime, &["A-1", "A-2"]).await;

    // The dying instance claims the orders, then stops before settling.
    let claimed = app
        .state
        .storage
        .claim_stale_orders(Uuid::new_v4(), Duration::ZERO, Duration::from_secs(2))
        .await
        .expect("claims");
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        survivor.recover(&Plain).await.expect("recovers"),
        0,
        "claimed orders are left alone while the lease holds"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(survivor.recover(&Plain).await.expect("recovers"), 2);
    for order in &orders {
        let stored = app
            .state
            .storage
            .order(order.id)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(stored.status, "confirmed");
        assert_eq!(refunded(&provider, order).await, 0);
    }
}

#[tokio::test]
async fn a_capture_found_after_its_order_was_closed_is_refunded_exactly_once() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (_gateway, provider) = gateway().await;
    let first = instance(&app, Arc::clone(&provider), 30);
    let second = instance(&app, Arc::clone(&provider), 30);
    let orders = paid_and_abandoned(&app, &first, &provider, showtime, &["B-4"]).await;
    let order = &orders[0];
    // Its seat is lost meanwhile, as if the hold had lapsed and the seat
    // been sold to someone else.
    crate::booking::on_every_shard(
        &app,
        &format!(
            "delete from {{schema}}.seat_states where hold_id = '{}'",
            order.hold_id
        ),
    )
    .await;
    let (a, b) = tokio::join!(first.recover(&Plain), second.recover(&Plain));
    assert_eq!(a.expect("recovers") + b.expect("recovers"), 1);
    let stored = app
        .state
        .storage
        .order(order.id)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(stored.status, "failed");
    assert_eq!(
        refunded(&provider, order).await,
        order.amount,
        "refunded once, in full"
    );
}
