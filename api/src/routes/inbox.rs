//! The signed-in user's in-app inbox: a page of notices, a long-poll that
//! answers as soon as one is filed, an event stream, and marking read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::SignedIn;
use crate::body::{JsonBody, Validate};
use crate::inbox::RECHECK;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

#[derive(Debug)]
pub struct InboxApi;

/// A notice in the inbox.
#[derive(Debug, Object)]
struct NoticeView {
    id: Uuid,
    /// `booking.confirmed` or `booking.cancelled`.
    kind: String,
    title: String,
    body: String,
    /// What the notice is about: an order.
    #[oai(skip_serializing_if_is_none)]
    subject_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    read_at: Option<DateTime<Utc>>,
}

impl From<marquee_storage::inbox::Notice> for NoticeView {
    fn from(notice: marquee_storage::inbox::Notice) -> Self {
        Self {
            id: notice.id,
            kind: notice.kind,
            title: notice.title,
            body: notice.body,
            subject_id: notice.subject_id,
            created_at: notice.created_at,
            read_at: notice.read_at,
        }
    }
}

#[derive(Debug, Object)]
struct NoticePage {
    /// Oldest first.
    notices: Vec<NoticeView>,
    /// Pass as `after` to get only what comes next; absent when empty.
    #[oai(skip_serializing_if_is_none)]
    next_after: Option<Uuid>,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    /// The newest notice read; it and every older one are marked.
    up_to: Uuid,
}

impl Validate for ReadBody {
    /// An id is all it carries, and its type checks it.
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

#[derive(Debug, Object)]
struct Marked {
    marked: u64,
}

fn default_limit() -> i64 {
    50
}

fn default_wait() -> u64 {
    0
}

/// The user's notices after `after`, waiting up to `wait` for one when
/// there are none: the bell wakes the wait as soon as a notice is filed,
/// and the inbox is looked at again every few seconds regardless.
async fn wait_for_notices(
    state: &AppState,
    user: Uuid,
    after: Option<Uuid>,
    limit: i64,
    wait: Duration,
) -> Result<Vec<marquee_storage::inbox::Notice>, ApiError> {
    let bell = state.inbox.bell(user);
    let deadline = Instant::now() + wait;
    loop {
        // Listening before looking: a notice filed in between still wakes.
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let notices = state.storage.notices(user, after, limit).await?;
        let now = Instant::now();
        if !notices.is_empty() || now >= deadline {
            return Ok(notices);
        }
        tokio::select! {
            () = &mut rung => {}
            () = tokio::time::sleep(RECHECK.min(deadline - now)) => {}
        }
    }
}

#[OpenApi(tag = "ApiTags::Accounts")]
impl InboxApi {
    /// My notices
    ///
    /// Notices filed after `after` (or the newest `limit`), oldest first.
    /// With `wait`, an empty answer is held for up to that many seconds
    /// and sent as soon as a notice arrives: a long-poll.
    #[oai(path = "/v1/me/notifications", method = "get")]
    async fn notices(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        after: Query<Option<Uuid>>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<i64>,
        /// Seconds to wait for a notice when there is none yet.
        #[oai(default = "default_wait", validator(maximum(value = "30")))]
        wait: Query<u64>,
    ) -> Result<Json<NoticePage>, ApiError> {
        let notices = wait_for_notices(
            &state,
            caller.0.user,
            after.0,
            limit.0,
            Duration::from_secs(wait.0),
        )
        .await?;
        let next_after = notices.last().map(|notice| notice.id).or(after.0);
        Ok(Json(NoticePage {
            notices: notices.into_iter().map(NoticeView::from).collect(),
            next_after,
        }))
    }

    /// My notices as they arrive
    ///
    /// A server-sent event stream: each notice is one `message` event whose
    /// id is the notice's, so a reconnecting client sends `Last-Event-ID`
    /// and misses nothing. A comment every 15 s keeps proxies from closing
    /// an idle stream.
    #[oai(path = "/v1/me/notifications/stream", method = "get")]
    async fn stream(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        #[oai(name = "Last-Event-ID")] last_event_id: Header<Option<Uuid>>,
    ) -> Result<EventStream<BoxStream<'static, NoticeView>>, ApiError> {
        let state = Arc::clone(&state);
        let user = caller.0.user;
        let start = (
            last_event_id.0,
            VecDeque::<marquee_storage::inbox::Notice>::new(),
            state,
        );
        let notices =
            futures::stream::unfold(start, move |(after, mut pending, state)| async move {
                loop {
                    if let Some(notice) = pending.pop_front() {
                        let after = Some(notice.id);
                        return Some((NoticeView::from(notice), (after, pending, state)));
                    }
                    match wait_for_notices(&state, user, after, 50, Duration::from_secs(3600)).await
                    {
                        Ok(notices) => pending.extend(notices),
                        Err(err) => {
                            tracing::warn!(error = ?err, "inbox stream stopped");
                            return None;
                        }
                    }
                }
            });
        Ok(
            EventStream::new(Box::pin(notices) as BoxStream<'static, NoticeView>)
                .keep_alive(Duration::from_secs(15))
                .to_event(|notice| {
                    use poem_openapi::types::ToJSON;
                    poem::web::sse::Event::message(notice.to_json_string())
                        .id(notice.id.to_string())
                }),
        )
    }

    /// Mark notices read
    ///
    /// Marks `up_to` and every older notice read.
    #[oai(path = "/v1/me/notifications/read", method = "post")]
    async fn mark_read(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<ReadBody>,
    ) -> Result<Json<Marked>, ApiError> {
        let marked = state
            .storage
            .mark_notices_read(caller.0.user, body.0.up_to)
            .await?;
        Ok(Json(Marked { marked }))
    }
}
