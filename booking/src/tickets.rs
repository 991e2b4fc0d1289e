//! Ticket codes: the QR payload on each ticket, signed by the server with
//! Ed25519 so door scanners verify it offline with the public keys and a
//! forged or altered code is refused.
//!
//! A code is `MQT2.<kid>.<payload>.<signature>`: `kid` names the signing
//! key, `payload` is compact JSON naming the ticket, order, showtime and
//! seat, and the signature covers everything before it; payload and
//! signature are base64url without padding.
//!
//! Keys rotate: the newest key signs, and keys it replaced keep verifying
//! until the time the operator gave them, which is at least the end of the
//! last showtime they signed tickets for. The same keys sign the revocation
//! lists offline scanners download.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const PREFIX: &str = "MQT2";
/// Longest code accepted; real codes are about 300 bytes.
const MAX_CODE_LEN: usize = 1024;

/// What a ticket code says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    #[serde(rename = "t")]
    pub ticket: Uuid,
    #[serde(rename = "o")]
    pub order: Uuid,
    #[serde(rename = "s")]
    pub showtime: Uuid,
    pub seat: String,
}

/// Why a code was refused. Scanners tell a forgery apart from a code
/// signed by a key that has been retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a ticket code: it is truncated, altered or from elsewhere")]
    Malformed,
    #[error("signed by a key this service does not know")]
    UnknownKey,
    #[error("signed by a key that stopped verifying codes")]
    RetiredKey,
    #[error("its signature does not match: it was forged or altered")]
    Forged,
}

/// A key that signed tickets before the last rotation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    pub secret: String,
    /// Until when its codes verify: the end of the last showtime it
    /// signed tickets for, or later.
    pub verify_until: DateTime<Utc>,
}

/// A public key as scanners download it (a JSON Web Key of type OKP).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    pub kid: String,
    /// The raw Ed25519 public key, base64url.
    pub x: String,
    /// Whether it signs new tickets, or only verifies old ones.
    pub current: bool,
    /// When it stops verifying; `None` for the current key.
    pub verify_until: Option<DateTime<Utc>>,
}

struct Key {
    id: String,
    pair: Ed25519KeyPair,
    verify_until: Option<DateTime<Utc>>,
}

impl Key {
    /// The key is derived from a configured secret, so every instance signs
    /// with the same key; its id is derived from the public key.
    fn from_secret(secret: &str, verify_until: Option<DateTime<Utc>>) -> Self {
        let seed = digest::digest(&digest::SHA256, secret.as_bytes());
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .unwrap_or_else(|err| unreachable!("a 32-byte seed is a valid Ed25519 seed: {err}"));
        let id = key_id(pair.public_key().as_ref());
        Self {
            id,
            pair,
            verify_until,
        }
    }

    fn public(&self) -> PublicKey {
        PublicKey {
            kid: self.id.clone(),
            x: URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            current: self.verify_until.is_none(),
            verify_until: self.verify_until,
        }
    }
}

