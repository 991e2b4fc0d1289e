//! Time-based one-time passwords (RFC 6238) for two-factor sign-in, in the
//! form authenticator apps expect: HMAC-SHA1, six digits, 30-second steps.

use std::fmt::Write as _;

use aws_lc_rs::{constant_time, hmac, rand};

use crate::Error;

const SECRET_LEN: usize = 20;
const STEP_SECONDS: i64 = 30;
const DIGITS: u32 = 6;
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Draws a new 160-bit secret, the length RFC 4226 recommends for HMAC-SHA1.
///
/// # Errors
///
/// [`Error::Random`] when the system random number generator fails.
pub fn generate_secret() -> Result<Vec<u8>, Error> {
    let mut secret = vec![0u8; SECRET_LEN];
    rand::fill(&mut secret).map_err(|_| Error::Random)?;
    Ok(secret)
}

/// Encodes a secret as unpadded RFC 4648 base32, the form authenticator apps
/// accept for manual entry.
#[must_use]
pub fn encode_secret(secret: &[u8]) -> String {
    let mut out = String::with_capacity(secret.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &byte in secret {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[usize::from((buffer >> bits) & 0x1f)],
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// Decodes unpadded base32, ignoring case because people type these secrets.
/// Returns `None` for characters outside the alphabet, impossible lengths or
/// stray bits after the last byte.
#[must_use]
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits).to_le_bytes()[0]);
        }
    }
    // A complete encoding leaves fewer than five bits over, all zero.
    if bits >= 5 || buffer & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

/// The `otpauth://` URI that authenticator apps read from a QR code.
#[must_use]
pub fn provisioning_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
        percent_encode(account),
        encode_secret(secret),
    )
}

/// The six-digit code for the step containing `unix_seconds`.
#[must_use]
pub fn code_at(secret: &[u8], unix_seconds: i64) -> String {
    code_for_step(secret, unix_seconds.div_euclid(STEP_SECONDS), DIGITS)
}

