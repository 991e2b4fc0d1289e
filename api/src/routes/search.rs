use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::problem::ApiError;
use crate::state::AppState;

#[derive(Debug)]
pub struct SearchApi;

/// A movie matching the query.
#[derive(Debug, Object)]
struct SearchHit {
    id: Uuid,
    title: String,
    #[oai(skip_serializing_if_is_none)]
    release_year: Option<i32>,
    /// Relevance; higher is better. Comparable only within one response.
    score: f32,
}

#[derive(Debug, Object)]
struct SearchResults {
    query: String,
    hits: Vec<SearchHit>,
}

#[OpenApi(tag = "ApiTags::Search")]
impl SearchApi {
    /// Movies by title or director, tolerating typos and partial words.
    #[oai(path = "/v1/search", method = "get")]
    async fn search(
        &self,
        state: Data<&Arc<AppState>>,
        /// Free text, such as `godfather` or `scorsese`.
        #[oai(validator(min_length = 1, max_length = 200))]
        q: Query<String>,
        /// Results to return, 1 to 50.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "50"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<SearchResults>, ApiError> {
        let (index, text, limit) = (Arc::clone(&state.search), q.0.clone(), limit.0 as usize);
        let hits = tokio::task::spawn_blocking(move || index.search(&text, limit)).await??;
        Ok(Json(SearchResults {
            query: q.0,
            hits: hits
                .into_iter()
                .map(|hit| SearchHit {
                    id: hit.id,
                    title: hit.title,
                    release_year: hit.release_year,
                    score: hit.score,
                })
                .collect(),
        }))
    }
}

fn default_limit() -> u32 {
    10
}
