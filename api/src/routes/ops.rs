use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::problem::{ComponentStatus, Problem, RETRY_AFTER_SECONDS};
use crate::state::AppState;

#[derive(Debug)]
pub struct OpsApi;

/// The process is alive.
#[derive(Debug, Object)]
struct Liveness {
    status: String,
}

/// Every dependency answered.
#[derive(Debug, Object)]
struct Ready {
    status: String,
    components: Vec<ComponentStatus>,
}

#[derive(Debug, ApiResponse)]
enum ReadyResponse {
    /// Every shard primary and replica, Redis and the broker are up.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// A dependency is down; `detail` names it and `components` lists them all.
    #[oai(status = 503, content_type = "application/problem+json")]
    NotReady(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// Liveness: answers while the process can serve requests at all.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Liveness> {
        Json(Liveness {
            status: "ok".to_owned(),
        })
    }

    /// Readiness: probes the catalog, every shard primary and replica (with
    /// replica lag), Redis and the broker.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> ReadyResponse {
        let components = state.readiness.check().await;
        let down: Vec<String> = components
            .iter()
            .filter(|c| c.status != "up")
            .map(|c| match &c.detail {
                Some(detail) => format!("{} ({detail})", c.name),
                None => c.name.clone(),
            })
            .collect();
        if down.is_empty() {
            return ReadyResponse::Ready(Json(Ready {
                status: "ready".to_owned(),
                components,
            }));
        }
        let mut problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("not ready: {}", down.join("; ")),
        );
        problem.components = Some(components);
        ReadyResponse::NotReady(Json(problem), RETRY_AFTER_SECONDS)
    }

    /// Prometheus metrics: requests and latency by route and status, pool
    /// occupancy per server, search index size and build information.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&Arc<AppState>>) -> PlainText<String> {
        let pools = state.storage.cluster().pool_stats();
        PlainText(state.metrics.render(&pools, state.search.len()))
    }
}