/// Checks a code typed by the user at `unix_seconds`.
///
/// The previous, current and next steps are accepted to allow for clock drift
/// and typing time. Steps at or before `last_used_step` are refused so that an
/// observed code cannot be replayed. Returns the matched step, to be stored as
/// the new `last_used_step`.
#[must_use]
pub fn verify(
    secret: &[u8],
    code: &str,
    unix_seconds: i64,
    last_used_step: Option<i64>,
) -> Option<i64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = unix_seconds.div_euclid(STEP_SECONDS);
    let mut matched = None;
    // Every candidate is compared, even after a match, so that the time taken
    // does not reveal which step matched.
    for step in [current - 1, current, current + 1] {
        if step < 0 || last_used_step.is_some_and(|last| step <= last) {
            continue;
        }
        let expected = code_for_step(secret, step, DIGITS);
        let equal =
            constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok();
        if equal && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

fn code_for_step(secret: &[u8], step: i64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    // Dynamic truncation, RFC 4226 section 5.3.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    let code = binary % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_the_rfc_6238_sha1_vectors() {
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, expected) in vectors {
            let step = time / STEP_SECONDS;
            assert_eq!(code_for_step(RFC_SECRET, step, 8), expected, "T={time}");
            assert_eq!(code_at(RFC_SECRET, time), expected[2..], "T={time}");
        }
    }

    #[test]
    fn a_code_is_always_six_digits_with_leading_zeros_kept() {
        // Step 37037036 of the RFC secret yields 07081804.
        assert_eq!(code_at(RFC_SECRET, 1_111_111_109), "081804");
        for time in (0..3000).step_by(30) {
            let code = code_at(RFC_SECRET, time);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn the_current_code_verifies_and_returns_its_step() {
        let now = 1_750_000_015;
        let code = code_at(RFC_SECRET, now);
        assert_eq!(verify(RFC_SECRET, &code, now, None), Some(now / 30));
    }

    #[test]
    fn codes_one_step_either_side_are_accepted_and_two_steps_are_not() {
        let now = 1_750_000_015;
        let step = now / 30;
        for offset in [-1, 1] {
            let code = code_at(RFC_SECRET, now + offset * 30);
            assert_eq!(
                verify(RFC_SECRET, &code, now, None),
                Some(step + offset),
                "offset {offset}"
            );
        }
        for offset in [-2, 2] {
            let code = code_at(RFC_SECRET, now + offset * 30);
            if [-1, 0, 1]
                .iter()
                .all(|o| code_at(RFC_SECRET, now + o * 30) != code)
            {
                assert_eq!(verify(RFC_SECRET, &code, now, None), None);
            }
        }
    }

    #[test]
    fn a_used_code_cannot_be_replayed() {
        let now = 1_750_000_015;
        let code = code_at(RFC_SECRET, now);
        let step = verify(RFC_SECRET, &code, now, None).expect("first use");
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None);
        assert_eq!(verify(RFC_SECRET, &code, now + 20, Some(step)), None);
    }

    #[test]
    fn a_code_older_than_the_last_used_step_is_refused() {
        let now = 1_750_000_015;
        let step = now / 30;
        let previous = code_at(RFC_SECRET, now - 30);
        assert_eq!(verify(RFC_SECRET, &previous, now, Some(step)), None);
        let next = code_at(RFC_SECRET, now + 30);
        assert_eq!(verify(RFC_SECRET, &next, now, Some(step)), Some(step + 1));
    }

    #[test]
    fn a_wrong_code_is_refused() {
        let now = 1_750_000_015;
        let code = code_at(RFC_SECRET, now);
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().expect("digits") + 1) % 1_000_000
        );
        let window: Vec<String> = (-1..=1)
            .map(|o| code_at(RFC_SECRET, now + o * 30))
            .collect();
        if !window.contains(&wrong) {
            assert_eq!(verify(RFC_SECRET, &wrong, now, None), None);
        }
        assert_eq!(verify(b"another secret", &code, now, None), None);
    }

    #[test]
    fn codes_that_are_not_exactly_six_ascii_digits_are_refused() {
        let now = 1_750_000_015;
        let code = code_at(RFC_SECRET, now);
        for candidate in [
            String::new(),
            code[..5].to_owned(),
            format!("{code}0"),
            format!(" {}", &code[1..]),
            format!("{}a", &code[..5]),
            format!("+{}", &code[1..]),
            "١٢٣٤٥٦".to_owned(),
        ] {
            assert_eq!(
                verify(RFC_SECRET, &candidate, now, None),
                None,
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn a_new_secret_is_twenty_random_bytes() {
        let first = generate_secret().expect("random");
        let second = generate_secret().expect("random");
        assert_eq!(first.len(), 20);
        assert_ne!(first, second);
    }

    #[test]
    fn base32_matches_the_rfc_4648_vectors_without_padding() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode_secret(plain.as_bytes()), encoded);
            assert_eq!(
                decode_secret(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(
            encode_secret(RFC_SECRET),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn base32_decoding_ignores_case() {
        assert_eq!(decode_secret("mzxw6ytboi").as_deref(), Some(&b"foobar"[..]));
    }

    #[test]
    fn invalid_base32_is_refused() {
        for text in [
            "MZXW6YTBOI=",
            "M",
            "MZX",
            "MZXW6Y",
            "MZ",
            "M1",
            "MZXW 6YTB",
            "MZ8Q",
        ] {
            assert_eq!(decode_secret(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_provisioning_uri_percent_encodes_issuer_and_account() {
        let uri = provisioning_uri(b"foobar", "Marquee Cinemas", "ana+tix@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Marquee%20Cinemas:ana%2Btix%40example.com\
             ?secret=MZXW6YTBOI&issuer=Marquee%20Cinemas&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(percent_encode("Ciné:1"), "Cin%C3%A9%3A1");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                prop_assert_eq!(decode_secret(&encode_secret(&bytes)), Some(bytes));
            }

            #[test]
            fn base32_decoding_never_panics(text in ".{0,80}") {
                let _ = decode_secret(&text);
            }

            #[test]
            fn verify_never_panics(code in ".{0,10}", time in any::<i64>(), last in any::<Option<i64>>()) {
                let _ = verify(RFC_SECRET, &code, time, last);
            }
        }
    }
}
