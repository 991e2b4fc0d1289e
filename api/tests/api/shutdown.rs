use std::time::Duration;

use marquee_chaos::Proxy;

use crate::helpers::{primary_address, spawn_app_with, TestSchema};

#[tokio::test]
async fn a_request_in_flight_completes_during_graceful_shutdown() {
    let upstream = primary_address(&TestSchema::new().settings.database.catalog).await;
    let proxy = Proxy::start(upstream).await.expect("proxy");
    let port = proxy.addr().port();
    let mut app = spawn_app_with(|settings| {
        settings.database.catalog.port = port;
        settings.database.catalog.failover.clear();
    })
    .await;
    // Readiness waits on the catalog, which now answers slowly.
    proxy.set_latency(Duration::from_millis(400));
    let in_flight = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/readyz"));
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let server = app.begin_shutdown().expect("server running");

    let response = in_flight
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert!([200, 503].contains(&response.status().as_u16()));
    server
        .await
        .expect("server task")
        .expect("server stops cleanly");
    let refused = app.client.get(app.url("/healthz")).send().await;
    assert!(refused.is_err(), "a stopped server accepts no new requests");
}
