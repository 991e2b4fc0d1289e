//! Orders, their payments and tickets, with the idempotency keys that
//! created them. Each step is one transaction on the movie's node:
//!
//! 1. [`Storage::begin_order`] records the key, checks the hold and opens a
//!    pending order, keeping the hold's seats until the payment window ends;
//! 2. the caller talks to the payment provider, recording each call with
//!    [`Storage::record_payment`] before it and [`Storage::settle_payment`]
//!    after;
//! 3. [`Storage::confirm_order`] sells the seats, issues tickets, confirms
//!    the order and stores the response for the key, or
//!    [`Storage::fail_order`] closes it and hands the hold back.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::outbox;
use crate::store::{rejected, Outcome};
use crate::{Error, Storage};

/// What the caller knows when an order request arrives.
#[derive(Debug, Clone)]
pub struct BeginOrder<'a> {
    pub key: &'a str,
    /// Hash of the request body: the same key with another body is refused.
    pub request_hash: &'a [u8],
    pub order_id: Uuid,
    pub hold_id: Uuid,
    pub token_hash: &'a [u8],
    pub payment_method: &'a str,
    pub provider: &'a str,
    /// How long the hold's seats are kept for the payment to finish.
    pub payment_window: std::time::Duration,
    /// The authorization about to be asked of the provider, recorded as
    /// pending with the order; its id is the provider call's idempotency
    /// key.
    pub authorization_id: Uuid,
}

/// How an order request starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// A new pending order; the caller goes on to pay.
    Started(Box<Order>),
    /// The key finished before: its stored response.
    Replay { status: u16, body: Value },
    /// The key's first request is still being processed.
    InFlight { order_id: Uuid },
    /// The key was used with a different request.
    Mismatch,
}

/// What happens to the idempotency key of an order that fails.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOutcome {
    /// The response is final: a retry with the key replays it.
    Done { status: u16, body: Value },
    /// The failure was transient (the provider was unreachable): the key
    /// is forgotten so the client can retry it.
    Forget,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    pub seat: String,
    pub price: i64,
    pub code: String,
    /// `valid` or `cancelled`.
    pub status: String,
    pub refunded: i64,
}

impl From<&NewTicket> for Ticket {
    fn from(ticket: &NewTicket) -> Self {
        Self {
            id: ticket.id,
            seat: ticket.seat.clone(),
            price: ticket.price,
            code: ticket.code.clone(),
            status: "valid".to_owned(),
            refunded: 0,
        }
    }
}

/// How an order was paid, settled in the confirming transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Paid {
    /// The authorization payment recorded by [`Storage::begin_order`].
    pub authorization: Uuid,
    /// The capture's payment id, also its idempotency key at the provider.
    pub capture: Uuid,
    /// The provider's reference for the payment.
    pub reference: String,
    /// The card's fingerprint, when the provider gave one.
    pub fingerprint: Option<String>,
}

/// A ticket to issue on confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    pub id: Uuid,
    pub seat: String,
    pub price: i64,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Uuid,
    pub hold_id: Uuid,
    pub showtime_id: Uuid,
    pub movie_id: Uuid,
    pub customer: String,
    pub token_hash: Vec<u8>,
    pub seats: Vec<String>,
    /// Minor units per seat, in the order of `seats`.
    pub prices: Vec<i64>,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `confirmed`, `failed` or `cancelled`.
    pub status: String,
    pub payment_method: String,
    pub provider: String,
    pub payment_ref: Option<String>,
    pub refunded: i64,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub tickets: Vec<Ticket>,
    /// The client keys its hold counted against.
    pub claimants: Vec<String>,
}

/// A money movement recorded before the provider was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    /// `authorization`, `capture`, `void` or `refund`.
    pub kind: String,
    pub amount: i64,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub provider_ref: Option<String>,
}

/// Seats of a confirmed order to cancel.
#[derive(Debug, Clone)]
pub struct Cancellation<'a> {
    /// The order as the caller read it, after checking who may cancel it;
    /// its tickets are checked again under the order's lock.
    pub order: &'a Order,
    /// `None` cancels every ticket still valid.
    pub seats: Option<&'a [String]>,
    /// Share of each ticket's price given back.
    pub refund_percent: u32,
    /// Id of the refund payment recorded when anything is refunded.
    pub refund_id: Uuid,
    /// Staff may cancel tickets that were already admitted at the door;
    /// customers may not.
    pub by_staff: bool,
}

