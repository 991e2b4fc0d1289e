//! Short-lived access tokens, signed with HMAC-SHA256 and checked on every
//! authenticated request.
//!
//! A token reads `mqa1.<kid>.<payload>.<tag>`: `kid` names the signing key,
//! `payload` is the JSON claims and `tag` the MAC over everything before the
//! last dot, both in unpadded base64url.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

const PREFIX: &str = "mqa1.";
/// Longest token accepted; real tokens are about 250 bytes.
const MAX_TOKEN_LEN: usize = 1024;
const MAX_KID_LEN: usize = 32;
const MIN_KEY_LEN: usize = 32;
const TAG_LEN: usize = 32;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Books tickets for themselves.
    Customer,
    /// Staff who help customers with their bookings.
    Support,
    /// Staff who run the platform.
    Admin,
    /// Door staff: they admit tickets and read the lists of voided ones,
    /// and nothing else.
    Scanner,
}

impl Role {
    /// The lowercase name used in tokens and storage.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Support => "support",
            Self::Admin => "admin",
            Self::Scanner => "scanner",
        }
    }

    /// Whether the role belongs to Marquee staff who work on customers'
    /// bookings and the catalogue.
    #[must_use]
    pub const fn is_staff(self) -> bool {
        matches!(self, Self::Support | Self::Admin)
    }

    /// Whether the role may admit tickets at the door.
    #[must_use]
    pub const fn admits_tickets(self) -> bool {
        matches!(self, Self::Scanner | Self::Support | Self::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Self::Customer),
            "support" => Ok(Self::Support),
            "admin" => Ok(Self::Admin),
            "scanner" => Ok(Self::Scanner),
            other => Err(Error::UnknownRole(other.to_owned())),
        }
    }
}

/// What an access token asserts. Times are unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The signed-in user.
    #[serde(rename = "sub")]
    pub user: Uuid,
    /// The session the token was issued for, so that revoking the session
    /// stops refreshes.
    #[serde(rename = "sid")]
    pub session: Uuid,
    /// The user's role when the token was issued.
    #[serde(rename = "rol")]
    pub role: Role,
    /// Whether the sign-in passed a second factor.
    pub mfa: bool,
    /// When the token was issued.
    #[serde(rename = "iat")]
    pub issued_at: i64,
    /// First second at which the token is no longer valid.
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl Claims {
    fn to_json(self) -> String {
        // Every field is a UUID, a fixed name, a bool or an integer, none of
        // which needs escaping, so formatting directly cannot fail where a
        // serializer would return a `Result`.
        format!(
            r#"{{"sub":"{}","sid":"{}","rol":"{}","mfa":{},"iat":{},"exp":{}}}"#,
            self.user,
            self.session,
            self.role.as_str(),
            self.mfa,
            self.issued_at,
            self.expires_at
        )
    }
}

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not shaped like an access token.
    #[error("the access token is malformed")]
    Malformed,
    /// The MAC does not match.
    #[error("the access token signature is invalid")]
    BadSignature,
    /// Past its expiry time.
    #[error("the access token has expired")]
    Expired,
    /// Signed with a key this service does not hold.
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
}

/// Signs access tokens with the first key and verifies them with any key, so
/// that keys can be rotated: add the new key first, and drop the old one once
/// the tokens it signed have expired.
pub struct AccessSigner {
    keys: Vec<(String, hmac::Key)>,
}

