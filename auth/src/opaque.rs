//! Opaque secrets for refresh tokens, email verification and password reset
//! links.
//!
//! A token reads `<id>.<secret>`: the id (32 lowercase hex digits) finds the
//! stored row and the secret (32 random bytes, unpadded base64url) proves
//! possession. Only the SHA-256 of the secret is stored, so a leaked table
//! does not yield usable tokens.

use aws_lc_rs::{digest, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

use crate::Error;

const SECRET_LEN: usize = 32;
const ID_TEXT_LEN: usize = 32;
const SECRET_TEXT_LEN: usize = 43;
/// Anything longer is refused before it is examined.
const MAX_TOKEN_LEN: usize = 200;

/// What is stored for an issued token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpaqueToken {
    /// The row the token refers to.
    pub id: Uuid,
    /// SHA-256 of the secret bytes.
    pub secret_hash: [u8; 32],
}

/// Issues a token for row `id`, returning the text to hand to the user and
/// what to store.
///
/// # Errors
///
/// [`Error::Random`] when the system random number generator fails.
pub fn generate(id: Uuid) -> Result<(String, OpaqueToken), Error> {
    let mut secret = [0u8; SECRET_LEN];
    rand::fill(&mut secret).map_err(|_| Error::Random)?;
    let mut token = String::with_capacity(ID_TEXT_LEN + 1 + SECRET_TEXT_LEN);
    token.push_str(id.simple().encode_lower(&mut Uuid::encode_buffer()));
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(secret, &mut token);
    Ok((
        token,
        OpaqueToken {
            id,
            secret_hash: hash_secret(&secret),
        },
    ))
}

/// Splits a presented token into its id and the SHA-256 of its secret, or
/// `None` when it is not shaped like a token this module issued.
#[must_use]
pub fn parse(token: &str) -> Option<(Uuid, [u8; 32])> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (id, secret) = token.split_once('.')?;
    // Only the canonical lowercase form is issued; accepting others would
    // let one token have many spellings.
    if id.len() != ID_TEXT_LEN || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    if secret.len() != SECRET_TEXT_LEN {
        return None;
    }
    let id = Uuid::try_parse(id).ok()?;
    let mut bytes = [0u8; SECRET_LEN + 3];
    let len = URL_SAFE_NO_PAD.decode_slice(secret, &mut bytes).ok()?;
    let secret: &[u8; SECRET_LEN] = bytes.get(..len)?.try_into().ok()?;
    Some((id, hash_secret(secret)))
}

fn hash_secret(secret: &[u8; SECRET_LEN]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, secret);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00ab)
    }

    #[test]
    fn a_generated_token_parses_back_to_its_id_and_stored_hash() {
        let (text, stored) = generate(id()).expect("random");
        assert_eq!(stored.id, id());
        assert!(
            text.starts_with("019000000000700080000000000000ab."),
            "{text}"
        );
        assert_eq!(text.len(), 76);
        let (parsed_id, presented) = parse(&text).expect("well formed");
        assert_eq!(parsed_id, id());
        assert_eq!(stored.secret_hash, presented);
    }

    #[test]
    fn two_tokens_for_the_same_id_have_different_secrets() {
        let (first, first_stored) = generate(id()).expect("random");
        let (second, second_stored) = generate(id()).expect("random");
        assert_ne!(first, second);
        assert_ne!(first_stored.secret_hash, second_stored.secret_hash);
    }

    #[test]
    fn a_tampered_secret_does_not_match() {
        let (text, stored) = generate(id()).expect("random");
        let mut tampered = text.into_bytes();
        tampered[40] = if tampered[40] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let (_, presented) = parse(&tampered).expect("still well formed");
        assert_ne!(stored.secret_hash, presented);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (text, _) = generate(id()).expect("random");
        let (hex, secret) = text.split_once('.').expect("dot");
        let cases = [
            String::new(),
            hex.to_owned(),
            format!("{hex}{secret}"),
            format!("{}.{secret}", hex.to_uppercase()),
            format!("{}.{secret}", &hex[1..]),
            format!("{hex}0.{secret}"),
            format!("{}-.{secret}", &hex[1..]),
            format!("{hex}.{}", &secret[1..]),
            format!("{hex}.{secret}A"),
            format!("{hex}.{}+", &secret[1..]),
            format!("{hex}.{secret}.{secret}"),
            format!("{hex}.{}", "A".repeat(200)),
        ];
        for case in cases {
            assert_eq!(parse(&case), None, "{case:?}");
        }
    }

    #[test]
    fn a_secret_with_stray_trailing_bits_is_refused() {
        let (text, _) = generate(id()).expect("random");
        // The last of 43 characters carries four bits of data and two unused
        // ones; setting an unused bit gives another spelling of the secret.
        let mut bytes = text.into_bytes();
        let last = bytes.len() - 1;
        let value = URL_SAFE_ALPHABET
            .iter()
            .position(|&c| c == bytes[last])
            .expect("alphabet");
        bytes[last] = URL_SAFE_ALPHABET[value | 1];
        let stray = String::from_utf8(bytes).expect("ascii");
        assert_eq!(parse(&stray), None);
    }

    const URL_SAFE_ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(token in ".{0,300}") {
                let _ = parse(&token);
            }

            #[test]
            fn parse_never_panics_on_token_shaped_strings(
                hex in "[0-9a-f]{30,34}",
                secret in "[A-Za-z0-9_=+/-]{40,46}",
            ) {
                let _ = parse(&format!("{hex}.{secret}"));
            }
        }
    }
}
