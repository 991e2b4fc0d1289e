use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, TestApp};

async fn seed_movies(app: &TestApp, count: usize) {
    for index in 0..count {
        let response = app
            .create_movie(
                json!({"title": format!("Placement Study {index}"), "genres": ["documentary"]}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
}

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answer")
}

async fn plan(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.post_admin(
        "/v1/admin/shards/plan",
        "application/json",
        body.to_string(),
    )
    .await
}

#[tokio::test]
async fn the_shard_map_lists_every_node_with_its_slots_movies_theaters_and_accounts() {
    let app = spawn_app().await;
    seed_movies(&app, 12).await;
    for index in 0..3 {
        app.state
            .storage
            .put_theater(uuid::Uuid::now_v7(), &theater_info(index))
            .await
            .expect("theater");
    }
    let id = uuid::Uuid::now_v7();
    app.state
        .storage
        .register(&marquee_storage::accounts::NewAccount {
            id,
            email: &format!("{}@example.com", id.simple()),
            name: "Counted",
            password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        })
        .await
        .expect("account");

    let map: serde_json::Value = admin_get(&app, "/v1/admin/shards")
        .await
        .json()
        .await
        .expect("json");

    assert!(map["version"].as_i64().expect("version") >= 1);
    let nodes = map["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, vec!["shard-0", "shard-1", "shard-2"]);
    let slots: u64 = nodes.iter().filter_map(|n| n["slots"].as_u64()).sum();
    assert_eq!(slots, map["slots"].as_u64().expect("slots"));
    let movies: i64 = nodes.iter().filter_map(|n| n["movies"].as_i64()).sum();
    assert_eq!(movies, 12);
    let sum = |field: &str| nodes.iter().filter_map(|n| n[field].as_i64()).sum::<i64>();
    assert_eq!(sum("theaters"), 3);
    assert_eq!(sum("accounts"), 1);
    assert!(nodes
        .iter()
        .all(|n| n["state"] == "active" && n["weight"] == 1));
}

#[tokio::test]
async fn the_shard_map_needs_the_admin_token() {
    let app = spawn_app().await;

    assert_problem(app.get("/v1/admin/shards").await, 401).await;
}

#[tokio::test]
async fn a_drain_plan_moves_only_the_drained_nodes_movies_and_changes_nothing() {
    let app = spawn_app().await;
    seed_movies(&app, 30).await;
    let before: serde_json::Value = admin_get(&app, "/v1/admin/shards")
        .await
        .json()
        .await
        .expect("json");
    let on_shard_1 = before["nodes"][1]["movies"].as_u64().expect("count");

    let response = plan(&app, json!({"drain": ["shard-1"]})).await;

    assert_eq!(response.status(), 200);
    let plan: serde_json::Value = response.json().await.expect("json");
    assert_eq!(plan["movies_total"], 30);
    assert_eq!(plan["movies_moving"], on_shard_1);
    for transfer in plan["transfers"].as_array().expect("transfers") {
        assert_eq!(transfer["from"], "shard-1", "{transfer}");
    }
    assert_eq!(plan["nodes_after"][1]["state"], "draining");
    assert_eq!(plan["nodes_after"][1]["slots"], 0);
    let after: serde_json::Value = admin_get(&app, "/v1/admin/shards")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after, before, "planning changes nothing");
}

#[tokio::test]
async fn unknown_nodes_and_contradictions_are_409_naming_the_node() {
    let app = spawn_app().await;
    let cases = [
        (json!({"drain": ["shard-9"]}), 409, "shard-9"),
        (json!({"add": [{"name": "shard-7"}]}), 409, "shard-7"),
        (json!({"add": [{"name": "shard-2"}]}), 409, "shard-2"),
        (
            json!({"drain": ["shard-0", "shard-1", "shard-2"]}),
            409,
            "last active node",
        ),
    ];

    for (body, status, named) in cases {
        let problem = assert_problem(plan(&app, body.clone()).await, status).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(named), "for {body}: {detail}");
    }
}

#[tokio::test]
async fn a_node_listed_twice_is_422_and_an_empty_plan_moves_nothing() {
    let app = spawn_app().await;

    let problem = assert_problem(
        plan(&app, json!({"drain": ["shard-0", "shard-0"]})).await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "drain[1]");

    let empty: serde_json::Value = plan(&app, json!({})).await.json().await.expect("json");
    assert_eq!(empty["movies_moving"], 0);
    assert_eq!(empty["transfers"], json!([]));
}

#[tokio::test]
async fn a_node_added_to_a_running_cluster_joins_without_taking_keys() {
    let mut schema = crate::helpers::TestSchema::new();
    let all_shards = schema.settings.database.shards.clone();
    schema.settings.database.shards.truncate(2);
    schema
        .storage()
        .migrate()
        .await
        .expect("a two-node cluster");
    schema.settings.database.shards = all_shards;
    let storage = schema.storage();

    storage
        .migrate()
        .await
        .expect("the third node is registered");

    let map = storage.shard_map().await.expect("map");
    let states: Vec<(&str, &str)> = map
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("shard-0", "active"),
            ("shard-1", "active"),
            ("shard-2", "joining")
        ]
    );
    let slots: Vec<usize> = map
        .placement()
        .slot_counts()
        .into_iter()
        .map(|(_, count)| count)
        .collect();
    assert_eq!(slots[2], 0, "a joining node owns no slots");
    assert!(slots[0] > 0 && slots[1] > 0);
}

