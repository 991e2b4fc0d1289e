use marquee_sharding::NodeId;
use marquee_storage::movies::NewMovie;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    assert_problem, connect, holders, home_of, spawn_app, spawn_app_behind_proxy, TestApp,
};

async fn create(app: &TestApp, title: &str) -> Uuid {
    let movie: serde_json::Value = app
        .create_movie(json!({"title": title, "genres": ["drama"]}))
        .await
        .json()
        .await
        .expect("json");
    movie["id"].as_str().expect("id").parse().expect("uuid")
}

fn other_node(app: &TestApp, id: Uuid) -> String {
    let home = app.state.storage.movie_node(id).expect("routable");
    ["shard-0", "shard-1", "shard-2"]
        .into_iter()
        .find(|node| *node != home.as_str())
        .expect("three nodes")
        .to_owned()
}

async fn place(app: &TestApp, id: Uuid, node: &str) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/admin/movies/{id}/placement")))
        .bearer_auth(app.admin_token())
        .json(&json!({"node": node}))
        .send()
        .await
        .expect("answer")
}

async fn catalog_query(app: &TestApp, sql: &str, id: Uuid) -> i64 {
    let client = connect(&app.schema.settings.database.catalog)
        .await
        .expect("connect");
    client
        .query_one(&sql.replace("{schema}", &app.schema.name), &[&id])
        .await
        .expect("query")
        .get(0)
}

#[tokio::test]
async fn a_movie_moves_to_a_dedicated_node_and_back_while_it_keeps_serving() {
    let app = spawn_app().await;
    let id = create(&app, "Release Night").await;
    let home = home_of(&app, id);
    let dedicated = other_node(&app, id);
    let before: serde_json::Value = app
        .get(&format!("/v1/movies/{id}"))
        .await
        .json()
        .await
        .expect("json");

    let moved: serde_json::Value = place(&app, id, &dedicated)
        .await
        .json()
        .await
        .expect("json");

    assert_eq!(moved["from"], home.as_str());
    assert_eq!(moved["to"], dedicated.as_str());
    assert_eq!(holders(&app, id).await, vec![dedicated.clone()]);
    let after: serde_json::Value = app
        .get(&format!("/v1/movies/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        after, before,
        "the movie is served unchanged from its new node"
    );
    let overrides = catalog_query(
        &app,
        "select count(*) from {schema}.movie_overrides where movie_id = $1",
        id,
    )
    .await;
    assert_eq!(overrides, 1);

    let back: serde_json::Value = place(&app, id, &home).await.json().await.expect("json");

    assert_eq!(back["to"], home.as_str());
    assert!(back["map_version"].as_i64() > moved["map_version"].as_i64());
    assert_eq!(holders(&app, id).await, vec![home]);
    let overrides = catalog_query(
        &app,
        "select count(*) from {schema}.movie_overrides where movie_id = $1",
        id,
    )
    .await;
    assert_eq!(
        overrides, 0,
        "a movie back on its hashed node needs no override"
    );
    assert_eq!(app.get(&format!("/v1/movies/{id}")).await.status(), 200);
}

#[tokio::test]
async fn a_write_routed_by_a_stale_map_is_refused_and_retried_on_the_new_node() {
    let app = spawn_app().await;
    let id = create(&app, "Stale Routes").await;
    let stale = app.schema.storage();
    stale.load_placement().await.expect("placement");
    let target = other_node(&app, id);

    app.state
        .storage
        .move_movie(id, NodeId::new(&target))
        .await
        .expect("moves");
    let mut edit = NewMovie::from(&stale.movie(id).await.expect("read").expect("found"));
    edit.title = "Stale Routes (Extended)".to_owned();
    let written = stale
        .upsert_movie(&edit)
        .await
        .expect("the stale instance retries");

    assert_eq!(written.title, "Stale Routes (Extended)");
    assert_eq!(stale.movie_node(id).expect("routable").as_str(), target);
    assert_eq!(holders(&app, id).await, vec![target]);
    let seen = app
        .state
        .storage
        .movie(id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(seen.title, "Stale Routes (Extended)");
}

#[tokio::test]
async fn writes_during_a_move_are_never_lost_or_applied_on_the_old_node() {
    let app = spawn_app().await;
    let id = create(&app, "Busy Premiere").await;
    let writer = app.schema.storage();
    writer.load_placement().await.expect("placement");
    let original = NewMovie::from(&writer.movie(id).await.expect("read").expect("found"));
    let target = other_node(&app, id);

    let writes = tokio::spawn(async move {
        let mut last_written = None;
        for round in 0..40 {
            let mut edit = original.clone();
            edit.title = format!("Busy Premiere, edit {round}");
            if let Ok(stored) = writer.upsert_movie(&edit).await {
                last_written = Some(stored.title);
            }
        }
        last_written
    });
    app.state
        .storage
        .move_movie(id, NodeId::new(&target))
        .await
        .expect("moves");
    let last_written = writes.await.expect("writer").expect("some writes succeed");

    let stored = app
        .state
        .storage
        .movie(id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(
        stored.title, last_written,
        "the last acknowledged write is the one stored"
    );
    assert_eq!(holders(&app, id).await, vec![target]);
}

#[tokio::test]
async fn bad_moves_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "Nowhere To Go").await;
    let home = home_of(&app, id);

    assert_problem(place(&app, Uuid::now_v7(), "shard-0").await, 404).await;
    assert_problem(place(&app, id, "shard-9").await, 409).await;
    assert_problem(place(&app, id, &home).await, 409).await;
    assert_problem(place(&app, id, "not a node!").await, 422).await;

    let client = connect(&app.schema.settings.database.catalog)
        .await
        .expect("connect");
    client
        .execute(
            &format!(
                "insert into {}.shard_moves (id, movie_id, source, target, state) values ($1, $2, $3, 'shard-x', 'fenced')",
                app.schema.name
            ),
            &[&Uuid::now_v7(), &id, &home],
        )
        .await
        .expect("an open move");
    let problem = assert_problem(place(&app, id, &other_node(&app, id)).await, 409).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("already being moved"));
    assert_eq!(holders(&app, id).await, vec![home]);
}