/// The first eight bytes of the public key's SHA-256, in hex.
fn key_id(public_key: &[u8]) -> String {
    digest::digest(&digest::SHA256, public_key).as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Signs and verifies ticket codes and revocation lists.
pub struct TicketSigner {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|key| &key.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TicketSigner {
    pub fn new(current: &str, previous: &[PreviousKey]) -> Self {
        Self {
            current: Key::from_secret(current, None),
            previous: previous
                .iter()
                .map(|key| Key::from_secret(&key.secret, Some(key.verify_until)))
                .collect(),
        }
    }

    /// The id of the key that signs new codes.
    pub fn current_kid(&self) -> &str {
        &self.current.id
    }

    /// Every key that verifies codes at `now`, the current one first.
    pub fn key_set(&self, now: DateTime<Utc>) -> Vec<PublicKey> {
        std::iter::once(&self.current)
            .chain(
                self.previous
                    .iter()
                    .filter(|key| key.verify_until.is_some_and(|until| until > now)),
            )
            .map(Key::public)
            .collect()
    }

    pub fn sign(&self, claims: &TicketClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(claims)
                .unwrap_or_else(|err| unreachable!("claims serialise: {err}")),
        );
        let signed = format!("{PREFIX}.{}.{payload}", self.current.id);
        let signature = URL_SAFE_NO_PAD.encode(self.current.pair.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{signature}")
    }

    /// The claims of a genuine code signed by a key that verifies at `now`.
    pub fn verify(&self, code: &str, now: DateTime<Utc>) -> Result<TicketClaims, CodeError> {
        match verify_with(&self.key_set(now), code) {
            Err(CodeError::UnknownKey)
                if code
                    .split('.')
                    .nth(1)
                    .is_some_and(|kid| self.previous.iter().any(|key| key.id == kid)) =>
            {
                Err(CodeError::RetiredKey)
            }
            verified => verified,
        }
    }

    /// Signs `document` with the current key, for a scanner to verify with
    /// the key set: the key's id and the signature, base64url.
    pub fn sign_document(&self, document: &[u8]) -> (String, String) {
        (
            self.current.id.clone(),
            URL_SAFE_NO_PAD.encode(self.current.pair.sign(document).as_ref()),
        )
    }
}

/// Verifies a code with downloaded public keys alone, as a scanner does.
pub fn verify_with(keys: &[PublicKey], code: &str) -> Result<TicketClaims, CodeError> {
    if code.len() > MAX_CODE_LEN {
        return Err(CodeError::Malformed);
    }
    let (signed, signature) = code.rsplit_once('.').ok_or(CodeError::Malformed)?;
    let mut parts = signed.splitn(3, '.');
    let (Some(PREFIX), Some(kid), Some(payload)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(CodeError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| CodeError::Malformed)?;
    let key = keys
        .iter()
        .find(|key| key.kid == kid)
        .ok_or(CodeError::UnknownKey)?;
    let public = URL_SAFE_NO_PAD
        .decode(&key.x)
        .map_err(|_| CodeError::UnknownKey)?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| CodeError::Forged)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| CodeError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| CodeError::Malformed)
}

/// Checks a document's signature with the key set, as a scanner checks a
/// revocation list.
pub fn verify_document(keys: &[PublicKey], kid: &str, document: &[u8], signature: &str) -> bool {
    let Some(key) = keys.iter().find(|key| key.kid == kid) else {
        return false;
    };
    let (Ok(public), Ok(signature)) = (
        URL_SAFE_NO_PAD.decode(&key.x),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(document, &signature)
        .is_ok()
}

/// Whether a secret is the key the crate used to ship as a default: it is
/// public, so codes signed with it prove nothing.
pub fn is_public_default(secret: &str) -> bool {
    secret == "marquee-local-ticket-signing-secret"
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn claims() -> TicketClaims {
        TicketClaims {
            ticket: Uuid::new_v4(),
            order: Uuid::new_v4(),
            showtime: Uuid::new_v4(),
            seat: "F-12".to_owned(),
        }
    }

    #[test]
    fn a_signed_code_verifies_with_the_public_keys_alone() {
        let signer = TicketSigner::new("secret", &[]);
        let claims = claims();
        let code = signer.sign(&claims);
        assert!(code.starts_with(&format!("MQT2.{}.", signer.current_kid())));
        assert_eq!(verify_with(&signer.key_set(Utc::now()), &code), Ok(claims));
    }

    #[test]
    fn an_altered_code_or_another_key_is_refused() {
        let signer = TicketSigner::new("secret", &[]);
        let code = signer.sign(&claims());
        let mut other = claims();
        other.seat = "A-1".to_owned();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap_or_default());
        let parts: Vec<&str> = code.split('.').collect();
        let forged = format!("{}.{}.{}.{}", parts[0], parts[1], forged_payload, parts[3]);
        let now = Utc::now();
        assert_eq!(signer.verify(&forged, now), Err(CodeError::Forged));
        assert_eq!(
            TicketSigner::new("another", &[]).verify(&code, now),
            Err(CodeError::UnknownKey)
        );
        assert_eq!(
            signer.verify("MQT2.not-a-code", now),
            Err(CodeError::Malformed)
        );
        assert_eq!(
            signer.verify(&code[..code.len() - 10], now),
            Err(CodeError::Forged)
        );
        assert_eq!(
            signer.verify(&"x".repeat(2000), now),
            Err(CodeError::Malformed)
        );
    }

    #[test]
    fn codes_of_a_rotated_key_verify_until_its_date_and_new_codes_use_the_new_key() {
        let now = Utc::now();
        let old = TicketSigner::new("old secret", &[]);
        let old_code = old.sign(&claims());
        let rotated = TicketSigner::new(
            "new secret",
            &[PreviousKey {
                secret: "old secret".to_owned(),
                verify_until: now + Duration::days(1),
            }],
        );
        assert!(rotated.verify(&old_code, now).is_ok());
        assert_eq!(
            rotated.verify(&old_code, now + Duration::days(2)),
            Err(CodeError::RetiredKey)
        );
        let new_code = rotated.sign(&claims());
        assert!(new_code.contains(rotated.current_kid()));
        assert_ne!(rotated.current_kid(), old.current_kid());
        let keys = rotated.key_set(now);
        assert_eq!(keys.len(), 2);
        assert!(keys[0].current && !keys[1].current);
        assert_eq!(rotated.key_set(now + Duration::days(2)).len(), 1);
    }

    #[test]
    fn a_signed_document_verifies_with_the_key_set_and_not_once_changed() {
        let signer = TicketSigner::new("secret", &[]);
        let (kid, signature) = signer.sign_document(b"MQR1.list");
        let keys = signer.key_set(Utc::now());
        assert!(verify_document(&keys, &kid, b"MQR1.list", &signature));
        assert!(!verify_document(&keys, &kid, b"MQR1.lisT", &signature));
        assert!(!verify_document(&keys, "unknown", b"MQR1.list", &signature));
    }
}
