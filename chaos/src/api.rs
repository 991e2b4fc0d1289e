//! A REST API over named proxies, shaped like toxiproxy's, so that drills
//! and tools other than Rust tests can inject faults:
//!
//! - `POST /proxies` `{"name", "listen", "upstream"}` starts a proxy;
//!   `GET /proxies` lists them; `DELETE /proxies/{name}` stops one.
//! - `PUT /proxies/{name}/toxics` `{"latency_ms", "jitter_ms",
//!   "bandwidth_bytes_per_second", "blackhole", "timeout_ms"}` replaces its
//!   toxics (absent fields are off); `DELETE` clears them.
//! - `POST /proxies/{name}/cut`, `/restore` and `/reset`.
//!
//! Bodies are JSON whatever their content type says, as `curl -d` sends
//! them. Errors are RFC 9457 problems.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::web::{Data, Json, Path};
use poem::{delete, get, handler, post, put, EndpointExt, IntoResponse, Response, Route};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{Proxy, Toxics};

/// The proxies the API runs, by name.
#[derive(Debug, Default)]
pub struct Proxies {
    running: Mutex<BTreeMap<String, Proxy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProxy {
    name: String,
    /// Where to listen; an ephemeral loopback port when absent.
    listen: Option<SocketAddr>,
    upstream: SocketAddr,
}

#[derive(Debug, Serialize)]
struct ProxyView {
    name: String,
    listen: SocketAddr,
    toxics: ToxicsBody,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToxicsBody {
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
    #[serde(default)]
    bandwidth_bytes_per_second: Option<u64>,
    #[serde(default)]
    blackhole: bool,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

impl From<&ToxicsBody> for Toxics {
    fn from(body: &ToxicsBody) -> Self {
        Self {
            latency: Duration::from_millis(body.latency_ms),
            jitter: Duration::from_millis(body.jitter_ms),
            bandwidth: body.bandwidth_bytes_per_second,
            blackhole: body.blackhole,
            timeout: body.timeout_ms.map(Duration::from_millis),
        }
    }
}

impl From<Toxics> for ToxicsBody {
    fn from(toxics: Toxics) -> Self {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            latency_ms: millis(toxics.latency),
            jitter_ms: millis(toxics.jitter),
            bandwidth_bytes_per_second: toxics.bandwidth,
            blackhole: toxics.blackhole,
            timeout_ms: toxics.timeout.map(millis),
        }
    }
}

fn view(name: &str, proxy: &Proxy) -> ProxyView {
    ProxyView {
        name: name.to_owned(),
        listen: proxy.addr(),
        toxics: proxy.toxics().into(),
    }
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(body.to_string())
}

fn unknown(name: &str) -> Response {
    problem(StatusCode::NOT_FOUND, format!("no proxy named `{name}`"))
}

#[handler]
async fn list(proxies: Data<&Arc<Proxies>>) -> Response {
    let running = proxies.running.lock().await;
    let views: Vec<ProxyView> = running.iter().map(|(name, p)| view(name, p)).collect();
    Json(views).into_response()
}

#[handler]
async fn create(proxies: Data<&Arc<Proxies>>, body: Vec<u8>) -> Response {
    let Ok(new) = serde_json::from_slice::<NewProxy>(&body) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be {\"name\", \"upstream\"} and may give \"listen\", as host:port",
        );
    };
    if new.name.is_empty() || new.name.len() > 64 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name must be 1 to 64 characters",
        );
    }
    let mut running = proxies.running.lock().await;
    if running.contains_key(&new.name) {
        return problem(
            StatusCode::CONFLICT,
            format!("a proxy named `{}` runs already", new.name),
        );
    }
    let listen = new
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    match Proxy::start_on(listen, new.upstream).await {
        Ok(proxy) => {
            let answer = view(&new.name, &proxy);
            running.insert(new.name, proxy);
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(err) => problem(
            StatusCode::CONFLICT,
            format!("could not listen on {listen}: {err}"),
        ),
    }
}

#[handler]
async fn remove(proxies: Data<&Arc<Proxies>>, Path(name): Path<String>) -> Response {
    match proxies.running.lock().await.remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => unknown(&name),
    }
}

