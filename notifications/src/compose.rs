//! The messages a booking event becomes: what the customer reads, the QR
//! image of each ticket and the calendar entry.

use chrono::{DateTime, Utc};
use marquee_notify::ticket::{self, CalendarEvent};
use marquee_notify::{Attachment, Mail};
use marquee_storage::movies::Movie;
use marquee_storage::orders::Order;
use marquee_storage::showtimes::Showtime;
use marquee_storage::theaters::Theater;

use crate::Error;

/// Everything a booking notice names.
#[derive(Debug, Clone)]
pub struct Booking<'a> {
    pub to: &'a str,
    pub order: &'a Order,
    pub showtime: &'a Showtime,
    pub movie: &'a Movie,
    pub theater: &'a Theater,
}

impl Booking<'_> {
    /// When the showtime starts, in the theater's own time zone: what the
    /// customer sees on the door and the clock.
    fn local_start(&self) -> String {
        let starts = self.showtime.schedule.starts_at;
        match self.theater.info.timezone.parse::<chrono_tz::Tz>() {
            Ok(zone) => starts
                .with_timezone(&zone)
                .format("%A %-d %B %Y, %H:%M")
                .to_string(),
            Err(_) => starts.format("%A %-d %B %Y, %H:%M UTC").to_string(),
        }
    }

    fn place(&self) -> String {
        let info = &self.theater.info;
        format!("{}, {}, {}", info.name, info.street, info.city)
    }

    fn calendar(&self, status: &'static str, now: DateTime<Utc>) -> Attachment {
        let event = CalendarEvent {
            uid: format!("{}@marquee", self.order.id),
            summary: format!("{} at {}", self.movie.title, self.theater.info.name),
            description: format!(
                "Seats {}. Order {}.",
                self.order.seats.join(", "),
                self.order.id
            ),
            location: self.place(),
            starts_at: self.showtime.schedule.starts_at,
            ends_at: self.showtime.schedule.ends_at,
            stamped_at: now,
            status,
        };
        let method = if status == "CANCELLED" {
            "CANCEL"
        } else {
            "PUBLISH"
        };
        Attachment {
            filename: "showtime.ics".to_owned(),
            content_type: format!("text/calendar; charset=utf-8; method={method}"),
            content: ticket::calendar(&event).into_bytes(),
        }
    }
}

/// Minor units as an amount with its currency, e.g. `24.00 USD`.
fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

/// The confirmation of a paid booking: one QR image per ticket, named by
/// seat, and the showtime for the customer's calendar.
pub fn confirmation(booking: &Booking<'_>, now: DateTime<Utc>) -> Result<Mail, Error> {
    let order = booking.order;
    let schedule = &booking.showtime.schedule;
    let mut attachments = Vec::with_capacity(order.tickets.len() + 1);
    for ticket in &order.tickets {
        attachments.push(Attachment {
            filename: format!("ticket-{}.png", ticket.seat),
            content_type: "image/png".to_owned(),
            content: ticket::qr_png(&ticket.code)?,
        });
    }
    attachments.push(booking.calendar("CONFIRMED", now));
    Ok(Mail {
        to: booking.to.to_owned(),
        subject: format!(
            "Your tickets: {}, {}",
            booking.movie.title,
            booking.local_start()
        ),
        text: format!(
            "Hello,\n\nYour booking is confirmed.\n\n\
             {title} ({format}, {language})\n\
             {start}\n\
             {place}\n\n\
             Seats: {seats}\n\
             Paid: {paid}\n\
             Order: {order}\n\n\
             Each ticket's code is attached as a QR image named after its seat; \
             show it at the door, on paper or on your phone. The attached calendar \
             file adds the showtime to your calendar.\n\n\
             You can cancel from your booking until shortly before the showtime; \
             the refund follows the cancellation policy shown when you booked.\n",
            title = booking.movie.title,
            format = schedule.format.to_uppercase(),
            language = schedule.language,
            start = booking.local_start(),
            place = booking.place(),
            seats = order.seats.join(", "),
            paid = money(order.amount, &order.currency),
            order = order.id,
        ),
        attachments,
    })
}

/// The notice of a cancellation and its refund. When nothing of the order
/// is left, the calendar entry is withdrawn too.
pub fn cancellation(
    booking: &Booking<'_>,
    seats: &[String],
    refund: i64,
    now: DateTime<Utc>,
) -> Mail {
    let order = booking.order;
    let whole = order.status == "cancelled";
    let refund_line = if refund > 0 {
        format!(
            "{} is refunded to the payment method you used; your bank may take a few days to show it.",
            money(refund, &order.currency)
        )
    } else {
        "No refund is due under the cancellation policy.".to_owned()
    };
    Mail {
        to: booking.to.to_owned(),
        subject: format!(
            "Cancelled: {}, {}",
            booking.movie.title,
            booking.local_start()
        ),
        text: format!(
            "Hello,\n\n{what} for {title} on {start} at {place} {verb} cancelled.\n\n\
             Cancelled seats: {seats}\n\
             {refund_line}\n\
             Order: {order}\n",
            what = if whole {
                "Your booking"
            } else {
                "Part of your booking"
            },
            verb = if whole { "is" } else { "was" },
            title = booking.movie.title,
            start = booking.local_start(),
            place = booking.place(),
            seats = seats.join(", "),
            order = order.id,
        ),
        attachments: if whole {
            vec![booking.calendar("CANCELLED", now)]
        } else {
            Vec::new()
        },
    }
}

/// The in-app notice of a booking event: its kind, title and body.
pub fn notice(
    booking: &Booking<'_>,
    event: &str,
    payload: &serde_json::Value,
) -> (&'static str, String, String) {
    let order = booking.order;
    if event == "order.cancelled" {
        let seats: Vec<&str> = payload
            .get("seats")
            .and_then(serde_json::Value::as_array)
            .map(|seats| seats.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        let refund = payload
            .get("refund")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        return (
            "booking.cancelled",
            format!("Cancelled: {}", booking.movie.title),
            format!(
                "Seats {} on {} at {} are cancelled; {} refunded.",
                seats.join(", "),
                booking.local_start(),
                booking.theater.info.name,
                money(refund, &order.currency)
            ),
        );
    }
    (
        "booking.confirmed",
        format!("Booked: {}", booking.movie.title),
        format!(
            "{} at {}, seats {}. Your tickets are in your booking and your mail.",
            booking.local_start(),
            booking.theater.info.name,
            order.seats.join(", ")
        ),
    )
}

/// An alert a subscription raised, as a plain mail.
pub fn alert_mail(to: &str, title: &str, body: &str) -> Mail {
    Mail {
        to: to.to_owned(),
        subject: title.to_owned(),
        text: format!(
            "{body}\n\nYou get this because you subscribed to it in Marquee. \
             Manage your subscriptions and channels in your account.\n"
        ),
        ..Mail::default()
    }
}
