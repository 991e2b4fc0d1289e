//! The gateway's books: payment intents, and the answer given to each
//! idempotency key. The gateway holds the ledger under one lock, so a check
//! and the change it guards never interleave with another request.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use super::bodies::{
    CreateIntent, CreateRefund, Intent, IntentList, IntentStatus, RefundBody, RefundStatus,
};
use super::refusal::Refusal;
use super::tokens::{self, Behaviour};

/// A request that changes money, as compared for idempotency: by its
/// parameters, so that the same request sent with other whitespace or key
/// order is still the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Authorize {
        intent: CreateIntent,
        behaviour: Behaviour,
    },
    Capture {
        intent: String,
        amount: i64,
    },
    Cancel {
        intent: String,
    },
    Refund(CreateRefund),
}

/// What the gateway answers with a 200.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    Intent(Intent),
    Refund(RefundBody),
    List(IntentList),
}

/// An answer and whether it was given before, to the same key.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub reply: Result<Reply, Refusal>,
    pub replayed: bool,
}

#[derive(Debug)]
struct Stored {
    request: Request,
    reply: Result<Reply, Refusal>,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    intents: HashMap<String, Intent>,
    /// Intent ids per reference, oldest first.
    by_reference: HashMap<String, Vec<String>>,
    answers: HashMap<String, Stored>,
}

/// Checks an authorization before it reaches the ledger. A request refused
/// here is not stored under its idempotency key, as with Stripe: the
/// corrected request may reuse the key.
pub(crate) fn validate(intent: &CreateIntent) -> Result<Behaviour, Refusal> {
    let behaviour = tokens::behaviour(&intent.payment_method)?;
    positive(intent.amount)?;
    if intent.currency.len() != 3 || !intent.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Refusal::invalid(
            "currency_invalid",
            "currency must be an uppercase ISO 4217 code, such as USD",
        ));
    }
    if intent.reference.trim().is_empty() {
        return Err(Refusal::invalid(
            "reference_missing",
            "reference must name the order being paid",
        ));
    }
    Ok(behaviour)
}

/// Amounts are in minor units and must take or return something.
pub(crate) fn positive(amount: i64) -> Result<(), Refusal> {
    if amount > 0 {
        Ok(())
    } else {
        Err(Refusal::invalid(
            "amount_invalid",
            "amount must be a positive number of minor units",
        ))
    }
}

impl Ledger {
    /// Carries out a request once per idempotency key; later requests with
    /// the key receive the first answer, refusals included, because the
    /// ledger may have changed since and a retry must not act differently.
    pub fn execute(&mut self, key: &str, request: Request) -> Result<Answer, Refusal> {
        if let Some(stored) = self.answers.get(key) {
            if stored.request != request {
                return Err(Refusal::idempotency(
                    "idempotency_key_in_use",
                    "this idempotency key was already used with other parameters",
                ));
            }
            return Ok(Answer {
                reply: stored.reply.clone(),
                replayed: true,
            });
        }
        let reply = match &request {
            Request::Authorize { intent, behaviour } => self.authorize(intent, *behaviour),
            Request::Capture { intent, amount } => self.capture(intent, *amount),
            Request::Cancel { intent } => self.cancel(intent),
            Request::Refund(refund) => self.refund(refund),
        };
        self.answers.insert(
            key.to_owned(),
            Stored {
                request,
                reply: reply.clone(),
            },
        );
        Ok(Answer {
            reply,
            replayed: false,
        })
    }

