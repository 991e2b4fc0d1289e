//! The gateway's cost on a warm authenticated request: the same trivial
//! endpoint called directly and through `edge::wrap`, which verifies the
//! access token, takes tokens from the per-address and per-user buckets
//! (leased from Redis, so warm calls stay in memory), buffers the body,
//! adds the security headers and records metrics. The difference between
//! the two is the gateway's overhead.
//!
//! Needs the local cluster's Redis (`make cluster`):
//! `cargo bench -p marquee --bench gateway`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use marquee::auth::{AuthState, Gatekeeper};
use marquee::edge::{self, Edge, Limits, RouteTable};
use marquee::metrics::Metrics;
use marquee::routes;
use marquee::settings::Settings;
use marquee_auth::access::{Claims, Role};
use marquee_auth::password::PasswordHasher;
use marquee_ratelimit::{Limit, LimiterSettings, Lockout, LockoutSettings, RateLimiter};
use marquee_sharding::Cluster;
use marquee_storage::Storage;
use poem::http::{header, Method};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Body, Endpoint, Request, RequestParts};
use secrecy::ExposeSecret;
use uuid::Uuid;

fn request(token: &str) -> Request {
    let (parts, ()) = poem::http::Request::builder()
        .method(Method::GET)
        .uri("/v1/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .expect("request")
        .into_parts();
    let client: SocketAddr = "203.0.113.7:40000".parse().expect("address");
    let parts: RequestParts = (
        parts,
        LocalAddr(Addr::SocketAddr("127.0.0.1:8443".parse().expect("address"))),
        RemoteAddr(Addr::SocketAddr(client)),
        poem::http::uri::Scheme::HTTPS,
    )
        .into();
    Request::from_parts(parts, Body::empty())
}

fn answer(_: Request) -> &'static str {
    "{}"
}

fn gateway(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let env: HashMap<String, String> = [(
        "MARQUEE__REDIS__KEY_PREFIX".to_owned(),
        format!("bench-{}:", Uuid::new_v4().simple()),
    )]
    .into_iter()
    .collect();
    let settings = Settings::load(&root, None, env).expect("settings; is the cluster up?");
    let redis = runtime.block_on(async {
        let client = redis::Client::open(settings.redis.url.expose_secret()).expect("redis url");
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("redis")
    });
    let auth = Arc::new(AuthState {
        gatekeeper: Gatekeeper::new(&settings.auth, settings.admin.token.clone()).expect("keys"),
        hasher: PasswordHasher::new(settings.auth.hashing.clone(), 1).expect("hasher"),
        settings: settings.auth.clone(),
        mailer: marquee_notify::Mailer::new(&settings.mail).expect("mailer"),
        lockout: Lockout::new(None, String::new(), LockoutSettings::default()),
        attempts: RateLimiter::new(None, String::new(), LimiterSettings::default()),
    });
    let limit = Limit {
        per_second: 1e9,
        burst: 1_000_000,
    };
    let spec: serde_json::Value =
        serde_json::from_str(&routes::spec(&routes::service("/"))).expect("spec");
    let storage = Storage::new(
        Arc::new(Cluster::new(&settings.database).expect("cluster")),
        settings.database.schema.clone(),
    );
    let edge_with = |lease: u32| {
        Arc::new(Edge {
            routes: RouteTable::from_spec(&spec, &[]),
            limiter: RateLimiter::new(
                Some(redis.clone()),
                format!("{}rate{lease}", settings.redis.key_prefix),
                LimiterSettings {
                    lease,
                    ..LimiterSettings::default()
                },
            ),
            limits: Limits {
                per_address: limit,
                per_user: limit,
                credentials: limit,
            },
            auth: Arc::clone(&auth),
            storage: storage.clone(),
            metrics: Metrics::new(),
            hsts: true,
            max_body_bytes: 65_536,
        })
    };
    let now = chrono::Utc::now().timestamp();
    let token = auth.gatekeeper.signer.sign(&Claims {
        user: Uuid::now_v7(),
        session: Uuid::now_v7(),
        role: Role::Customer,
        mfa: false,
        issued_at: now,
        expires_at: now + 3600,
    });
    let bare = Arc::new(poem::endpoint::make_sync(answer));
    // The default lease (8 tokens) goes back to Redis every eighth request
    // of a key; the large one shows the path with a lease in hand.
    let default_lease = edge::wrap(poem::endpoint::make_sync(answer), edge_with(8));
    let warm = edge::wrap(poem::endpoint::make_sync(answer), edge_with(100_000));

    let mut group = c.benchmark_group("gateway");
    group.bench_function("bare endpoint", |b| {
        b.iter(|| {
            runtime
                .block_on(bare.call(request(&token)))
                .expect("answer")
        });
    });
    for (name, endpoint) in [
        ("through the gateway, lease in hand", &warm),
        (
            "through the gateway, one key at full speed, 8-token leases",
            &default_lease,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let response = runtime
                    .block_on(endpoint.call(request(&token)))
                    .expect("answer");
                assert!(response.status().is_success());
            });
        });
    }
    group.bench_function("access token verification alone", |b| {
        b.iter(|| {
            auth.gatekeeper
                .authenticate(Some(&format!("Bearer {token}")), now)
        });
    });
    group.finish();
}

criterion_group!(benches, gateway);
criterion_main!(benches);
