use serde_json::json;

use crate::helpers::{connect, spawn_app, TestSchema};

#[tokio::test]
async fn two_tests_running_at_once_never_see_each_others_rows() {
    let (first, second) = tokio::join!(spawn_app(), spawn_app());
    assert_ne!(first.schema.name, second.schema.name);

    let created: serde_json::Value = first
        .create_movie(json!({"title": "Only In The First", "genres": ["drama"]}))
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/v1/movies/{}", created["id"].as_str().expect("id"));

    assert_eq!(first.get(&path).await.status(), 200);
    assert_eq!(second.get(&path).await.status(), 404);
    let hits: serde_json::Value = second
        .get("/v1/search?q=first")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(hits["hits"], json!([]));
}

#[tokio::test]
async fn a_test_schema_is_dropped_from_every_node_when_the_test_ends() {
    let schema = TestSchema::new();
    schema.storage().migrate().await.expect("migrate");
    let (name, primaries) = (schema.name.clone(), schema.primaries());

    drop(schema);

    for (server, endpoint) in primaries {
        let client = connect(&endpoint).await.expect("connect");
        let left: i64 = client
            .query_one(
                "select count(*) from pg_namespace where nspname = $1",
                &[&name],
            )
            .await
            .expect("query")
            .get(0);
        assert_eq!(left, 0, "{name} is still on {server}");
    }
}