#[handler]
async fn set_toxics(
    proxies: Data<&Arc<Proxies>>,
    Path(name): Path<String>,
    body: Vec<u8>,
) -> Response {
    let Ok(toxics) = serde_json::from_slice::<ToxicsBody>(&body) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "toxics are latency_ms, jitter_ms, bandwidth_bytes_per_second, blackhole and timeout_ms",
        );
    };
    let running = proxies.running.lock().await;
    let Some(proxy) = running.get(&name) else {
        return unknown(&name);
    };
    proxy.set_toxics((&toxics).into());
    Json(view(&name, proxy)).into_response()
}

#[handler]
async fn clear_toxics(proxies: Data<&Arc<Proxies>>, Path(name): Path<String>) -> Response {
    let running = proxies.running.lock().await;
    let Some(proxy) = running.get(&name) else {
        return unknown(&name);
    };
    proxy.set_toxics(Toxics::default());
    Json(view(&name, proxy)).into_response()
}

#[handler]
async fn act(
    proxies: Data<&Arc<Proxies>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let running = proxies.running.lock().await;
    let Some(proxy) = running.get(&name) else {
        return unknown(&name);
    };
    match action.as_str() {
        "cut" => proxy.cut(),
        "restore" => proxy.restore(),
        "reset" => proxy.reset(),
        other => {
            return problem(
                StatusCode::NOT_FOUND,
                format!("`{other}` is not an action; use cut, restore or reset"),
            )
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The API's routes over `proxies`.
pub fn routes(proxies: Arc<Proxies>) -> impl poem::Endpoint {
    Route::new()
        .at("/proxies", get(list).post(create))
        .at("/proxies/:name", delete(remove))
        .at(
            "/proxies/:name/toxics",
            put(set_toxics).delete(clear_toxics),
        )
        .at("/proxies/:name/:action", post(act))
        .data(proxies)
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn echoes(addr: &str) -> bool {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return false;
        };
        let mut reply = [0u8; 4];
        stream.write_all(b"ping").await.is_ok()
            && tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut reply))
                .await
                .is_ok_and(|read| read.is_ok())
    }

    #[tokio::test]
    async fn a_proxy_is_created_shaped_cut_and_removed_over_http() {
        let client = TestClient::new(routes(Arc::new(Proxies::default())));
        let upstream = echo_server().await;

        let created = client
            .post("/proxies")
            .body_json(&json!({"name": "shard-1", "upstream": upstream}))
            .send()
            .await;
        created.assert_status(StatusCode::CREATED);
        let body: Value = created.json().await.value().deserialize();
        let listen = body["listen"].as_str().expect("listen").to_owned();
        assert!(echoes(&listen).await);

        let shaped = client
            .put("/proxies/shard-1/toxics")
            .body_json(&json!({"latency_ms": 500, "jitter_ms": 50}))
            .send()
            .await;
        shaped.assert_status_is_ok();
        let body: Value = shaped.json().await.value().deserialize();
        assert_eq!(body["toxics"]["latency_ms"], 500);
        assert!(
            !echoes(&listen).await,
            "500 ms of latency misses a 300 ms wait"
        );
        client
            .delete("/proxies/shard-1/toxics")
            .send()
            .await
            .assert_status_is_ok();

        client
            .post("/proxies/shard-1/cut")
            .send()
            .await
            .assert_status(StatusCode::NO_CONTENT);
        assert!(!echoes(&listen).await);
        client
            .post("/proxies/shard-1/restore")
            .send()
            .await
            .assert_status(StatusCode::NO_CONTENT);
        assert!(echoes(&listen).await);

        client
            .delete("/proxies/shard-1")
            .send()
            .await
            .assert_status(StatusCode::NO_CONTENT);
        assert!(!echoes(&listen).await, "a removed proxy stops listening");
    }

    #[tokio::test]
    async fn bad_requests_are_problems_naming_what_is_wrong() {
        let client = TestClient::new(routes(Arc::new(Proxies::default())));
        let upstream = echo_server().await;

        let missing = client
            .post("/proxies")
            .body_json(&json!({"name": "x"}))
            .send()
            .await;
        missing.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
        missing.assert_content_type("application/problem+json");
        client
            .post("/proxies")
            .body_json(&json!({"name": "x", "upstream": upstream}))
            .send()
            .await
            .assert_status(StatusCode::CREATED);
        client
            .post("/proxies")
            .body_json(&json!({"name": "x", "upstream": upstream}))
            .send()
            .await
            .assert_status(StatusCode::CONFLICT);
        client
            .put("/proxies/x/toxics")
            .body_json(&json!({"latency": 5}))
            .send()
            .await
            .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
        client
            .post("/proxies/x/explode")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
        client
            .post("/proxies/nobody/cut")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}
