//! Outgoing mail. Account messages (verification, password reset, security
//! notices) and booking notices leave through one SMTP relay; locally that
//! relay is the sink `scripts/cluster` runs, which files every message in a
//! Maildir. [`ticket`] makes what a confirmation attaches.

pub mod ticket;

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment as Part, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

/// How the relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP, for a relay on loopback only.
    None,
    /// STARTTLS, required: the connection fails rather than fall back to
    /// plain text.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: SmtpSecurity,
    /// The sender every message carries, e.g. `Marquee <no-reply@example.com>`.
    pub from: String,
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mail settings are invalid: {0}")]
    Settings(String),
    #[error("{0} is not a valid mail address")]
    Address(String),
    #[error("the message could not be built: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("an attachment could not be made: {0}")]
    Attachment(String),
    #[error("the mail relay refused or failed: {0}")]
    Send(#[from] lettre::transport::smtp::Error),
}

/// One message to one person.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub attachments: Vec<Attachment>,
}

/// A file sent with a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type, e.g. `image/png` or `text/calendar; method=PUBLISH`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// Sends mail through the configured relay; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Self, Error> {
        let from: Mailbox = settings.from.parse().map_err(|_| {
            Error::Settings(format!("mail.from {:?} is not a mailbox", settings.from))
        })?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).map_err(|err| Error::Settings(err.to_string()))
        };
        let security = match settings.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(tls(&settings.smtp_host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls(&settings.smtp_host)?),
        };
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.smtp_host.as_str())
                .port(settings.smtp_port)
                .tls(security)
                .timeout(Some(Duration::from_millis(settings.timeout_ms)))
                .build();
        Ok(Self { transport, from })
    }

    pub async fn send(&self, mail: &Mail) -> Result<(), Error> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| Error::Address(mail.to.clone()))?;
        // 8-bit text keeps links and tokens whole on one line, where
        // quoted-printable would break and escape them; lettre falls back
        // to an encoding that fits when a line is too long for 8-bit.
        let body = Body::new_with_encoding(mail.text.clone(), ContentTransferEncoding::EightBit)
            .unwrap_or_else(Body::new);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str());
        let message = if mail.attachments.is_empty() {
            builder.header(ContentType::TEXT_PLAIN).body(body)?
        } else {
            let text = SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body);
            let mut parts = MultiPart::mixed().singlepart(text);
            for attachment in &mail.attachments {
                let content_type = ContentType::parse(&attachment.content_type).map_err(|_| {
                    Error::Attachment(format!("{:?} is not a MIME type", attachment.content_type))
                })?;
                parts = parts.singlepart(
                    Part::new(attachment.filename.clone())
                        .body(attachment.content.clone(), content_type),
                );
            }
            builder.multipart(parts)?
        };
        self.transport.send(message).await?;
        Ok(())
    }

    /// Sends in the background: account flows answer at once and a slow
    /// relay never holds a request open. A failure is logged with the
    /// subject, never the body, which may carry a one-time link.
    pub fn send_later(&self, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=3u32 {
                match mailer.send(&mail).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, subject = %mail.subject, attempt, "mail not sent");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                }
            }
        });
    }
}