#[tokio::test]
async fn draining_a_node_moves_its_movies_away_while_they_stay_readable() {
    let app = spawn_app().await;
    seed_movies(&app, 24).await;

    let response = app
        .post_admin(
            "/v1/admin/shards/rebalance",
            "application/json",
            json!({"drain": ["shard-1"]}).to_string(),
        )
        .await;

    assert_eq!(response.status(), 200);
    let done: serde_json::Value = response.json().await.expect("json");
    let map: serde_json::Value = admin_get(&app, "/v1/admin/shards")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(map["version"], done["map_version"]);
    assert_eq!(map["nodes"][1]["state"], "draining");
    assert_eq!(map["nodes"][1]["movies"], 0, "the drained node is empty");
    assert_eq!(map["nodes"][1]["slots"], 0);
    let total: i64 = map["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["movies"].as_i64())
        .sum();
    assert_eq!(total, 24, "nothing lost, nothing duplicated");
    for (_, ids) in app.state.storage.movie_ids().await.expect("ids") {
        for id in ids {
            assert_eq!(app.get(&format!("/v1/movies/{id}")).await.status(), 200);
        }
    }
    let catalog = crate::helpers::connect(&app.schema.settings.database.catalog)
        .await
        .expect("connect");
    let overrides: i64 = catalog
        .query_one(
            &format!("select count(*) from {}.movie_overrides", app.schema.name),
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(
        overrides, 0,
        "every moved movie now lives where placement says"
    );
}

#[tokio::test]
async fn a_joining_node_takes_its_share_when_a_rebalance_adds_it() {
    let mut schema = crate::helpers::TestSchema::new();
    let all_shards = schema.settings.database.shards.clone();
    schema.settings.database.shards.truncate(2);
    let small = schema.storage();
    small.migrate().await.expect("a two-node cluster");
    small.load_placement().await.expect("placement");
    let mut ids = Vec::new();
    for index in 0..30 {
        let movie = new_movie(&format!("Growth {index}"));
        ids.push(small.create_movie(&movie).await.expect("created").id);
    }
    // Theaters and accounts move too; see `key_moves` for what they bring.
    let mut theaters = Vec::new();
    for index in 0..12 {
        let id = uuid::Uuid::now_v7();
        small
            .put_theater(id, &crate::shards::theater_info(index))
            .await
            .expect("theater");
        theaters.push(id);
    }
    let mut accounts = Vec::new();
    for index in 0..12 {
        let id = uuid::Uuid::now_v7();
        let email = format!("grow{index}-{}@example.com", id.simple());
        small
            .register(&marquee_storage::accounts::NewAccount {
                id,
                email: &email,
                name: "Grower",
                password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            })
            .await
            .expect("account");
        accounts.push((id, email));
    }
    schema.settings.database.shards = all_shards;
    let full = schema.storage();
    full.migrate().await.expect("shard-2 joins");
    full.load_placement().await.expect("placement");
    let mut after = full.shard_map().await.expect("map").nodes;
    for node in &mut after {
        node.state = "active".to_owned();
    }

    let done = full.rebalance(after).await.expect("rebalanced");

    let counts = full.node_loads().await.expect("loads");
    assert_eq!(counts.iter().map(|load| load.movies).sum::<i64>(), 30);
    assert!(
        counts[2].movies > 0,
        "the new node took a share: {counts:?}"
    );
    assert_eq!(
        done.movies_moved as i64, counts[2].movies,
        "only movies bound for the new node moved"
    );
    for id in ids {
        assert!(full.movie(id).await.expect("read").is_some());
    }
    assert!(done.keys_moved > 0, "some keys moved: {done:?}");
    // A fresh instance, reading the map from the catalog, finds them too.
    let fresh = schema.storage();
    fresh.load_placement().await.expect("placement");
    for id in theaters {
        assert!(
            full.theater(id).await.expect("read").is_some(),
            "theater {id}"
        );
        assert!(
            fresh.theater(id).await.expect("read").is_some(),
            "theater {id}"
        );
    }
    for (id, email) in accounts {
        assert_eq!(
            full.account(id).await.expect("read").map(|a| a.id),
            Some(id)
        );
        assert_eq!(
            full.account_by_email(&email)
                .await
                .expect("read")
                .map(|a| a.id),
            Some(id),
            "{email}"
        );
    }
}

/// A movie with a title and nothing else, for tests below the API.
pub fn new_movie(title: &str) -> marquee_storage::movies::NewMovie {
    marquee_storage::movies::NewMovie {
        id: uuid::Uuid::now_v7(),
        title: title.to_owned(),
        genres: vec!["drama".to_owned()],
        director: None,
        synopsis: None,
        cast: Vec::new(),
        runtime_minutes: None,
        certificate: None,
        release_date: None,
        poster_url: None,
        imdb_rating: None,
        imdb_votes: None,
        demo_generated: false,
    }
}

pub fn theater_info(index: usize) -> marquee_storage::theaters::TheaterInfo {
    marquee_storage::theaters::TheaterInfo {
        name: format!("Moving {index}"),
        country: "US".to_owned(),
        region: Some("MA".to_owned()),
        city: "Boston".to_owned(),
        street: "1 Main St".to_owned(),
        postcode: "02108".to_owned(),
        latitude: 42.36,
        longitude: -71.06,
        timezone: "America/New_York".to_owned(),
        opening_hours: Vec::new(),
        demo_generated: false,
    }
}

#[tokio::test]
async fn new_movies_wait_while_a_rebalance_runs() {
    let app = spawn_app().await;
    let catalog = crate::helpers::connect(&app.schema.settings.database.catalog)
        .await
        .expect("connect");
    catalog
        .execute(
            &format!(
                "update {}.shard_map set rebalancing = true",
                app.schema.name
            ),
            &[],
        )
        .await
        .expect("a running rebalance");

    let refused = app
        .create_movie(json!({"title": "Too Early", "genres": ["drama"]}))
        .await;

    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 503).await;
    let second = app
        .post_admin(
            "/v1/admin/shards/rebalance",
            "application/json",
            json!({"drain": ["shard-0"]}).to_string(),
        )
        .await;
    assert_problem(second, 409).await;
    assert_eq!(crate::helpers::movie_count(&app).await, 0);
}