#[tokio::test]
async fn an_interrupted_move_is_finished_after_the_fence_and_rolled_back_before_it() {
    let app = spawn_app().await;
    let fenced = create(&app, "Crashed After Fence").await;
    let copying = create(&app, "Crashed While Copying").await;
    let (fenced_home, fenced_target) = (
        app.state.storage.movie_node(fenced).expect("routable"),
        other_node(&app, fenced),
    );
    let copying_home = app
        .state
        .storage
        .movie_node(copying)
        .expect("routable")
        .to_string();
    let catalog = connect(&app.schema.settings.database.catalog)
        .await
        .expect("connect");
    let schema = &app.schema.name;
    let source = app
        .schema
        .settings
        .database
        .shards
        .iter()
        .find(|s| s.name == fenced_home.as_str())
        .expect("home")
        .primary
        .clone();
    connect(&source)
        .await
        .expect("connect")
        .execute(
            &format!("insert into {schema}.movie_fences (movie_id, moved_to) values ($1, $2)"),
            &[&fenced, &fenced_target],
        )
        .await
        .expect("fence");
    for (movie, from, to, state) in [
        (
            fenced,
            fenced_home.to_string(),
            fenced_target.clone(),
            "fenced",
        ),
        (
            copying,
            copying_home.clone(),
            other_node(&app, copying),
            "copying",
        ),
    ] {
        catalog
            .execute(
                &format!("insert into {schema}.shard_moves (id, movie_id, source, target, state) values ($1, $2, $3, $4, $5)"),
                &[&Uuid::now_v7(), &movie, &from, &to, &state],
            )
            .await
            .expect("an interrupted move");
    }

    let resumed = app.state.storage.resume_moves().await.expect("resumes");

    assert_eq!(resumed, 2);
    assert_eq!(holders(&app, fenced).await, vec![fenced_target]);
    assert_eq!(holders(&app, copying).await, vec![copying_home]);
    assert_eq!(app.get(&format!("/v1/movies/{fenced}")).await.status(), 200);
    assert_eq!(
        app.get(&format!("/v1/movies/{copying}")).await.status(),
        200
    );
    let open: i64 = catalog
        .query_one(
            &format!("select count(*) from {schema}.shard_moves where state in ('copying', 'fenced', 'cut_over')"),
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(open, 0);
    assert_eq!(
        app.state.storage.resume_moves().await.expect("idempotent"),
        0
    );
}

#[tokio::test]
async fn a_move_to_an_unreachable_node_is_refused_before_it_starts() {
    let (proxy, app) = spawn_app_behind_proxy(2).await;
    let mut id = create(&app, "Unreachable Target").await;
    while app.state.storage.movie_node(id).expect("routable").as_str() == "shard-2" {
        id = create(&app, "Unreachable Target").await;
    }
    let home = home_of(&app, id);

    proxy.cut();
    let problem = assert_problem(place(&app, id, "shard-2").await, 409).await;

    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("shard-2"));
    proxy.restore();
    assert_eq!(holders(&app, id).await, vec![home]);
    let open = catalog_query(
        &app,
        "select count(*) from {schema}.shard_moves where movie_id = $1",
        id,
    )
    .await;
    assert_eq!(open, 0, "no move was recorded");
}
