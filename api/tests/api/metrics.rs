use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let app = spawn_app().await;
    for _ in 0..2 {
        app.get(&format!("/v1/movies/{}", Uuid::now_v7())).await;
    }

    let text = app.get("/metrics").await.text().await.expect("text");

    assert!(
        text.contains(
            r#"marquee_http_requests_total{method="GET",route="/v1/movies/{id}",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"marquee_http_request_duration_seconds_count{method="GET",route="/v1/movies/{id}",status="404"} 2"#
    ));
}

#[tokio::test]
async fn pools_are_reported_per_server_with_build_info() {
    let app = spawn_app().await;

    let text = app.get("/metrics").await.text().await.expect("text");

    for server in ["catalog", "shard-0/primary", "shard-2/replica"] {
        let line = format!(r#"marquee_db_pool_connections{{server="{server}",state="max"}} 4"#);
        assert!(text.contains(&line), "missing {line}");
    }
    assert!(text.contains(r#"marquee_build_info{commit="#));
    assert!(text.contains(&format!(r#"version="{}"}} 1"#, env!("CARGO_PKG_VERSION"))));
}

#[tokio::test]
async fn each_dependency_is_reported_up_or_down_with_replica_lag() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.redis.url = "redis://127.0.0.1:1/".to_owned().into();
    })
    .await;

    let text = app.get("/metrics").await.text().await.expect("text");

    for component in ["catalog", "shard-0/primary", "shard-2/replica", "broker"] {
        let line = format!(r#"marquee_component_up{{component="{component}"}} 1"#);
        assert!(text.contains(&line), "missing {line}");
    }
    assert!(text.contains(r#"marquee_component_up{component="redis"} 0"#));
    assert!(text.contains(r#"marquee_replica_lag_bytes{component="shard-1/replica"}"#));
    assert!(!text.contains(r#"marquee_replica_lag_bytes{component="shard-1/primary"}"#));
}
