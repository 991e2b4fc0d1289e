//! Ticket codes: the QR payload on each ticket, signed by the server with
//! Ed25519 so door scanners verify it offline with the public key and a
//! forged or altered code is refused.
//!
//! A code is `MQT1.<payload>.<signature>`, both parts base64url without
//! padding; the payload is compact JSON naming the ticket, order, showtime
//! and seat.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const PREFIX: &str = "MQT1";

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

/// Signs and verifies ticket codes.
pub struct TicketSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl TicketSigner {
    /// The key is derived from the configured secret, so every instance
    /// signs with the same key.
    pub fn from_secret(secret: &str) -> Self {
        let seed = digest::digest(&digest::SHA256, secret.as_bytes());
        let key = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .unwrap_or_else(|err| unreachable!("a 32-byte seed is a valid Ed25519 seed: {err}"));
        Self { key }
    }

    /// The public key scanners verify with, base64url.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    pub fn sign(&self, claims: &TicketClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(claims)
                .unwrap_or_else(|err| unreachable!("claims serialise: {err}")),
        );
        let signed = format!("{PREFIX}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{signature}")
    }

    /// The claims of a genuine code; `None` for anything forged, altered or
    /// malformed.
    pub fn verify(&self, code: &str) -> Option<TicketClaims> {
        verify_with(&self.public_key(), code)
    }
}

/// Verifies a code with a public key alone, as a scanner does.
pub fn verify_with(public_key: &str, code: &str) -> Option<TicketClaims> {
    let key = URL_SAFE_NO_PAD.decode(public_key).ok()?;
    let (signed, signature) = code.rsplit_once('.')?;
    let (prefix, payload) = signed.split_once('.')?;
    if prefix != PREFIX {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(signed.as_bytes(), &signature)
        .ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TicketClaims {
        TicketClaims {
            ticket: Uuid::new_v4(),
            order: Uuid::new_v4(),
            showtime: Uuid::new_v4(),
            seat: "F-12".to_owned(),
        }
    }

    #[test]
    fn a_signed_code_verifies_with_the_public_key_alone() {
        let signer = TicketSigner::from_secret("secret");
        let claims = claims();
        let code = signer.sign(&claims);
        assert_eq!(verify_with(&signer.public_key(), &code), Some(claims));
    }

    #[test]
    fn an_altered_code_or_another_key_is_refused() {
        let signer = TicketSigner::from_secret("secret");
        let code = signer.sign(&claims());
        let mut other = claims();
        other.seat = "A-1".to_owned();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap_or_default());
        let parts: Vec<&str> = code.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(TicketSigner::from_secret("another").verify(&code), None);
        assert_eq!(signer.verify("MQT1.not-a-code"), None);
    }
}
