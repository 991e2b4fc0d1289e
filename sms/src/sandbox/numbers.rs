//! The test numbers the sandbox knows, and what makes a number E.164.

use poem::http::StatusCode;

use super::refusal::Refusal;

/// What sending to a number makes the carrier do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Accept,
    Refuse {
        status: StatusCode,
        code: u32,
        message: &'static str,
    },
    /// Accept, but answer only after the configured delay, as when the
    /// network fails between the carrier and its client: the message is
    /// sent and the client does not know it.
    AcceptLate,
}

/// Every test number; the crate documentation lists the same.
const NUMBERS: &[(&str, Behaviour)] = &[
    (
        "+15005550001",
        Behaviour::Refuse {
            status: StatusCode::BAD_REQUEST,
            code: INVALID_NUMBER,
            message: "the 'To' number is not a valid phone number",
        },
    ),
    (
        "+15005550002",
        Behaviour::Refuse {
            status: StatusCode::BAD_REQUEST,
            code: 21612,
            message: "the 'To' number is not currently reachable via SMS",
        },
    ),
    (
        "+15005550004",
        Behaviour::Refuse {
            status: StatusCode::BAD_REQUEST,
            code: 21610,
            message: "attempt to send to an unsubscribed recipient",
        },
    ),
    (
        "+15005550009",
        Behaviour::Refuse {
            status: StatusCode::BAD_REQUEST,
            code: 21614,
            message: "the 'To' number is not a mobile number and cannot receive SMS",
        },
    ),
    (
        "+15005550006",
        Behaviour::Refuse {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: 30001,
            message: "the carrier is unavailable; try again later",
        },
    ),
    (
        "+15005550007",
        Behaviour::Refuse {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: 20429,
            message: "too many requests",
        },
    ),
    ("+15005550008", Behaviour::AcceptLate),
];

/// Twilio's code for a `To` that is not a phone number, whether malformed
/// or the test number that plays one.
pub(crate) const INVALID_NUMBER: u32 = 21211;

/// What the carrier does with a message to `to`, which must already be
/// E.164.
pub(crate) fn behaviour(to: &str) -> Behaviour {
    NUMBERS
        .iter()
        .find(|(number, _)| *number == to)
        .map_or(Behaviour::Accept, |(_, behaviour)| *behaviour)
}

/// A `+`, a country code that does not start with 0, and at most 15 digits
/// in all. Spaces, dashes and brackets are refused rather than stripped:
/// the caller stores numbers in E.164 and should notice when one is not.
pub(crate) fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

impl Behaviour {
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            Self::Refuse {
                status,
                code,
                message,
            } => Some(Refusal::new(status, code, message)),
            Self::Accept | Self::AcceptLate => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_are_a_plus_and_up_to_15_digits() {
        for number in ["+14155550123", "+447700900123", "+15005550001", "+12"] {
            assert!(is_e164(number), "{number}");
        }
        for number in [
            "14155550123",
            "+1 415 555 0123",
            "+1-415-555-0123",
            "+(1)4155550123",
            "+04155550123",
            "+1234567890123456",
            "+1",
            "+",
            "",
            "+1415555012a",
        ] {
            assert!(!is_e164(number), "{number:?}");
        }
    }

    #[test]
    fn only_test_numbers_change_what_the_carrier_does() {
        assert_eq!(behaviour("+14155550123"), Behaviour::Accept);
        assert_eq!(behaviour("+15005550008"), Behaviour::AcceptLate);
        assert_eq!(behaviour("+15005550003"), Behaviour::Accept);
        let refusal = behaviour("+15005550004").refusal().unwrap();
        assert_eq!(refusal.body().code, 21610);
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
    }
}
