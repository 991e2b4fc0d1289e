use crate::helpers::spawn_app;

#[tokio::test]
async fn the_api_negotiates_http2_over_tls() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn the_api_serves_http1_clients_too() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .build()
        .expect("client");

    let response = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("answer");

    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = spawn_app().await;

    for path in ["/healthz", "/v1/nowhere"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers["strict-transport-security"],
            "max-age=63072000; includeSubDomains"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers.contains_key("x-request-id"));
    }
}
