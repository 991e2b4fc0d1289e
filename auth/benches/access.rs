//! Cost of the two checks on the request path: access token verification on
//! every authenticated request, password verification on every sign-in.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use marquee_auth::access::{AccessSigner, Claims, Role};
use marquee_auth::password::{HashParams, PasswordHasher};
use uuid::Uuid;

const NOW: i64 = 1_750_000_000;

fn access_verify(c: &mut Criterion) {
    let signer = AccessSigner::new(vec![
        ("k2".to_owned(), vec![2; 32]),
        ("k1".to_owned(), vec![1; 32]),
    ])
    .expect("valid keys");
    let token = signer.sign(&Claims {
        user: Uuid::now_v7(),
        session: Uuid::now_v7(),
        role: Role::Customer,
        mfa: false,
        issued_at: NOW,
        expires_at: NOW + 900,
    });
    c.bench_function("access_verify", |b| {
        b.iter(|| signer.verify(black_box(&token), NOW).expect("valid token"));
    });
}

fn password_verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let hasher = PasswordHasher::new(HashParams::default(), 1).expect("valid params");
    let phc = runtime
        .block_on(hasher.hash("velvet seats at midnight"))
        .expect("hash");
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("verify_default_params", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(black_box("velvet seats at midnight"), Some(&phc)))
                .expect("verify")
        });
    });
    group.finish();
}

criterion_group!(benches, access_verify, password_verify);
criterion_main!(benches);
