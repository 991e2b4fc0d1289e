//! Buying seats: holds, the adaptive choice of seat locking, idempotent
//! orders paid through a [`PaymentProvider`], signed tickets, cancellation
//! with refunds, admission at the door ([`door`]), and the sweepers that
//! keep all of it honest after timeouts and crashes.
//!
//! The rules that must hold under any interleaving (a seat sold once, an
//! order confirmed only with its seats) live in the storage layer's
//! transactions; this crate decides what to ask of them and of the
//! provider, in which order, and what to tell the customer.

pub mod door;
mod error;
pub mod fairness;
pub mod locking;
mod metrics;
pub mod room;
pub mod settings;
pub mod tickets;
pub mod waitlist;

use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use marquee_payments::{AuthorizeRequest, PaymentError, PaymentProvider, PaymentState};
use marquee_ratelimit::{Claim, Slots, Taken};
use marquee_sharding::ids;
use marquee_storage::holds::{
    Hold, LockPolicy, LockState, LockSwitch, NewHold, RoomEntry, SeatChoice,
};
use marquee_storage::orders::{
    BeginOrder, Begun, Cancellation, Cancelled, Confirmation, KeyOutcome, NewTicket, Order, Paid,
    Ticket,
};
use marquee_storage::Storage;
use serde_json::{json, Value};
use uuid::Uuid;

pub use error::Error;
pub use fairness::{Client, ClientKeys};
pub use locking::{Controller, Observed};
pub use settings::Settings;
pub use tickets::{TicketClaims, TicketSigner};

/// Renders the responses stored with an idempotency key, so a replay
/// answers exactly what the first request did.
pub trait Render: Send + Sync {
    /// The body of a confirmed order (201).
    fn order(&self, order: &Order) -> Value;
    /// A problem+json body.
    fn problem(&self, status: u16, slug: &str, detail: &str) -> Value;
}

/// An order request's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Answered from the idempotency key's record.
    pub replayed: bool,
}

/// A showtime's locking for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct LockingView {
    pub state: LockState,
    /// The latest switches, newest first.
    pub switches: Vec<LockSwitch>,
    /// What this instance saw of the showtime lately.
    pub observed: Observed,
}

/// Who is asking about a booking.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// The customer, by the booking token the hold was created with.
    Token(&'a str),
    /// Staff, who may see and cancel anything.
    Admin,
}

/// What an order asks to pay with.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub hold_id: Uuid,
    /// `card`; wallets arrive with their providers.
    pub method: String,
    /// A token from the provider's card form, never a card number.
    pub token: String,
}

#[derive(Debug)]
pub struct Booking {
    storage: Storage,
    provider: Arc<dyn PaymentProvider>,
    settings: Settings,
    locking: Controller,
    signer: TicketSigner,
    random: SystemRandom,
    clients: ClientKeys,
    /// What each client key holds: unpaid seats per showtime, live holds
    /// across every showtime.
    limits: Slots,
    /// Names this instance when it claims stale orders to settle.
    instance: Uuid,
    demand: room::Demand,
    lines: room::Lines,
    hot: metrics::HotMetrics,
}

/// The id of the refund of a capture no confirmed order matches: derived
/// from the order, and routed with it.
fn unmatched_capture_refund(order: Uuid) -> Uuid {
    let mut bytes = *order.as_bytes();
    for byte in &mut bytes[8..] {
        *byte ^= 0xa5;
    }
    Uuid::from_bytes(bytes)
}

/// SHA-256 of a secret, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Whether a payment token is in fact a card number, which must never be
/// accepted, stored or logged.
pub fn looks_like_card_number(text: &str) -> bool {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    (12..=19).contains(&digits)
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
}

