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

/// The service can sell: the catalog and every shard primary answered.
#[derive(Debug, Object)]
struct Ready {
    /// `ready`, or `degraded` while a replica, Redis or the broker is down
    /// (`detail` names them): reads fall back to primaries, caches and
    /// limits to each instance, and events wait in the outbox.
    status: String,
    #[oai(skip_serializing_if_is_none)]
    detail: Option<String>,
    components: Vec<ComponentStatus>,
}

/// Whether a component being down stops the service from selling. Without a
/// replica, Redis or the broker it still sells, so taking every instance
/// out of a load balancer for one of them would turn a degradation into an
/// outage.
fn required(component: &str) -> bool {
    component == "catalog" || component.ends_with("/primary")
}

#[derive(Debug, ApiResponse)]
enum ReadyResponse {
    /// The catalog and every shard primary are up; `status` says whether
    /// anything else is down.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// The catalog or a shard primary is down; `detail` names what is down
    /// and `components` lists them all.
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
    /// replica lag), Redis and the broker. Ready while the catalog and every
    /// primary answer; the rest only degrade it.
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
        let blocking = components
            .iter()
            .any(|c| c.status != "up" && required(&c.name));
        if !blocking {
            return ReadyResponse::Ready(Json(Ready {
                status: if down.is_empty() { "ready" } else { "degraded" }.to_owned(),
                detail: (!down.is_empty()).then(|| format!("degraded: {}", down.join("; "))),
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
    /// occupancy per server, whether each dependency answers and replica
    /// lag (probed at each scrape), search index size and build information.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&Arc<AppState>>) -> PlainText<String> {
        let pools = state.storage.cluster().pool_stats();
        let components = state.readiness.check().await;
        PlainText(
            state
                .metrics
                .render(&pools, &components, state.search.len()),
        )
    }
}
