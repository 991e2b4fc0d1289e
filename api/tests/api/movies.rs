use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_problem, holders, home_of, spawn_app};

#[tokio::test]
async fn an_admin_creates_a_movie_that_can_then_be_read_and_searched() {
    let app = spawn_app().await;

    let created = app
        .create_movie(json!({
            "title": "The Quiet Projectionist",
            "genres": ["drama", "mystery"],
            "director": "Ana Lindqvist",
            "runtime_minutes": 104,
            "release_date": "2026-10-02",
            "cast": ["Mira Holt", "Jonas Abara"]
        }))
        .await;

    assert_eq!(created.status(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let movie: serde_json::Value = created.json().await.expect("json");
    assert_eq!(
        location,
        format!("/v1/movies/{}", movie["id"].as_str().expect("id"))
    );

    let fetched: serde_json::Value = app.get(&location).await.json().await.expect("json");
    assert_eq!(fetched["title"], "The Quiet Projectionist");
    assert_eq!(fetched["genres"], json!(["drama", "mystery"]));
    assert_eq!(fetched["release_date"], "2026-10-02");
    assert_eq!(fetched["version"], 1);

    let found = crate::search::search_until(&app, "/v1/search?q=projectionst", |found| {
        found["hits"][0]["id"] == movie["id"]
    })
    .await;
    assert_eq!(
        found["hits"][0]["id"], movie["id"],
        "a typo still finds the new movie within two seconds"
    );
}

#[tokio::test]
async fn an_unknown_movie_is_a_404_problem() {
    let app = spawn_app().await;

    let id = Uuid::now_v7();
    let body = assert_problem(app.get(&format!("/v1/movies/{id}")).await, 404).await;

    assert!(body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains(&id.to_string()));
}

#[tokio::test]
async fn a_movie_is_stored_only_on_the_shard_its_id_hashes_to() {
    let app = spawn_app().await;

    let movie: serde_json::Value = app
        .create_movie(json!({"title": "Placement", "genres": ["documentary"]}))
        .await
        .json()
        .await
        .expect("json");
    let id: Uuid = movie["id"].as_str().expect("id").parse().expect("uuid");

    assert_eq!(holders(&app, id).await, vec![home_of(&app, id)]);
}
