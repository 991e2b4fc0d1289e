//! The carrier's record: the messages it accepted, and the answer given to
//! each idempotency key. The carrier holds the outbox under one lock, so a
//! key's check and the send it guards never interleave with another
//! request.

use std::collections::HashMap;

use chrono::Utc;
use poem::http::StatusCode;
use uuid::Uuid;

use super::bodies::{CreateMessage, MessageResource};
use super::numbers::Behaviour;
use super::refusal::Refusal;
use crate::segments;

/// A message the sandbox carrier accepted, as tests see it through
/// [`RunningCarrier::messages`](super::RunningCarrier::messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// `SM` and 32 hex digits, as in the carrier's answer.
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    /// How many SMS the body was sent as.
    pub segments: u32,
}

/// An accepted message and whether it was accepted before, under the same
/// key.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub message: MessageResource,
    pub replayed: bool,
}

#[derive(Debug)]
struct Record {
    sent: SentMessage,
    date_created: String,
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Oldest first.
    records: Vec<Record>,
    /// The request each key was first used for, and the index of the
    /// message it sent.
    answers: HashMap<String, (CreateMessage, usize)>,
}

impl Outbox {
    /// Sends a message once per idempotency key; later requests with the
    /// key get the first answer. Only accepted messages claim their key: a
    /// refused request sent nothing, so it may be corrected and sent again
    /// with the same key.
    pub fn send(
        &mut self,
        account_sid: &str,
        key: Option<&str>,
        request: CreateMessage,
        behaviour: Behaviour,
    ) -> Result<Accepted, Refusal> {
        if let Some(&(ref first, index)) = key.and_then(|key| self.answers.get(key)) {
            if *first != request {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    20422,
                    "this idempotency key was already used for another message",
                ));
            }
            return Ok(Accepted {
                message: self.records[index].resource(account_sid),
                replayed: true,
            });
        }
        if let Some(refusal) = behaviour.refusal() {
            return Err(refusal);
        }
        let record = Record {
            sent: SentMessage {
                sid: format!("SM{}", Uuid::new_v4().simple()),
                segments: segments::count(&request.body),
                to: request.to.clone(),
                from: request.from.clone(),
                body: request.body.clone(),
            },
            date_created: Utc::now().format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        };
        let message = record.resource(account_sid);
        if let Some(key) = key {
            self.answers
                .insert(key.to_owned(), (request, self.records.len()));
        }
        self.records.push(record);
        Ok(Accepted {
            message,
            replayed: false,
        })
    }

    /// Oldest first, optionally only those to one number.
    pub fn messages(&self, to: Option<&str>) -> Vec<SentMessage> {
        self.matching(to)
            .map(|record| record.sent.clone())
            .collect()
    }

    /// Newest first, as Twilio lists them.
    pub fn resources(&self, account_sid: &str, to: Option<&str>) -> Vec<MessageResource> {
        self.matching(to)
            .rev()
            .map(|record| record.resource(account_sid))
            .collect()
    }

    fn matching<'a>(
        &'a self,
        to: Option<&'a str>,
    ) -> impl DoubleEndedIterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(move |record| to.is_none_or(|to| record.sent.to == to))
    }
}

impl Record {
    fn resource(&self, account_sid: &str) -> MessageResource {
        let sent = &self.sent;
        MessageResource {
            sid: sent.sid.clone(),
            account_sid: account_sid.to_owned(),
            status: "queued".to_owned(),
            to: sent.to.clone(),
            from: sent.from.clone(),
            body: sent.body.clone(),
            num_segments: sent.segments.to_string(),
            direction: "outbound-api".to_owned(),
            date_created: self.date_created.clone(),
        }
    }
}