impl Booking {
    /// Registers the booking metrics in `registry`.
    pub fn new(
        storage: Storage,
        provider: Arc<dyn PaymentProvider>,
        settings: Settings,
        registry: &prometheus::Registry,
        clients: ClientKeys,
        limits: Slots,
    ) -> Result<Self, Error> {
        let locking = Controller::new(settings.locking.clone(), registry)?;
        let signer = TicketSigner::new(
            &settings.ticket_signing_secret,
            &settings.previous_ticket_keys,
        );
        Ok(Self {
            storage,
            provider,
            settings,
            locking,
            signer,
            random: SystemRandom::new(),
            clients,
            limits,
            instance: Uuid::new_v4(),
            demand: room::Demand::default(),
            lines: room::Lines::default(),
            hot: metrics::HotMetrics::new(registry)?,
        })
    }

    /// Hands out device ids and checks them.
    pub fn clients(&self) -> &ClientKeys {
        &self.clients
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether configured peak hours are on at `now`.
    pub fn is_peak(&self, now: chrono::DateTime<Utc>) -> bool {
        self.locking.is_peak(now)
    }

    pub fn signer(&self) -> &TicketSigner {
        &self.signer
    }

    fn new_token(&self) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| Error::Settings("the system random source failed".to_owned()))?;
        Ok(format!("bk_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Holds seats for a customer; the hold and the booking token that
    /// proves ownership of it and of the order it becomes. `owner_token`
    /// is the token of a signed-in customer's account; guests get a new one,
    /// and their address counts toward the limits in canonical form.
    /// Besides the customer's limit, the client's network address and
    /// device may hold only so many unpaid seats of a showtime, and so
    /// many live holds across every showtime.
    pub async fn hold(
        &self,
        showtime: Uuid,
        customer: &str,
        choice: &SeatChoice,
        owner_token: Option<String>,
        client: &Client,
        room: RoomEntry,
    ) -> Result<(Hold, String), Error> {
        self.observe_demand(showtime);
        let count = choice.count();
        if count == 0 || count > self.settings.max_seats_per_hold {
            return Err(marquee_storage::Error::Invalid {
                detail: format!(
                    "a hold is for 1 to {} seats",
                    self.settings.max_seats_per_hold
                ),
                fields: vec![(
                    match choice {
                        SeatChoice::Seats(_) => "seats",
                        SeatChoice::Best(_) => "best_available.count",
                    }
                    .to_owned(),
                    format!("1 to {} seats", self.settings.max_seats_per_hold),
                )],
            }
            .into());
        }
        let guest = owner_token.is_none();
        let token = match owner_token {
            Some(token) => token,
            None => self.new_token()?,
        };
        let hash = token_hash(&token);
        let customer = customer.trim().to_lowercase();
        let claimants = self
            .clients
            .claimants(guest.then_some(customer.as_str()), client);
        let claims = self.claims(&claimants, showtime, choice.count());
        let ttl = std::time::Duration::from_secs(self.settings.hold_ttl_seconds);
        // The hold's id is chosen here, so its share of the limits is taken
        // under its own name before it exists.
        let hold_id = ids::sibling(showtime);
        let member = hold_id.to_string();
        if let Taken::Full { index, used, until } = self.limits.take(&claims, &member, ttl).await {
            let (kind, live) = fairness::limit_of(&claims[index]);
            let allowed = usize::try_from(claims[index].cap).unwrap_or(usize::MAX);
            self.hot
                .limits
                .with_label_values(&[if live { "live_holds" } else { kind }])
                .inc();
            return Err(if live {
                Error::LiveHolds {
                    allowed,
                    retry_after: until,
                }
            } else {
                Error::UnpaidSeats {
                    limit: kind.to_owned(),
                    allowed,
                    used: usize::try_from(used).unwrap_or(usize::MAX),
                    retry_after: until,
                }
            });
        }
        let now = Utc::now();
        let new = NewHold {
            id: hold_id,
            showtime_id: showtime,
            customer: &customer,
            token_hash: &hash,
            choice,
            ttl,
            per_customer: self.settings.max_seats_per_customer,
            claimants: &claimants,
            room,
            peak: self.locking.is_peak(now),
            attempts: self.settings.locking.optimistic_attempts,
            observer: &self.locking,
        };
        let (result, contention) = match self.storage.place_hold(&new).await {
            Ok(claim) => (Ok(claim.hold), claim.contention),
            Err(refused) => (Err(refused.error), refused.contention),
        };
        if result.is_err() {
            self.limits.free(&claims, &member).await;
        }
        if contention.attempts > 0 {
            self.locking.claimed(&contention, result.is_ok());
        }
        if let Some(to) = contention.switched {
            self.locking.switched(to);
        }
        Ok((result?, token))
    }

    /// What a hold takes from its keys' limits.
    fn claims(&self, claimants: &[String], showtime: Uuid, seats: usize) -> Vec<Claim> {
        fairness::claims(
            claimants,
            showtime,
            seats,
            self.settings.max_seats_per_customer,
            &self.settings.fairness,
        )
    }

    /// Gives back what a hold took from its keys' limits, once it is paid
    /// for or let go.
    async fn free_limits(&self, hold: Uuid, claimants: &[String], showtime: Uuid, seats: usize) {
        let claims = self.claims(claimants, showtime, seats);
        self.limits.free(&claims, &hold.to_string()).await;
    }

    /// A hold, to its owner.
    pub async fn hold_of(&self, id: Uuid, token: &str) -> Result<Hold, Error> {
        let hold = self
            .storage
            .hold(id)
            .await?
            .ok_or(marquee_storage::Error::NotFound { what: "hold", id })?;
        if hold.token_hash != token_hash(token) {
            return Err(marquee_storage::Error::Forbidden(format!(
                "hold {id} belongs to another booking; send the booking token it was created with"
            ))
            .into());
        }
        Ok(hold)
    }

    pub async fn extend_hold(&self, id: Uuid, token: &str) -> Result<Hold, Error> {
        let hold = self
            .storage
            .extend_hold(
                id,
                &token_hash(token),
                std::time::Duration::from_secs(self.settings.hold_extension_seconds),
            )
            .await?;
        let live = (hold.expires_at - Utc::now()).to_std().unwrap_or_default();
        let claims = self.claims(&hold.claimants, hold.showtime_id, hold.seats.len());
        let member = hold.id.to_string();
        self.limits.rename(&claims, &member, &member, live).await;
        Ok(hold)
    }

    /// Releases a hold; the showtime whose seats came back.
    pub async fn release_hold(&self, id: Uuid, token: &str) -> Result<Uuid, Error> {
        let hold = self.storage.release_hold(id, &token_hash(token)).await?;
        self.free_limits(hold.id, &hold.claimants, hold.showtime_id, hold.seats.len())
            .await;
        Ok(hold.showtime_id)
    }

    /// A showtime's locking as stored, its latest switches, and what this
    /// instance saw of it.
    pub async fn locking(&self, showtime: Uuid) -> Result<LockingView, Error> {
        let state = self.storage.lock_state(showtime).await?;
        self.locking_view(showtime, state).await
    }

    pub async fn set_locking(
        &self,
        showtime: Uuid,
        policy: LockPolicy,
    ) -> Result<LockingView, Error> {
        let state = self.storage.set_lock_policy(showtime, policy).await?;
        self.locking_view(showtime, state).await
    }

    async fn locking_view(&self, showtime: Uuid, state: LockState) -> Result<LockingView, Error> {
        Ok(LockingView {
            state,
            switches: self.storage.lock_switches(showtime, 20).await?,
            observed: self.locking.observed(showtime),
        })
    }

    /// Places an order for a hold under an idempotency key: pays, then
    /// confirms in one shard transaction. The same key with the same
    /// request answers what the first one did.
    pub async fn place_order(
        &self,
        key: &str,
        request: &OrderRequest,
        token: &str,
        render: &dyn Render,
    ) -> Result<Reply, Error> {
        if request.method != "card" {
            return Err(marquee_storage::Error::Invalid {
                detail: format!(
                    "payment method {:?} is not accepted; use \"card\" with a card token",
                    request.method
                ),
                fields: vec![(
                    "payment.method".to_owned(),
                    "only card payments are accepted".to_owned(),
                )],
            }
            .into());
        }
        if looks_like_card_number(&request.token) {
            return Err(marquee_storage::Error::Invalid {
                detail: "card numbers are never accepted; send the token the card form returns"
                    .to_owned(),
                fields: vec![(
                    "payment.token".to_owned(),
                    "a card token such as tok_visa, not a card number".to_owned(),
                )],
            }
            .into());
        }
        let booking_token = token_hash(token);
        let request_hash = digest::digest(
            &digest::SHA256,
            format!(
                "{}\n{}\n{}\n{}",
                request.hold_id,
                request.method,
                request.token,
                URL_SAFE_NO_PAD.encode(&booking_token)
            )
            .as_bytes(),
        );
        let authorization = ids::sibling(request.hold_id);
        let begun = self
            .storage
            .begin_order(&BeginOrder {
                key,
                request_hash: request_hash.as_ref(),
                order_id: ids::sibling(request.hold_id),
                hold_id: request.hold_id,
                token_hash: &booking_token,
                payment_method: &request.method,
                provider: self.provider.name(),
                payment_window: std::time::Duration::from_secs(
                    self.settings.payment_window_seconds,
                ),
                authorization_id: authorization,
            })
            .await?;
        match begun {
            Begun::Replay { status, body } => Ok(Reply {
                status,
                body,
                replayed: true,
            }),
            Begun::InFlight { .. } => Err(Error::KeyInFlight(key.to_owned())),
            Begun::Mismatch => Err(Error::KeyReused(key.to_owned())),
            Begun::Started(order) => {
                self.pay(*order, authorization, &request.token, render)
                    .await
            }
        }
    }

    async fn pay(
        &self,
        order: Order,
        authorization: Uuid,
        token: &str,
        render: &dyn Render,
    ) -> Result<Reply, Error> {
        let authorized = self
            .provider
            .authorize(&AuthorizeRequest {
                reference: order.id.to_string(),
                token: token.to_owned(),
                amount: order.amount,
                currency: order.currency.clone(),
                idempotency_key: authorization.to_string(),
            })
            .await;
        let authorized = match authorized {
            Ok(authorized) => Ok((authorized.id, authorized.fingerprint)),
            Err(PaymentError::Timeout | PaymentError::Unavailable(_)) => {
                // The outcome is unknown: ask the provider what happened.
                match self.provider.find(&order.id.to_string()).await {
                    Ok(Some(record))
                        if matches!(
                            record.state,
                            PaymentState::Authorized | PaymentState::Captured
                        ) =>
                    {
                        Ok((record.id, record.fingerprint))
                    }
                    _ => Err(PaymentError::Unavailable(
                        "no answer to the authorization".to_owned(),
                    )),
                }
            }
            Err(other) => Err(other),
        };
        let (reference, fingerprint) = match authorized {
            Ok(authorized) => authorized,
            Err(error) => {
                self.storage
                    .settle_payment(&order, authorization, false, None, Some(&error.to_string()))
                    .await?;
                return self.refuse_payment(&order, &error, render).await;
            }
        };
        if let Some(fingerprint) = &fingerprint {
            if let Some(reply) = self
                .card_over_limit(&order, authorization, &reference, fingerprint, render)
                .await?
            {
                return Ok(reply);
            }
        }
        let capture = ids::sibling(order.id);
        let captured = match self
            .provider
            .capture(&reference, order.amount, &capture.to_string())
            .await
        {
            Ok(_) => Ok(()),
            Err(PaymentError::Timeout | PaymentError::Unavailable(_)) => {
                match self.provider.find(&order.id.to_string()).await {
                    Ok(Some(record)) if record.state == PaymentState::Captured => Ok(()),
                    _ => Err(PaymentError::Unavailable(
                        "no answer to the capture".to_owned(),
                    )),
                }
            }
            Err(other) => Err(other),
        };
        if let Err(error) = captured {
            self.storage
                .settle_payment(&order, authorization, true, Some(&reference), None)
                .await?;
            let failed = self
                .storage
                .record_payment(&order, capture, "capture", order.amount)
                .await?;
            self.storage
                .settle_payment(&order, failed.id, false, None, Some(&error.to_string()))
                .await?;
            if let Err(void) = self
                .provider
                .void(&reference, &format!("{}-void", order.id))
                .await
            {
                tracing::warn!(order = %order.id, error = %void, "could not void an authorization; it lapses at the provider");
            }
            return self.refuse_payment(&order, &error, render).await;
        }
        let paid = Paid {
            authorization,
            capture,
            reference,
            fingerprint,
        };
        self.confirm(order, &paid, render).await
    }

    /// Refuses the order when the card behind its authorization has already
    /// paid for as many seats of the showtime as one customer may: the
    /// authorization is voided and the hold goes back to the customer, who
    /// may pay with another card. The card is recorded with the order's
    /// confirmation, so the check adds no write to a purchase; purchases
    /// with one card still in flight at once are not counted against each
    /// other, and the limits on unpaid seats bound how many those can be.
    async fn card_over_limit(
        &self,
        order: &Order,
        authorization: Uuid,
        reference: &str,
        fingerprint: &str,
        render: &dyn Render,
    ) -> Result<Option<Reply>, Error> {
        let allowed = self.settings.max_seats_per_customer;
        let used = self
            .storage
            .card_seats(order.showtime_id, fingerprint)
            .await?;
        if used + order.seats.len() <= allowed {
            return Ok(None);
        }
        self.hot.limits.with_label_values(&["card"]).inc();
        self.storage
            .settle_payment(
                order,
                authorization,
                false,
                Some(reference),
                Some("card limit"),
            )
            .await?;
        if let Err(void) = self
            .provider
            .void(reference, &format!("{}-void", order.id))
            .await
        {
            tracing::warn!(order = %order.id, error = %void, "could not void an authorization; it lapses at the provider");
        }
        let body = render.problem(
            422,
            "card-seat-limit",
            &format!(
                "this card has already paid for {used} seats of this showtime, and one card may pay for {allowed}; \
                 the card was not charged, and the seats stay held so another card may be tried"
            ),
        );
        self.storage
            .fail_order(
                order,
                "card past its seat limit",
                &KeyOutcome::Done {
                    status: 422,
                    body: body.clone(),
                },
            )
            .await?;
        Ok(Some(Reply {
            status: 422,
            body,
            replayed: false,
        }))
    }

    /// Closes an order whose payment did not go through. The hold goes back
    /// to the customer, who may pay again with another card.
    async fn refuse_payment(
        &self,
        order: &Order,
        error: &PaymentError,
        render: &dyn Render,
    ) -> Result<Reply, Error> {
        let (status, slug) = match error {
            PaymentError::Declined { .. } => (402, "payment-declined"),
            PaymentError::Rejected(_) => (422, "payment-rejected"),
            PaymentError::Timeout | PaymentError::Unavailable(_) => {
                self.storage
                    .fail_order(order, &error.to_string(), &KeyOutcome::Forget)
                    .await?;
                return Err(Error::PaymentUnavailable(error.to_string()));
            }
        };
        let detail = format!(
            "the payment was not accepted: {error}; the seats stay held until the hold expires, so another card may be tried"
        );
        let body = render.problem(status, slug, &detail);
        self.storage
            .fail_order(
                order,
                &error.to_string(),
                &KeyOutcome::Done {
                    status,
                    body: body.clone(),
                },
            )
            .await?;
        Ok(Reply {
            status,
            body,
            replayed: false,
        })
    }

    /// Confirms a paid order; refunds it when its seats were lost.
    async fn confirm(
        &self,
        order: Order,
        paid: &Paid,
        render: &dyn Render,
    ) -> Result<Reply, Error> {
        let tickets: Vec<NewTicket> = order
            .seats
            .iter()
            .zip(&order.prices)
            .map(|(seat, price)| {
                let id = ids::sibling(order.id);
                NewTicket {
                    id,
                    seat: seat.clone(),
                    price: *price,
                    code: self.signer.sign(&TicketClaims {
                        ticket: id,
                        order: order.id,
                        showtime: order.showtime_id,
                        seat: seat.clone(),
                    }),
                }
            })
            .collect();
        let mut view = order.clone();
        view.status = "confirmed".to_owned();
        view.confirmed_at = Some(Utc::now());
        view.payment_ref = Some(paid.reference.clone());
        view.tickets = tickets.iter().map(Ticket::from).collect();
        let body = render.order(&view);
        let event = json!({
            "order_id": order.id,
            "customer": order.customer,
            "showtime_id": order.showtime_id,
            "movie_id": order.movie_id,
            "seats": order.seats,
            "amount": order.amount,
            "currency": order.currency,
        });
        let refusal = match self
            .storage
            .confirm_order(&order, paid, &tickets, 201, &body, &event)
            .await?
        {
            Confirmation::Confirmed(_) => {
                self.free_limits(
                    order.hold_id,
                    &order.claimants,
                    order.showtime_id,
                    order.seats.len(),
                )
                .await;
                return Ok(Reply {
                    status: 201,
                    body,
                    replayed: false,
                });
            }
            Confirmation::Settled(status) if status == "confirmed" => {
                // Confirmed by another request or instance with this very
                // payment: answer what it answered, and refund nothing.
                let stored = self
                    .storage
                    .order(order.id)
                    .await?
                    .ok_or(marquee_storage::Error::NotFound {
                        what: "order",
                        id: order.id,
                    })?;
                return Ok(Reply {
                    status: 201,
                    body: render.order(&stored),
                    replayed: true,
                });
            }
            Confirmation::Settled(_) => (
                "payment-settled",
                "the order was closed while its payment finished; the payment was refunded in full",
            ),
            Confirmation::SeatsLost => (
                "seats-lost",
                "the hold expired before the payment finished and its seats could not be kept; the payment was refunded in full",
            ),
        };
        // Whoever finds the capture unmatched first records the refund; its
        // id is derived from the order, so a second finder records nothing
        // new and the provider, keyed by it, pays it back once.
        let refund = self
            .storage
            .record_payment(
                &order,
                unmatched_capture_refund(order.id),
                "refund",
                order.amount,
            )
            .await?;
        self.send_refund(&order, &paid.reference, refund.id, order.amount)
            .await?;
        let body = render.problem(409, refusal.0, refusal.1);
        self.storage
            .fail_order(
                &order,
                "paid but not confirmed; refunded",
                &KeyOutcome::Done {
                    status: 409,
                    body: body.clone(),
                },
            )
            .await?;
        Ok(Reply {
            status: 409,
            body,
            replayed: false,
        })
    }

    /// An order, to its owner or to staff.
    pub async fn order(&self, id: Uuid, access: Access<'_>) -> Result<Order, Error> {
        let order = self
            .storage
            .order(id)
            .await?
            .ok_or(marquee_storage::Error::NotFound { what: "order", id })?;
        if let Access::Token(token) = access {
            if order.token_hash != token_hash(token) {
                return Err(marquee_storage::Error::Forbidden(format!(
                    "order {id} belongs to another booking; send the booking token it was made with"
                ))
                .into());
            }
        }
        Ok(order)
    }

    /// Cancels some or all seats of an order and refunds by the policy
    /// tier, or by `refund_percent` (default 100) when staff cancel.
    pub async fn cancel(
        &self,
        id: Uuid,
        access: Access<'_>,
        seats: Option<&[String]>,
        refund_percent: Option<u32>,
    ) -> Result<Cancelled, Error> {
        let order = self.order(id, access).await?;
        let showtime = self.storage.showtime(order.showtime_id).await?.ok_or(
            marquee_storage::Error::NotFound {
                what: "showtime",
                id: order.showtime_id,
            },
        )?;
        let minutes_before = (showtime.schedule.starts_at - Utc::now()).num_minutes();
        let percent = match access {
            Access::Admin => refund_percent.unwrap_or(100).min(100),
            Access::Token(_) => self
                .settings
                .cancellation
                .refund_percent(minutes_before)
                .ok_or_else(|| {
                    marquee_storage::Error::Conflict(format!(
                        "bookings can be cancelled until {} minutes before the show; this one starts in {minutes_before}",
                        self.settings.cancellation.cutoff_minutes
                    ))
                })?,
        };
        let cancelled = self
            .storage
            .cancel_order(&Cancellation {
                order: &order,
                seats,
                refund_percent: percent,
                refund_id: ids::sibling(id),
                by_staff: matches!(access, Access::Admin),
            })
            .await?;
        let mut cancelled = cancelled;
        if let (Some(refund), Some(reference)) =
            (cancelled.refund.as_mut(), order.payment_ref.as_deref())
        {
            refund.status = self
                .send_refund(&cancelled.order, reference, refund.id, refund.amount)
                .await?
                .to_owned();
        }
        Ok(cancelled)
    }

    /// Asks the provider for a recorded refund; the refund's status after.
    /// A refund the provider does not confirm stays pending and the sweeper
    /// asks again with the same idempotency key, so it is paid exactly once.
    async fn send_refund(
        &self,
        order: &Order,
        reference: &str,
        payment: Uuid,
        amount: i64,
    ) -> Result<&'static str, Error> {
        match self
            .provider
            .refund(reference, amount, &payment.to_string())
            .await
        {
            Ok(refund) => {
                self.storage
                    .settle_payment(order, payment, true, Some(&refund.id), None)
                    .await?;
                Ok("succeeded")
            }
            Err(PaymentError::Timeout | PaymentError::Unavailable(_)) => {
                tracing::warn!(order = %order.id, %payment, "refund not confirmed yet; it will be retried");
                Ok("pending")
            }
            Err(error) => {
                tracing::error!(order = %order.id, %payment, error = %error, "the provider refused a refund");
                self.storage
                    .settle_payment(order, payment, false, None, Some(&error.to_string()))
                    .await?;
                Ok("failed")
            }
        }
    }

    /// Gives the seats of lapsed holds back; the showtimes that changed.
    pub async fn expire_holds(&self) -> Result<Vec<Uuid>, Error> {
        Ok(self.storage.expire_holds().await?)
    }

    /// Finishes orders left pending by a crash or a hung request: asks the
    /// provider what happened, then confirms a captured payment whose seats
    /// are still held, refunds one whose seats are gone, voids a bare
    /// authorization, and retries unconfirmed refunds. The orders settled.
    pub async fn recover(&self, render: &dyn Render) -> Result<usize, Error> {
        let age = std::time::Duration::from_secs(self.settings.recovery_after_seconds);
        let lease = std::time::Duration::from_secs(self.settings.recovery_lease_seconds);
        let mut settled = 0;
        for order in self
            .storage
            .claim_stale_orders(self.instance, age, lease)
            .await?
        {
            let record = match self.provider.find(&order.id.to_string()).await {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(order = %order.id, error = %err, "provider unreachable; recovery retries later");
                    continue;
                }
            };
            match record {
                Some(record) if record.state == PaymentState::Captured => {
                    let authorization = self
                        .storage
                        .payments(order.id)
                        .await?
                        .into_iter()
                        .find(|payment| payment.kind == "authorization")
                        .map_or_else(|| ids::sibling(order.id), |payment| payment.id);
                    let paid = Paid {
                        authorization,
                        capture: ids::sibling(order.id),
                        reference: record.id,
                        fingerprint: record.fingerprint,
                    };
                    self.confirm(order, &paid, render).await?;
                }
                Some(record) if record.state == PaymentState::Authorized => {
                    if let Err(err) = self
                        .provider
                        .void(&record.id, &format!("{}-void", order.id))
                        .await
                    {
                        tracing::warn!(order = %order.id, error = %err, "could not void an abandoned authorization");
                        continue;
                    }
                    self.storage
                        .fail_order(
                            &order,
                            "abandoned before capture; authorization voided",
                            &KeyOutcome::Forget,
                        )
                        .await?;
                }
                _ => {
                    self.storage
                        .fail_order(&order, "abandoned before payment", &KeyOutcome::Forget)
                        .await?;
                }
            }
            settled += 1;
        }
        for (payment, order) in self.storage.pending_refunds(age).await? {
            if let Some(reference) = order.payment_ref.as_deref() {
                self.send_refund(&order, reference, payment.id, payment.amount)
                    .await?;
            }
        }
        Ok(settled)
    }
}