impl fmt::Debug for AccessSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only; the secrets stay out of logs.
        f.debug_struct("AccessSigner")
            .field(
                "kids",
                &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AccessSigner {
    /// Creates a signer from `(kid, secret)` pairs; the first pair signs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSigningKeys`] when there are no keys, a kid is empty,
    /// longer than 32 characters, repeated or not made of ASCII letters,
    /// digits, `-` and `_`, or a secret is shorter than 32 bytes.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Self, Error> {
        if keys.is_empty() {
            return Err(Error::InvalidSigningKeys("at least one key is required"));
        }
        let mut built: Vec<(String, hmac::Key)> = Vec::with_capacity(keys.len());
        for (kid, secret) in keys {
            if kid.is_empty()
                || kid.len() > MAX_KID_LEN
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::InvalidSigningKeys(
                    "a kid must be 1 to 32 ASCII letters, digits, '-' or '_'",
                ));
            }
            if built.iter().any(|(existing, _)| *existing == kid) {
                return Err(Error::InvalidSigningKeys("kids must be unique"));
            }
            if secret.len() < MIN_KEY_LEN {
                return Err(Error::InvalidSigningKeys(
                    "a secret must be at least 32 bytes",
                ));
            }
            built.push((kid, hmac::Key::new(hmac::HMAC_SHA256, &secret)));
        }
        Ok(Self { keys: built })
    }

    /// Creates a signer with a single key derived from a configured secret
    /// by SHA-256 (see [`AccessSigner::from_secrets`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSigningKeys`] when the secret is shorter than 32 bytes.
    pub fn from_secret(secret: &str) -> Result<Self, Error> {
        Self::from_secrets(secret, &[])
    }

    /// A signer for `current`, which also verifies tokens signed with any of
    /// `previous`: rotating the secret moves the old one to `previous` until
    /// its tokens have lapsed. Each key's id is derived from its secret, so
    /// every instance names the same key the same way.
    pub fn from_secrets(current: &str, previous: &[&str]) -> Result<Self, Error> {
        let mut keys = Vec::with_capacity(1 + previous.len());
        for secret in std::iter::once(current).chain(previous.iter().copied()) {
            if secret.len() < MIN_KEY_LEN {
                return Err(Error::InvalidSigningKeys(
                    "the secret must be at least 32 bytes",
                ));
            }
            let key = digest::digest(&digest::SHA256, secret.as_bytes());
            let id = digest::digest(&digest::SHA256, key.as_ref());
            let kid: String = id.as_ref()[..4]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            keys.push((format!("k{kid}"), key.as_ref().to_vec()));
        }
        Self::new(keys)
    }

    /// Signs `claims` with the first key.
    #[must_use]
    pub fn sign(&self, claims: &Claims) -> String {
        let (kid, key) = &self.keys[0];
        let payload = claims.to_json();
        let mut token = String::with_capacity(
            PREFIX.len() + kid.len() + 2 + payload.len().div_ceil(3) * 4 + 44,
        );
        token.push_str(PREFIX);
        token.push_str(kid);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let tag = hmac::sign(key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    /// Checks a token's signature and expiry at unix time `now` and returns
    /// its claims.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] explaining the refusal.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (kid, payload) = signed
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(TokenError::Malformed)?;
        if payload.is_empty() || payload.contains('.') {
            return Err(TokenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find_map(|(k, key)| (k == kid).then_some(key))
            .ok_or(TokenError::UnknownKey)?;

        let mut tag_bytes = [0u8; TAG_LEN + 16];
        let tag_len = URL_SAFE_NO_PAD
            .decode_slice(tag, &mut tag_bytes)
            .map_err(|_| TokenError::Malformed)?;
        if tag_len != TAG_LEN {
            return Err(TokenError::Malformed);
        }
        hmac::verify(key, signed.as_bytes(), &tag_bytes[..TAG_LEN])
            .map_err(|_| TokenError::BadSignature)?;

        // Only authenticated bytes reach the JSON parser.
        let mut json = [0u8; MAX_TOKEN_LEN / 4 * 3];
        let json_len = URL_SAFE_NO_PAD
            .decode_slice(payload, &mut json)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims =
            serde_json::from_slice(&json[..json_len]).map_err(|_| TokenError::Malformed)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_signed_before_a_rotation_still_verifies_and_a_dropped_secret_does_not() {
        let old_secret = "an old secret that is long enough to sign with";
        let new_secret = "a new secret that is also long enough to sign";
        let token = AccessSigner::from_secret(old_secret)
            .expect("signer")
            .sign(&claims());
        let rotated = AccessSigner::from_secrets(new_secret, &[old_secret]).expect("signer");
        assert_eq!(rotated.verify(&token, NOW), Ok(claims()));
        let fresh = rotated.sign(&claims());
        assert_eq!(
            AccessSigner::from_secret(new_secret)
                .expect("signer")
                .verify(&fresh, NOW),
            Ok(claims())
        );
        let dropped = AccessSigner::from_secret(new_secret).expect("signer");
        assert_eq!(dropped.verify(&token, NOW), Err(TokenError::UnknownKey));
    }

    const NOW: i64 = 1_750_000_000;

    fn claims() -> Claims {
        Claims {
            user: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            session: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
            role: Role::Support,
            mfa: true,
            issued_at: NOW,
            expires_at: NOW + 900,
        }
    }

    fn signer(kid: &str, fill: u8) -> AccessSigner {
        AccessSigner::new(vec![(kid.to_owned(), vec![fill; 32])]).expect("valid key")
    }

    #[test]
    fn a_signed_token_verifies_and_yields_its_claims() {
        let signer = signer("k1", 1);
        let token = signer.sign(&claims());
        assert!(token.starts_with("mqa1.k1."), "{token}");
        assert!(!token.contains('='));
        assert_eq!(signer.verify(&token, NOW), Ok(claims()));
    }

    #[test]
    fn the_payload_is_the_compact_claims_json() {
        let token = signer("k1", 1).sign(&claims());
        let payload = token.split('.').nth(2).expect("payload");
        let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(
            value,
            serde_json::json!({
                "sub": "01900000-0000-7000-8000-000000000001",
                "sid": "01900000-0000-7000-8000-000000000002",
                "rol": "support",
                "mfa": true,
                "iat": NOW,
                "exp": NOW + 900,
            })
        );
    }

    #[test]
    fn every_role_survives_signing() {
        let signer = signer("k1", 1);
        for role in [Role::Customer, Role::Support, Role::Admin, Role::Scanner] {
            let claims = Claims { role, ..claims() };
            assert_eq!(signer.verify(&signer.sign(&claims), NOW), Ok(claims));
        }
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = signer("k1", 1).sign(&claims());
        assert_eq!(
            signer("k1", 2).verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_naming_an_unknown_key_is_refused() {
        let token = signer("old", 1).sign(&claims());
        assert_eq!(
            signer("new", 1).verify(&token, NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let signer = signer("k1", 1);
        let token = signer.sign(&claims());
        let forged = signer.sign(&Claims {
            role: Role::Admin,
            ..claims()
        });
        let forged_payload = forged.split('.').nth(2).expect("payload");
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}.{}", parts[0], parts[1], forged_payload, parts[3]);
        assert_eq!(signer.verify(&tampered, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_tampered_tag_is_refused() {
        let signer = signer("k1", 1);
        let mut token = signer.sign(&claims());
        let last = token.pop().expect("non-empty");
        // The last character carries only the top bits of the final byte, so
        // stay among characters whose low bits are zero.
        token.push(if last == 'A' { 'Q' } else { 'A' });
        assert_eq!(signer.verify(&token, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_is_refused_from_its_expiry_second_on() {
        let signer = signer("k1", 1);
        let token = signer.sign(&claims());
        assert!(signer.verify(&token, NOW + 899).is_ok());
        assert_eq!(signer.verify(&token, NOW + 900), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_signed_by_the_old_key_verifies_after_a_new_key_is_added_first() {
        let old = AccessSigner::new(vec![("k1".to_owned(), vec![1; 32])]).expect("valid key");
        let rotated = AccessSigner::new(vec![
            ("k2".to_owned(), vec![2; 32]),
            ("k1".to_owned(), vec![1; 32]),
        ])
        .expect("valid keys");
        let old_token = old.sign(&claims());
        let new_token = rotated.sign(&claims());
        assert!(new_token.starts_with("mqa1.k2."));
        assert_eq!(rotated.verify(&old_token, NOW), Ok(claims()));
        assert_eq!(old.verify(&new_token, NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_signer_from_a_secret_verifies_its_own_tokens_only() {
        let signer =
            AccessSigner::from_secret("a configured secret of enough length").expect("long secret");
        let other =
            AccessSigner::from_secret("another configured secret, also long").expect("long secret");
        let token = signer.sign(&claims());
        assert!(token.starts_with("mqa1.k"));
        assert_eq!(signer.verify(&token, NOW), Ok(claims()));
        // Key ids come from the secrets, so another secret's signer does not
        // even know the key.
        assert_eq!(other.verify(&token, NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn unsuitable_keys_are_refused_at_construction() {
        let key = || vec![1; 32];
        for keys in [
            vec![],
            vec![(String::new(), key())],
            vec![("k.1".to_owned(), key())],
            vec![("k".repeat(33), key())],
            vec![("k1".to_owned(), vec![1; 31])],
            vec![("k1".to_owned(), key()), ("k1".to_owned(), key())],
        ] {
            assert!(matches!(
                AccessSigner::new(keys),
                Err(Error::InvalidSigningKeys(_))
            ));
        }
        assert!(matches!(
            AccessSigner::from_secret("short"),
            Err(Error::InvalidSigningKeys(_))
        ));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let signer = signer("k1", 1);
        let token = signer.sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let cases = [
            String::new(),
            "mqa1".to_owned(),
            "mqa1.k1".to_owned(),
            "mqa1.k1.payload".to_owned(),
            token.replacen("mqa1", "mqa2", 1),
            format!("{}.{}..{}", parts[0], parts[1], parts[3]),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], &parts[3][..40]),
            format!(
                "{}.{}.{}.{}!",
                parts[0],
                parts[1],
                parts[2],
                &parts[3][..42]
            ),
            format!("{token}.extra"),
            format!("{token}{}", "A".repeat(1024)),
        ];
        for case in cases {
            let result = signer.verify(&case, NOW);
            assert!(
                matches!(result, Err(TokenError::Malformed | TokenError::UnknownKey)),
                "{case:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn a_validly_signed_payload_that_is_not_claims_is_malformed() {
        let signer = signer("k1", 1);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        for payload in [&b"not json"[..], br#"{"sub":"x"}"#, b"\xff"] {
            let signed = format!("mqa1.k1.{}", URL_SAFE_NO_PAD.encode(payload));
            let tag = hmac::sign(&key, signed.as_bytes());
            let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            assert_eq!(signer.verify(&token, NOW), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn roles_parse_from_their_lowercase_names() {
        for role in [Role::Customer, Role::Support, Role::Admin, Role::Scanner] {
            assert_eq!(role.as_str().parse::<Role>().expect("known role"), role);
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(
                serde_json::to_string(&role).expect("json"),
                format!("\"{}\"", role.as_str())
            );
        }
        assert!(matches!(
            "Admin".parse::<Role>(),
            Err(Error::UnknownRole(_))
        ));
    }

    #[test]
    fn only_support_and_admin_are_staff() {
        assert!(!Role::Customer.is_staff());
        assert!(Role::Support.is_staff());
        assert!(Role::Admin.is_staff());
        assert!(!Role::Scanner.is_staff());
        assert!(Role::Scanner.admits_tickets());
        assert!(!Role::Customer.admits_tickets());
    }

    #[test]
    fn the_debug_output_names_keys_without_secrets() {
        let signer = AccessSigner::new(vec![("k1".to_owned(), vec![0x41; 32])]).expect("key");
        let debug = format!("{signer:?}");
        assert!(debug.contains("k1"));
        assert!(!debug.contains("AAAA") && !debug.contains("65"), "{debug}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn verify_never_panics_nor_accepts_an_arbitrary_string(token in ".{0,1200}") {
                prop_assert!(signer("k1", 1).verify(&token, NOW).is_err());
            }

            #[test]
            fn verify_never_accepts_a_random_token_shaped_string(
                kid in "k1|k2",
                payload in "[A-Za-z0-9_-]{0,400}",
                tag in "[A-Za-z0-9_-]{0,60}",
            ) {
                let token = format!("mqa1.{kid}.{payload}.{tag}");
                prop_assert!(signer("k1", 1).verify(&token, NOW).is_err());
            }
        }
    }
}