    /// Every intent of an order, declined ones included, oldest first.
    pub fn list(&self, reference: &str) -> IntentList {
        let data = self
            .by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|id| self.intents.get(id).cloned())
            .collect();
        IntentList { data }
    }

    /// Declines are recorded too, so that looking the order up after a lost
    /// answer tells a decline from a request that never arrived.
    fn authorize(
        &mut self,
        request: &CreateIntent,
        behaviour: Behaviour,
    ) -> Result<Reply, Refusal> {
        let status = match behaviour {
            Behaviour::Decline { .. } => IntentStatus::Declined,
            Behaviour::Approve | Behaviour::ApproveLate => IntentStatus::RequiresCapture,
        };
        let intent = Intent {
            id: format!("pi_{}", Uuid::new_v4().simple()),
            status,
            amount: request.amount,
            currency: request.currency.clone(),
            reference: request.reference.clone(),
            amount_captured: 0,
            amount_refunded: 0,
            card_fingerprint: Some(tokens::fingerprint(&request.payment_method)),
        };
        self.by_reference
            .entry(intent.reference.clone())
            .or_default()
            .push(intent.id.clone());
        self.intents.insert(intent.id.clone(), intent.clone());
        match behaviour {
            Behaviour::Decline { code, message } => Err(Refusal::card(code, message)),
            Behaviour::Approve | Behaviour::ApproveLate => Ok(Reply::Intent(intent)),
        }
    }

    /// Capturing again with the amount already captured succeeds, so that a
    /// caller who lost its idempotency key can still finish safely.
    fn capture(&mut self, id: &str, amount: i64) -> Result<Reply, Refusal> {
        let intent = self.intent(id)?;
        match intent.status {
            IntentStatus::RequiresCapture if amount > intent.amount => Err(Refusal::invalid(
                "amount_too_large",
                format!("cannot capture {amount}: {} is authorized", intent.amount),
            )),
            IntentStatus::RequiresCapture => {
                intent.status = IntentStatus::Succeeded;
                intent.amount_captured = amount;
                Ok(Reply::Intent(intent.clone()))
            }
            IntentStatus::Succeeded if intent.amount_captured == amount => {
                Ok(Reply::Intent(intent.clone()))
            }
            IntentStatus::Succeeded => Err(Refusal::invalid(
                "payment_intent_unexpected_state",
                format!(
                    "the payment intent was already captured for {}",
                    intent.amount_captured
                ),
            )),
            IntentStatus::Canceled | IntentStatus::Declined => Err(unexpected(intent, "captured")),
        }
    }

    /// Canceling twice succeeds, for the same reason as capturing twice.
    fn cancel(&mut self, id: &str) -> Result<Reply, Refusal> {
        let intent = self.intent(id)?;
        match intent.status {
            IntentStatus::RequiresCapture | IntentStatus::Canceled => {
                intent.status = IntentStatus::Canceled;
                Ok(Reply::Intent(intent.clone()))
            }
            IntentStatus::Succeeded | IntentStatus::Declined => Err(unexpected(intent, "canceled")),
        }
    }

    fn refund(&mut self, refund: &CreateRefund) -> Result<Reply, Refusal> {
        let intent = self.intent(&refund.payment_intent)?;
        if intent.status != IntentStatus::Succeeded {
            return Err(unexpected(intent, "refunded"));
        }
        let refundable = intent.amount_captured - intent.amount_refunded;
        if refund.amount > refundable {
            return Err(Refusal::invalid(
                "amount_too_large",
                format!(
                    "cannot refund {}: {refundable} of the {} captured is left to refund",
                    refund.amount, intent.amount_captured
                ),
            ));
        }
        intent.amount_refunded += refund.amount;
        Ok(Reply::Refund(RefundBody {
            id: format!("re_{}", Uuid::new_v4().simple()),
            status: RefundStatus::Succeeded,
            amount: refund.amount,
            payment_intent: intent.id.clone(),
        }))
    }

    fn intent(&mut self, id: &str) -> Result<&mut Intent, Refusal> {
        self.intents.get_mut(id).ok_or_else(Refusal::no_such_intent)
    }
}

fn unexpected(intent: &Intent, action: &str) -> Refusal {
    let status = match intent.status {
        IntentStatus::RequiresCapture => "uncaptured",
        IntentStatus::Succeeded => "captured",
        IntentStatus::Canceled => "canceled",
        IntentStatus::Declined => "declined",
    };
    Refusal::invalid(
        "payment_intent_unexpected_state",
        format!("a {status} payment intent cannot be {action}"),
    )
}
