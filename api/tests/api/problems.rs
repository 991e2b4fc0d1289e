use serde_json::json;

use crate::helpers::{assert_problem, movie_count, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_path_is_a_404_problem_naming_the_path() {
    let app = spawn_app().await;

    let body = assert_problem(app.get("/v1/nowhere").await, 404).await;

    assert_eq!(body["instance"], "/v1/nowhere");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_an_allow_header() {
    let app = spawn_app().await;

    let response = app
        .client
        .delete(app.url("/v1/search?q=x"))
        .send()
        .await
        .expect("answer");

    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_problem(response, 405).await;
}

#[tokio::test]
async fn an_invalid_path_parameter_is_a_400_problem() {
    let app = spawn_app().await;

    let body = assert_problem(app.get("/v1/movies/not-a-uuid").await, 400).await;

    assert!(body["detail"].as_str().unwrap_or_default().contains("id"));
}

#[tokio::test]
async fn an_out_of_range_query_parameter_is_a_400_problem() {
    let app = spawn_app().await;

    assert_problem(app.get("/v1/search?q=heat&limit=500").await, 400).await;
}

#[tokio::test]
async fn a_nul_in_any_query_parameter_is_a_422_naming_it_on_every_route() {
    let app = spawn_app().await;

    for (path, name) in [
        ("/v1/theaters?city=Bos%00ton", "city"),
        ("/v1/movies?title=%00", "title"),
        ("/v1/search?q=ok&city=a%00b", "city"),
    ] {
        let body = assert_problem(app.get(path).await, 422).await;
        assert_eq!(body["errors"][0]["field"], name, "{path}");
    }
    assert_eq!(
        app.get("/v1/theaters?city=Boston").await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_and_writes_nothing() {
    let app = spawn_app().await;

    let response = app
        .post_admin("/v1/admin/movies", "application/json", r#"{"title": "#)
        .await;

    let body = assert_problem(response, 400).await;
    assert!(body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("not valid JSON"));
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;

    for content_type in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let response = app
            .post_admin("/v1/admin/movies", content_type, "<movie/>")
            .await;
        assert_problem(response, 415).await;
    }
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn fields_of_the_wrong_type_unknown_fields_and_nulls_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"title": "Heat", "genres": ["drama"], "runtime_minutes": "long"}),
            "runtime_minutes",
        ),
        (
            json!({"title": "Heat", "genres": ["drama"], "ratting": 5}),
            "ratting",
        ),
        (
            json!({"title": "Heat", "genres": ["drama", "noir"]}),
            "genres[1]",
        ),
        (
            json!({"title": "Heat", "genres": ["drama"], "director": null}),
            "director",
        ),
        (json!({"genres": ["drama"]}), "title"),
        (json!(["Heat", ["drama"]]), "body"),
    ];

    for (body, field) in cases {
        let problem = assert_problem(app.create_movie(body.clone()).await, 422).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(fields, vec![field], "for {body}");
    }
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn values_that_fail_validation_are_422_listing_every_field() {
    let app = spawn_app().await;

    let response = app
        .create_movie(json!({
            "title": "   ",
            "genres": ["drama", "drama"],
            "runtime_minutes": 0,
            "poster_url": "http://insecure.example/poster.jpg"
        }))
        .await;

    let problem = assert_problem(response, 422).await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    fields.sort_unstable();
    assert_eq!(
        fields,
        vec!["genres[1]", "poster_url", "runtime_minutes", "title"]
    );
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem_with_or_without_a_declared_length() {
    let app = spawn_app().await;
    let huge = format!(
        r#"{{"title": "{}", "genres": ["drama"]}}"#,
        "x".repeat(200_000)
    );

    let declared = app
        .post_admin("/v1/admin/movies", "application/json", huge.clone())
        .await;
    assert_problem(declared, 413).await;

    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(huge)];
    let streamed = app
        .post_admin(
            "/v1/admin/movies",
            "application/json",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    assert_problem(streamed, 413).await;
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn a_missing_or_wrong_admin_token_is_a_401_problem() {
    let app = spawn_app().await;
    let body = json!({"title": "Heat", "genres": ["crime"]}).to_string();

    let missing = app
        .client
        .post(app.url("/v1/admin/movies"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_problem(missing, 401).await;

    let wrong = app
        .client
        .post(app.url("/v1/admin/movies"))
        .bearer_auth("x".repeat(48))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_problem(wrong, 401).await;
    assert_eq!(movie_count(&app).await, 0);
}

#[tokio::test]
async fn a_client_over_its_rate_gets_a_429_problem_with_retry_after() {
    let app = spawn_app_with(|settings| {
        settings.http.rate_limit.per_second = 1;
        settings.http.rate_limit.burst = 3;
    })
    .await;

    // The bucket refills at one token a second, so on a slow machine a
    // request or two more may pass; the burst must still run out quickly.
    let mut served = 0;
    let limited = loop {
        let response = app.get("/v1/search?q=heat").await;
        if response.status() != 200 {
            break response;
        }
        served += 1;
        assert!(served <= 6, "the burst of 3 never ran out");
    };
    assert!(served >= 3, "the whole burst is served first, got {served}");

    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
    assert_problem(limited, 429).await;
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "probes are never rate limited"
    );
}

#[tokio::test]
async fn a_request_id_sent_by_the_caller_is_echoed_in_header_and_problem() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/v1/nowhere"))
        .header("x-request-id", "support-ticket-4711")
        .send()
        .await
        .expect("answer");

    assert_eq!(response.headers()["x-request-id"], "support-ticket-4711");
    let body = assert_problem(response, 404).await;
    assert_eq!(body["request_id"], "support-ticket-4711");
}