/// What became of a paid order asked to be confirmed.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    Confirmed(Box<Order>),
    /// Another request or instance settled it first; its status now.
    Settled(String),
    /// Its hold lost its seats before the payment finished.
    SeatsLost,
}

/// Why a cancellation was given up under the order's lock.
enum Refusal {
    /// Its tickets are no longer what the caller read.
    Changed,
    /// A ticket went in at the door: its seat and when.
    Admitted(String, DateTime<Utc>),
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub order: Order,
    pub seats: Vec<String>,
    pub refund: Option<Payment>,
}

const ORDER_COLUMNS: &str = "o.id, o.hold_id, o.showtime_id, o.movie_id, o.customer, \
     o.token_hash, o.seats, h.prices, o.amount, o.currency, o.status, o.payment_method, \
     o.provider, o.payment_ref, o.refunded, o.failure, o.created_at, o.confirmed_at, o.updated_at, \
     h.claimants";

fn order_from_row(row: &Row) -> Order {
    Order {
        id: row.get(0),
        hold_id: row.get(1),
        showtime_id: row.get(2),
        movie_id: row.get(3),
        customer: row.get(4),
        token_hash: row.get(5),
        seats: row.get(6),
        prices: row.get(7),
        amount: row.get(8),
        currency: row.get(9),
        status: row.get(10),
        payment_method: row.get(11),
        provider: row.get(12),
        payment_ref: row.get(13),
        refunded: row.get(14),
        failure: row.get(15),
        created_at: row.get(16),
        confirmed_at: row.get(17),
        updated_at: row.get(18),
        tickets: Vec::new(),
        claimants: row.get(19),
    }
}

fn payment_from_row(row: &Row) -> Payment {
    Payment {
        id: row.get(0),
        order_id: row.get(1),
        kind: row.get(2),
        amount: row.get(3),
        status: row.get(4),
        provider_ref: row.get(5),
    }
}

async fn load_order(
    client: &impl GenericClient,
    id: Uuid,
    lock: bool,
) -> Result<Option<Order>, tokio_postgres::Error> {
    let sql = format!(
        "select {ORDER_COLUMNS} from orders o join holds h on h.id = o.hold_id where o.id = $1{}",
        if lock { " for update of o" } else { "" }
    );
    let statement = client.prepare_cached(&sql).await?;
    let Some(row) = client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let mut order = order_from_row(&row);
    let tickets = client
        .prepare_cached(
            "select id, seat, price, code, status, refunded from tickets \
             where order_id = $1 order by seat",
        )
        .await?;
    order.tickets = client
        .query(&tickets, &[&id])
        .await?
        .iter()
        .map(|row| Ticket {
            id: row.get(0),
            seat: row.get(1),
            price: row.get(2),
            code: row.get(3),
            status: row.get(4),
            refunded: row.get(5),
        })
        .collect();
    Ok(Some(order))
}

/// What `begin_order` found, decided inside its transaction.
enum Opening {
    Begun(Begun),
    Refused(Error),
}

