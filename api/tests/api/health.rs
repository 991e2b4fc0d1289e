use crate::helpers::{assert_problem, spawn_app, spawn_app_behind_proxy, spawn_app_with};

fn names(components: &serde_json::Value) -> Vec<String> {
    components
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn component<'a>(components: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    components
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} is missing from {components}"))
}

#[tokio::test]
async fn liveness_answers_ok() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readiness_lists_every_shard_primary_and_replica_redis_and_the_broker() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(
        response.status(),
        200,
        "the local cluster should be fully up"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    let mut expected = vec!["catalog".to_owned()];
    for shard in &app.schema.settings.database.shards {
        expected.push(format!("{}/primary", shard.name));
        expected.push(format!("{}/replica", shard.name));
    }
    expected.extend(["redis".to_owned(), "broker".to_owned()]);
    assert_eq!(names(&body["components"]), expected);
    for name in &expected {
        assert_eq!(component(&body["components"], name)["status"], "up");
    }
}

#[tokio::test]
async fn readiness_reports_replica_lag_in_bytes() {
    let app = spawn_app().await;

    let body: serde_json::Value = app.get("/readyz").await.json().await.expect("json");

    let replica = component(&body["components"], "shard-0/replica");
    assert!(replica["replica_lag_bytes"].is_u64(), "{replica}");
    assert!(component(&body["components"], "shard-0/primary")["replica_lag_bytes"].is_null());
}

#[tokio::test]
async fn readiness_names_a_shard_primary_that_is_cut_off_and_recovers_with_it() {
    let (proxy, app) = spawn_app_behind_proxy(1).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    proxy.cut();
    let body = assert_problem(app.get("/readyz").await, 503).await;

    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("shard-1/primary"), "{detail}");
    assert!(
        !detail.contains("shard-0"),
        "only the cut node is named: {detail}"
    );
    assert_eq!(
        component(&body["components"], "shard-1/primary")["status"],
        "down"
    );
    assert_eq!(
        component(&body["components"], "shard-1/replica")["status"],
        "up"
    );

    proxy.restore();
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readiness_is_degraded_not_lost_and_names_redis_when_it_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let app = spawn_app_with(|settings| {
        settings.redis.url = format!("redis://127.0.0.1:{}/", closed.port()).into();
    })
    .await;

    let answer = app.get("/readyz").await;
    assert_eq!(
        answer.status().as_u16(),
        200,
        "Redis alone does not stop sales"
    );
    let body: serde_json::Value = answer.json().await.expect("json");

    assert_eq!(body["status"], "degraded");
    assert!(body["detail"]
        .as_str()
        .unwrap_or_default()
        .starts_with("degraded: redis"));
    assert_eq!(component(&body["components"], "redis")["status"], "down");
}