impl Storage {
    /// Starts an order for a hold under an idempotency key.
    pub async fn begin_order(&self, begin: &BeginOrder<'_>) -> Result<Begun, Error> {
        let movie = self
            .movie_of_hold(begin.hold_id)
            .await?
            .ok_or(Error::NotFound {
                what: "hold",
                id: begin.hold_id,
            })?;
        let key = begin.key.to_owned();
        let request_hash = begin.request_hash.to_vec();
        let token_hash = begin.token_hash.to_vec();
        let order_id = begin.order_id;
        let hold_id = begin.hold_id;
        let authorization = begin.authorization_id;
        let method = begin.payment_method.to_owned();
        let provider = begin.provider.to_owned();
        let window = begin.payment_window.as_secs_f64();
        let opening = self
            .in_movie_transaction(hold_id, movie, |transaction| {
                let (key, request_hash, token_hash, method, provider) = (
                    key.clone(),
                    request_hash.clone(),
                    token_hash.clone(),
                    method.clone(),
                    provider.clone(),
                );
                Box::pin(async move {
                    // One round trip: the key and the hold it is for.
                    let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                        [&key, &movie, &request_hash, &order_id];
                    let hold_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] =
                        [&hold_id];
                    let (fresh, hold) = futures::try_join!(
                        transaction.execute(
                            "insert into idempotency_keys (key, movie_id, request_hash, order_id, state) \
                             values ($1, $2, $3, $4, 'in_flight') on conflict (key) do nothing",
                            &key_params,
                        ),
                        transaction.query_opt(
                            "select h.token_hash, h.status, h.expires_at <= now(), \
                                 s.starts_at <= now(), h.seats, h.currency, h.prices, \
                                 h.customer, h.showtime_id, h.claimants \
                             from holds h join showtimes s on s.id = h.showtime_id \
                             where h.id = $1 for update of h",
                            &hold_params,
                        ),
                    )?;
                    if fresh == 0 {
                        let row = transaction
                            .query_one(
                                "select request_hash, state, response_status, response, order_id \
                                 from idempotency_keys where key = $1",
                                &[&key],
                            )
                            .await?;
                        let stored: Vec<u8> = row.get(0);
                        let state: String = row.get(1);
                        return Ok(Outcome::Rollback(Opening::Begun(if stored != request_hash {
                            Begun::Mismatch
                        } else if state == "done" {
                            let status: i32 = row.get(2);
                            Begun::Replay {
                                status: u16::try_from(status).unwrap_or(500),
                                body: row.get(3),
                            }
                        } else {
                            Begun::InFlight {
                                order_id: row.get(4),
                            }
                        })));
                    }
                    let Some(hold) = hold else {
                        return Ok(Outcome::Rollback(Opening::Refused(Error::NotFound {
                            what: "hold",
                            id: hold_id,
                        })));
                    };
                    let owner: Vec<u8> = hold.get(0);
                    if owner != token_hash {
                        return Ok(Outcome::Rollback(Opening::Refused(Error::Forbidden(format!(
                            "hold {hold_id} belongs to another booking; send the booking token it was created with"
                        )))));
                    }
                    let status: String = hold.get(1);
                    let lapsed: bool = hold.get(2);
                    let started: bool = hold.get(3);
                    let refusal = match status.as_str() {
                        "ordering" => Some(format!("hold {hold_id} is already being paid for under another idempotency key")),
                        "ordered" => Some(format!("hold {hold_id} is already an order")),
                        "released" => Some(format!("hold {hold_id} was released")),
                        _ if lapsed || status == "expired" => Some(format!("hold {hold_id} has expired; its seats are back on sale")),
                        _ if started => Some("the showtime has started; its seats are no longer sold".to_owned()),
                        _ => None,
                    };
                    if let Some(refusal) = refusal {
                        return Ok(Outcome::Rollback(Opening::Refused(Error::Conflict(refusal))));
                    }
                    let seats: Vec<String> = hold.get(4);
                    let currency: String = hold.get(5);
                    let prices: Vec<i64> = hold.get(6);
                    let amount: i64 = prices.iter().sum();
                    let customer: String = hold.get(7);
                    let showtime: Uuid = hold.get(8);
                    let claimants: Vec<String> = hold.get(9);
                    // One round trip for every write; a hold found lapsed
                    // rolls them all back.
                    let seat_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                        [&hold_id, &window];
                    let hold_update_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                        [&hold_id, &window];
                    let order_params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
                        &order_id, &hold_id, &showtime, &movie, &customer, &token_hash, &seats,
                        &amount, &currency, &method, &provider,
                    ];
                    let payment_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                        [&authorization, &order_id, &movie, &amount];
                    let (kept, _, row, _) = futures::try_join!(
                        transaction.execute(
                            "update seat_states set expires_at = greatest(expires_at, now() + make_interval(secs => $2)) \
                             where hold_id = $1 and state = 'held'",
                            &seat_params,
                        ),
                        transaction.execute(
                            "update holds set status = 'ordering', \
                                 expires_at = greatest(expires_at, now() + make_interval(secs => $2)), \
                                 updated_at = now() \
                             where id = $1",
                            &hold_update_params,
                        ),
                        transaction.query_one(
                            "insert into orders (id, hold_id, showtime_id, movie_id, customer, token_hash, \
                                 seats, amount, currency, status, payment_method, provider) \
                             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11) \
                             returning created_at, updated_at",
                            &order_params,
                        ),
                        transaction.execute(
                            "insert into payments (id, order_id, movie_id, kind, amount, status) \
                             values ($1, $2, $3, 'authorization', $4, 'pending')",
                            &payment_params,
                        ),
                    )?;
                    if usize::try_from(kept).unwrap_or(0) != seats.len() {
                        return Ok(Outcome::Rollback(Opening::Refused(Error::Conflict(format!(
                            "hold {hold_id} has expired; its seats are back on sale"
                        )))));
                    }
                    Ok(Outcome::Commit(Opening::Begun(Begun::Started(Box::new(Order {
                        id: order_id,
                        hold_id,
                        showtime_id: showtime,
                        movie_id: movie,
                        customer,
                        token_hash,
                        seats,
                        prices,
                        amount,
                        currency,
                        status: "pending".to_owned(),
                        payment_method: method,
                        provider,
                        payment_ref: None,
                        refunded: 0,
                        failure: None,
                        created_at: row.get(0),
                        confirmed_at: None,
                        updated_at: row.get(1),
                        tickets: Vec::new(),
                        claimants,
                    })))))
                })
            })
            .await;
        match opening? {
            Opening::Begun(begun) => Ok(begun),
            Opening::Refused(error) => Err(error),
        }
    }

    /// The movie a hold belongs to, following the movie if it moved.
    async fn movie_of_hold(&self, id: Uuid) -> Result<Option<Uuid>, Error> {
        for _ in 0..2 {
            let server = self.scoped_primary(id)?;
            let client = server.get().await?;
            let statement = client
                .prepare_cached("select movie_id from holds where id = $1")
                .await
                .map_err(|err| rejected(server, err))?;
            let found = client
                .query_opt(&statement, &[&id])
                .await
                .map_err(|err| rejected(server, err))?
                .map(|row| row.get(0));
            if found.is_some() || !self.refresh_if_stale().await? {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// An order with its tickets.
    pub async fn order(&self, id: Uuid) -> Result<Option<Order>, Error> {
        let server = self.scoped_primary(id)?;
        load_order(&server.get().await?, id, false)
            .await
            .map_err(|err| rejected(server, err))
    }

    /// The order a hold became, if any: the live one, else the latest.
    pub async fn order_of_hold(&self, hold: Uuid) -> Result<Option<Order>, Error> {
        let server = self.scoped_primary(hold)?;
        let client = server.get().await?;
        let id: Option<Uuid> = client
            .query_opt(
                "select id from orders where hold_id = $1 \
                 order by (status <> 'failed') desc, created_at desc limit 1",
                &[&hold],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .map(|row| row.get(0));
        match id {
            Some(id) => load_order(&client, id, false)
                .await
                .map_err(|err| rejected(server, err)),
            None => Ok(None),
        }
    }

    /// Records a provider call about to be made; recording one again under
    /// the same id returns it as it stands.
    pub async fn record_payment(
        &self,
        order: &Order,
        id: Uuid,
        kind: &str,
        amount: i64,
    ) -> Result<Payment, Error> {
        let server = self.scoped_primary(order.id)?;
        let row = server
            .get()
            .await?
            .query_one(
                "insert into payments (id, order_id, movie_id, kind, amount, status) \
                 values ($1, $2, $3, $4, $5, 'pending') \
                 on conflict (id) do update set updated_at = payments.updated_at \
                 returning id, order_id, kind, amount, status, provider_ref",
                &[&id, &order.id, &order.movie_id, &kind, &amount],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(payment_from_row(&row))
    }

    /// Records how a provider call ended. A successful authorization also
    /// becomes the order's payment reference.
    pub async fn settle_payment(
        &self,
        order: &Order,
        payment: Uuid,
        succeeded: bool,
        provider_ref: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        let server = self.scoped_primary(order.id)?;
        let mut client = server.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(server, err))?;
        let status = if succeeded { "succeeded" } else { "failed" };
        let settled = transaction
            .query_opt(
                "update payments p set status = $2, provider_ref = coalesce($3, p.provider_ref), \
                     detail = $4, updated_at = now() \
                 from (select id, status from payments where id = $1 for update) before \
                 where p.id = before.id returning p.kind, p.amount, before.status",
                &[&payment, &status, &provider_ref, &detail],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let kind: Option<String> = settled.as_ref().map(|row| row.get(0));
        // A settlement repeated after a retry tells of the refund once.
        if let Some(row) = settled.as_ref().filter(|row| {
            succeeded
                && row.get::<_, String>(0) == "refund"
                && row.get::<_, String>(2) != "succeeded"
        }) {
            let amount: i64 = row.get(1);
            outbox::record_payload(
                &transaction,
                "payment",
                payment,
                "payment.refunded",
                &serde_json::json!({ "order_id": order.id, "amount_minor": amount }),
            )
            .await
            .map_err(|err| rejected(server, err))?;
        }
        if succeeded && kind.as_deref() == Some("authorization") {
            transaction
                .execute(
                    "update orders set payment_ref = $2, updated_at = now() where id = $1",
                    &[&order.id, &provider_ref],
                )
                .await
                .map_err(|err| rejected(server, err))?;
        }
        transaction
            .commit()
            .await
            .map_err(|err| rejected(server, err))
    }

    /// Sells the hold's seats, issues the tickets and confirms the order, in
    /// one transaction; or says why not, under the order's lock: another
    /// request or instance settled it first, or its seats are no longer
    /// held by its hold.
    pub async fn confirm_order(
        &self,
        order: &Order,
        paid: &Paid,
        tickets: &[NewTicket],
        status: u16,
        body: &Value,
        event: &Value,
    ) -> Result<Confirmation, Error> {
        let (order_id, hold_id, showtime) = (order.id, order.hold_id, order.showtime_id);
        let (authorization, capture, reference) =
            (paid.authorization, paid.capture, paid.reference.clone());
        let fingerprint = paid.fingerprint.clone();
        let amount = order.amount;
        let seats = order.seats.clone();
        let ticket_ids: Vec<Uuid> = tickets.iter().map(|ticket| ticket.id).collect();
        let ticket_seats: Vec<String> = tickets.iter().map(|ticket| ticket.seat.clone()).collect();
        let prices: Vec<i64> = tickets.iter().map(|ticket| ticket.price).collect();
        let codes: Vec<String> = tickets.iter().map(|ticket| ticket.code.clone()).collect();
        let status = i32::from(status);
        let confirmed = self
            .in_movie_transaction(order.id, order.movie_id, |transaction| {
            let (seats, ticket_ids, ticket_seats, prices, codes) = (
                seats.clone(),
                ticket_ids.clone(),
                ticket_seats.clone(),
                prices.clone(),
                codes.clone(),
            );
            let (body, event, reference, fingerprint) =
                (body.clone(), event.clone(), reference.clone(), fingerprint.clone());
            Box::pin(async move {
                // The order, and its seats locked before they are counted,
                // so no buyer can take a seat whose hold lapsed between the
                // count and the sale.
                let order_lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] =
                    [&order_id];
                let seat_lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&hold_id, &seats];
                let (current, still_held) = futures::try_join!(
                    transaction.query_one(
                        "select status from orders where id = $1 for update",
                        &order_lock_params,
                    ),
                    transaction.query_one(
                        "select count(*) from (select 1 from seat_states \
                             where hold_id = $1 and state = 'held' and seat = any($2) for update) x",
                        &seat_lock_params,
                    ),
                )?;
                let current: String = current.get(0);
                if current != "pending" {
                    return Ok(Outcome::Rollback(Err(Some(current))));
                }
                let still_held: i64 = still_held.get(0);
                if usize::try_from(still_held).unwrap_or(0) != seats.len() {
                    return Ok(Outcome::Rollback(Err(None)));
                }
                // Every write in one round trip. The provider calls that paid
                // for the order are settled here rather than each in its own
                // commit: a crash before this point is resolved by looking
                // the payment up.
                let sale_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&hold_id, &order_id, &seats];
                let ticket_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                    [&ticket_ids, &order_id, &showtime, &ticket_seats, &prices, &codes];
                let confirm_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&order_id, &reference, &fingerprint];
                let payment_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&capture, &order_id, &amount, &reference, &authorization];
                let hold_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] =
                    [&hold_id];
                let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&order_id, &status, &body];
                let outbox_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&order_id, &event, &showtime, &capture, &amount];
                let (_, _, confirmed, _, _, _, _) = futures::try_join!(
                    transaction.execute(
                        "update seat_states set state = 'sold', order_id = $2, expires_at = null, \
                             version = version + 1, updated_at = now() \
                         where hold_id = $1 and state = 'held' and seat = any($3)",
                        &sale_params,
                    ),
                    transaction.execute(
                        "insert into tickets (id, order_id, showtime_id, movie_id, seat, price, code, status) \
                         select t.id, $2, $3, o.movie_id, t.seat, t.price, t.code, 'valid' \
                         from unnest($1::uuid[], $4::text[], $5::int8[], $6::text[]) as t (id, seat, price, code) \
                         cross join (select movie_id from orders where id = $2) o",
                        &ticket_params,
                    ),
                    transaction.query_one(
                        "update orders set status = 'confirmed', confirmed_at = now(), \
                             payment_ref = $2, card_fingerprint = $3, updated_at = now() \
                         where id = $1 returning confirmed_at",
                        &confirm_params,
                    ),
                    transaction.execute(
                        "with authorization_paid as ( \
                             update payments set status = 'succeeded', provider_ref = $4, updated_at = now() \
                             where id = $5) \
                         insert into payments (id, order_id, movie_id, kind, amount, status, provider_ref) \
                         select $1, id, movie_id, 'capture', $3, 'succeeded', $4 from orders where id = $2 \
                         on conflict (id) do update set status = 'succeeded', updated_at = now()",
                        &payment_params,
                    ),
                    transaction.execute(
                        "update holds set status = 'ordered', updated_at = now() where id = $1",
                        &hold_params,
                    ),
                    transaction.execute(
                        "update idempotency_keys set state = 'done', response_status = $2, \
                             response = $3, updated_at = now() \
                         where order_id = $1",
                        &key_params,
                    ),
                    transaction.execute(
                        "insert into outbox (aggregate, aggregate_id, event, payload) \
                         values ('order', $1, 'order.confirmed', $2), \
                                ('showtime', $3, 'seats.sold', '{}'), \
                                ('payment', $4, 'payment.captured', \
                                 jsonb_build_object('order_id', $1::uuid, 'amount_minor', $5::bigint))",
                        &outbox_params,
                    ),
                )?;
                let confirmed_at: DateTime<Utc> = confirmed.get(0);
                Ok(Outcome::Commit(Ok(confirmed_at)))
            })
        })
            .await?;
        Ok(match confirmed {
            Ok(confirmed_at) => {
                let mut confirmed = order.clone();
                confirmed.status = "confirmed".to_owned();
                confirmed.confirmed_at = Some(confirmed_at);
                confirmed.payment_ref = Some(paid.reference.clone());
                confirmed.tickets = tickets.iter().map(Ticket::from).collect();
                Confirmation::Confirmed(Box::new(confirmed))
            }
            Err(Some(status)) => Confirmation::Settled(status),
            Err(None) => Confirmation::SeatsLost,
        })
    }

    /// Closes a pending order as failed and hands its hold back to the
    /// customer, who may pay again while it lasts.
    pub async fn fail_order(
        &self,
        order: &Order,
        reason: &str,
        key: &KeyOutcome,
    ) -> Result<Option<Order>, Error> {
        let (order_id, hold_id) = (order.id, order.hold_id);
        let reason = reason.to_owned();
        let key = key.clone();
        self.in_movie_transaction(order.id, order.movie_id, |transaction| {
            let (reason, key) = (reason.clone(), key.clone());
            Box::pin(async move {
                let failed = transaction
                    .execute(
                        "update orders set status = 'failed', failure = $2, updated_at = now() \
                         where id = $1 and status = 'pending'",
                        &[&order_id, &reason],
                    )
                    .await?;
                if failed == 0 {
                    return Ok(Outcome::Rollback(None));
                }
                transaction
                    .execute(
                        "update holds set status = 'active', updated_at = now() \
                         where id = $1 and status = 'ordering'",
                        &[&hold_id],
                    )
                    .await?;
                match &key {
                    KeyOutcome::Done { status, body } => {
                        transaction
                            .execute(
                                "update idempotency_keys set state = 'done', response_status = $2, \
                                     response = $3, updated_at = now() \
                                 where order_id = $1",
                                &[&order_id, &i32::from(*status), body],
                            )
                            .await?;
                    }
                    KeyOutcome::Forget => {
                        transaction
                            .execute(
                                "delete from idempotency_keys where order_id = $1",
                                &[&order_id],
                            )
                            .await?;
                    }
                }
                load_order(transaction, order_id, false)
                    .await
                    .map(Outcome::Commit)
            })
        })
        .await
    }

    /// Cancels tickets of a confirmed order: their seats go back on sale and
    /// a refund payment is recorded for the provider to carry out.
    pub async fn cancel_order(&self, cancellation: &Cancellation<'_>) -> Result<Cancelled, Error> {
        let order = cancellation.order;
        if order.status != "confirmed" {
            return Err(Error::Conflict(format!(
                "order {} is {}; only a confirmed order can be cancelled",
                order.id, order.status
            )));
        }
        let valid: Vec<&Ticket> = order
            .tickets
            .iter()
            .filter(|ticket| ticket.status == "valid")
            .collect();
        let chosen: Vec<&Ticket> = match cancellation.seats {
            None => valid.clone(),
            Some(seats) => {
                let problems: Vec<(String, String)> = seats
                    .iter()
                    .enumerate()
                    .filter(|(_, seat)| !valid.iter().any(|ticket| &&ticket.seat == seat))
                    .map(|(i, seat)| {
                        (
                            format!("seats[{i}]"),
                            format!("{seat} is not a valid ticket of this order"),
                        )
                    })
                    .collect();
                if !problems.is_empty() {
                    return Err(Error::Invalid {
                        detail: "some seats cannot be cancelled".to_owned(),
                        fields: problems,
                    });
                }
                valid
                    .iter()
                    .copied()
                    .filter(|ticket| seats.contains(&ticket.seat))
                    .collect()
            }
        };
        let ids: Vec<Uuid> = chosen.iter().map(|ticket| ticket.id).collect();
        let seats: Vec<String> = chosen.iter().map(|ticket| ticket.seat.clone()).collect();
        let refunds: Vec<i64> = chosen
            .iter()
            .map(|ticket| ticket.price * i64::from(cancellation.refund_percent) / 100)
            .collect();
        let total: i64 = refunds.iter().sum();
        let (order_id, showtime, refund_id) = (order.id, order.showtime_id, cancellation.refund_id);
        let by_staff = cancellation.by_staff;
        let reason = if by_staff {
            "cancelled by staff"
        } else {
            "cancelled by the customer"
        };
        let payload = serde_json::json!({
            "order_id": order.id,
            "customer": order.customer,
            "showtime_id": order.showtime_id,
            "seats": seats,
            "refund": total,
            "currency": order.currency,
        });
        let refund = self
            .in_movie_transaction(order.id, order.movie_id, |transaction| {
                let (ids, seats, refunds, payload) =
                    (ids.clone(), seats.clone(), refunds.clone(), payload.clone());
                Box::pin(async move {
                    transaction
                        .query_one(
                            "select 1 from orders where id = $1 for update",
                            &[&order_id],
                        )
                        .await?;
                    let still_valid: i64 = transaction
                        .query_one(
                            "select count(*) from tickets where order_id = $1 and id = any($2) \
                                 and status = 'valid'",
                            &[&order_id, &ids],
                        )
                        .await?
                        .get(0);
                    if usize::try_from(still_valid).unwrap_or(0) != ids.len() {
                        return Ok(Outcome::Rollback(Err(Refusal::Changed)));
                    }
                    if !by_staff {
                        let admitted = transaction
                            .query_opt(
                                "select seat, admitted_at from admissions where ticket_id = any($1) \
                                 order by admitted_at limit 1",
                                &[&ids],
                            )
                            .await?;
                        if let Some(admitted) = admitted {
                            return Ok(Outcome::Rollback(Err(Refusal::Admitted(
                                admitted.get(0),
                                admitted.get(1),
                            ))));
                        }
                    }
                    transaction
                        .execute(
                            "update tickets t set status = 'cancelled', refunded = r.refund \
                             from unnest($2::uuid[], $3::int8[]) as r (id, refund) \
                             where t.id = r.id and t.order_id = $1",
                            &[&order_id, &ids, &refunds],
                        )
                        .await?;
                    transaction
                        .execute(
                            "delete from seat_states where showtime_id = $1 and order_id = $2 \
                                 and state = 'sold' and seat = any($3)",
                            &[&showtime, &order_id, &seats],
                        )
                        .await?;
                    transaction
                        .execute(
                            "update orders set refunded = refunded + $2, updated_at = now(), \
                                 status = case when exists (select 1 from tickets \
                                     where order_id = $1 and status = 'valid') \
                                     then status else 'cancelled' end \
                             where id = $1",
                            &[&order_id, &total],
                        )
                        .await?;
                    let refund = if total > 0 {
                        let row = transaction
                            .query_one(
                                "insert into payments (id, order_id, movie_id, kind, amount, status) \
                                 select $1, id, movie_id, 'refund', $2, 'pending' from orders where id = $3 \
                                 returning id, order_id, kind, amount, status, provider_ref",
                                &[&refund_id, &total, &order_id],
                            )
                            .await?;
                        Some(payment_from_row(&row))
                    } else {
                        None
                    };
                    crate::door::revoke(transaction, showtime, &ids, reason).await?;
                    outbox::record_payload(transaction, "order", order_id, "order.cancelled", &payload)
                        .await?;
                    outbox::record(transaction, "showtime", showtime, "seats.released").await?;
                    Ok(Outcome::Commit(Ok(refund)))
                })
            })
            .await?
            .map_err(|refusal| match refusal {
                Refusal::Changed => Error::Conflict(format!(
                    "order {order_id} changed while it was being cancelled; look at it again"
                )),
                Refusal::Admitted(seat, at) => Error::Conflict(format!(
                    "the ticket for {seat} was admitted at the door at {}; ask the cinema's staff \
                     to cancel it",
                    at.format("%Y-%m-%d %H:%M UTC")
                )),
            })?;
        let order = self.order(order_id).await?.ok_or(Error::NotFound {
            what: "order",
            id: order_id,
        })?;
        Ok(Cancelled {
            order,
            seats,
            refund,
        })
    }

    /// Seats of a showtime the card with `fingerprint` has paid for, in
    /// confirmed orders.
    pub async fn card_seats(&self, showtime: Uuid, fingerprint: &str) -> Result<usize, Error> {
        let server = self.scoped_primary(showtime)?;
        let client = server.get().await?;
        let statement = client
            .prepare_cached(
                "select count(*) from tickets t join orders o on o.id = t.order_id \
                 where o.showtime_id = $1 and o.card_fingerprint = $2 \
                     and o.status = 'confirmed' and t.status = 'valid'",
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let used: i64 = client
            .query_one(&statement, &[&showtime, &fingerprint])
            .await
            .map_err(|err| rejected(server, err))?
            .get(0);
        Ok(usize::try_from(used).unwrap_or(usize::MAX))
    }

    /// Claims pending orders older than `age` on every node (requests that
    /// crashed or hung between payment and confirmation) for `owner` until
    /// `lease` from now. An order claimed by another instance whose lease
    /// has not run out is skipped, so one instance settles each at a time,
    /// and one that crashed mid-way is taken over after its lease.
    pub async fn claim_stale_orders(
        &self,
        owner: Uuid,
        age: std::time::Duration,
        lease: std::time::Duration,
    ) -> Result<Vec<Order>, Error> {
        let (age, lease) = (age.as_secs_f64(), lease.as_secs_f64());
        let mut orders = Vec::new();
        for shard in self.cluster().shards() {
            let server = &shard.primary;
            let client = server.get().await?;
            let ids = client
                .query(
                    "update orders set recovery_owner = $1, \
                         recovery_until = now() + make_interval(secs => $3) \
                     where id in (select id from orders where status = 'pending' \
                             and updated_at < now() - make_interval(secs => $2) \
                             and (recovery_until is null or recovery_until < now()) \
                         order by updated_at limit 100 for update skip locked) \
                     returning id",
                    &[&owner, &age, &lease],
                )
                .await
                .map_err(|err| rejected(server, err))?;
            for row in ids {
                if let Some(order) = load_order(&client, row.get(0), false)
                    .await
                    .map_err(|err| rejected(server, err))?
                {
                    orders.push(order);
                }
            }
        }
        Ok(orders)
    }

    /// Refunds recorded but not yet confirmed by the provider, older than
    /// `age`, with their orders.
    pub async fn pending_refunds(
        &self,
        age: std::time::Duration,
    ) -> Result<Vec<(Payment, Order)>, Error> {
        let seconds = age.as_secs_f64();
        let mut found = Vec::new();
        for shard in self.cluster().shards() {
            let server = &shard.primary;
            let client = server.get().await?;
            let rows = client
                .query(
                    "select id, order_id, kind, amount, status, provider_ref from payments \
                     where status = 'pending' and kind = 'refund' \
                         and updated_at < now() - make_interval(secs => $1) \
                     order by created_at limit 100",
                    &[&seconds],
                )
                .await
                .map_err(|err| rejected(server, err))?;
            for row in &rows {
                let payment = payment_from_row(row);
                if let Some(order) = load_order(&client, payment.order_id, false)
                    .await
                    .map_err(|err| rejected(server, err))?
                {
                    found.push((payment, order));
                }
            }
        }
        Ok(found)
    }

    /// The payments recorded for an order, oldest first.
    pub async fn payments(&self, order: Uuid) -> Result<Vec<Payment>, Error> {
        let server = self.scoped_primary(order)?;
        Ok(server
            .get()
            .await?
            .query(
                "select id, order_id, kind, amount, status, provider_ref from payments \
                 where order_id = $1 order by created_at, id",
                &[&order],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .iter()
            .map(payment_from_row)
            .collect())
    }
}
