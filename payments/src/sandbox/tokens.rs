//! The test tokens the sandbox accepts, and its refusal of card numbers.

use super::refusal::Refusal;

/// What a token makes the issuer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Approve,
    Decline {
        code: &'static str,
        message: &'static str,
    },
    /// Approve, but answer only after the configured delay, as when the
    /// network fails between the gateway and its client: the payment exists
    /// and the client does not know it.
    ApproveLate,
}

/// Every token the sandbox knows; the crate documentation lists the same.
const TOKENS: &[(&str, Behaviour)] = &[
    ("tok_visa", Behaviour::Approve),
    ("tok_mastercard", Behaviour::Approve),
    ("tok_amex", Behaviour::Approve),
    (
        "tok_chargeDeclined",
        Behaviour::Decline {
            code: "card_declined",
            message: "your card was declined",
        },
    ),
    (
        "tok_chargeDeclinedInsufficientFunds",
        Behaviour::Decline {
            code: "insufficient_funds",
            message: "your card has insufficient funds",
        },
    ),
    ("tok_timeout", Behaviour::ApproveLate),
];

/// The behaviour of a payment method, or why it is refused. Refusals never
/// repeat the value: it may be a card number.
pub(crate) fn behaviour(payment_method: &str) -> Result<Behaviour, Refusal> {
    if looks_like_card_number(payment_method) {
        return Err(Refusal::invalid(
            "raw_card_number",
            "card numbers are never accepted, tokenized cards only: send the token from the payment form",
        ));
    }
    if !payment_method.starts_with("tok_") {
        return Err(Refusal::invalid(
            "token_invalid",
            "payment_method must be a card token, starting with `tok_`",
        ));
    }
    TOKENS
        .iter()
        .find(|(token, _)| *token == card_of(payment_method))
        .map(|(_, behaviour)| *behaviour)
        .ok_or_else(|| Refusal::invalid("token_unknown", "no such card token"))
}

/// Test cards that approve may be named apart, `tok_visa_<label>`, to stand
/// for many different cards of one brand: each label is a card of its own,
/// with its own fingerprint.
fn card_of(payment_method: &str) -> &str {
    for brand in ["tok_visa", "tok_mastercard", "tok_amex"] {
        if let Some(label) = payment_method
            .strip_prefix(brand)
            .and_then(|rest| rest.strip_prefix('_'))
        {
            if (1..=64).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return brand;
            }
        }
    }
    payment_method
}

/// What identifies the card behind a token, as a real gateway's card
/// fingerprint does: the same for every token of one card, and not the
/// card's number.
pub(crate) fn fingerprint(payment_method: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    "marquee sandbox card".hash(&mut hasher);
    payment_method.hash(&mut hasher);
    format!("fp_{:016x}", hasher.finish())
}

/// 12 to 19 digits, the lengths of card numbers, with or without the
/// spaces and dashes people type between groups.
fn looks_like_card_number(value: &str) -> bool {
    let digits: Vec<char> = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (12..=19).contains(&digits.len()) && digits.iter().all(char::is_ascii_digit)
}

/// Masks whatever could be a card number in a message that quotes the
/// request, such as a parse error: the gateway never repeats one.
pub(crate) fn redact_card_numbers(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        redacted.push_str(&rest[..start]);
        let run = &rest[start..];
        let end = run
            .find(|c: char| !(c.is_ascii_digit() || c == ' ' || c == '-'))
            .unwrap_or(run.len());
        let digits = run[..end].trim_end_matches([' ', '-']);
        if digits.chars().filter(char::is_ascii_digit).count() >= 12 {
            redacted.push_str("[redacted]");
        } else {
            redacted.push_str(digits);
        }
        rest = &run[digits.len()..];
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised_however_they_are_typed() {
        for number in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "378282246310005",
            "6011 0009 9013 9424 123",
            "123456789012",
        ] {
            assert!(looks_like_card_number(number), "{number}");
        }
    }

    #[test]
    fn tokens_and_other_digit_strings_are_not_card_numbers() {
        for value in [
            "tok_visa",
            "12345678901",
            "12345678901234567890",
            "4242 4242 4242 424x",
            "",
            "  --  ",
        ] {
            assert!(!looks_like_card_number(value), "{value:?}");
        }
    }

    #[test]
    fn a_card_number_is_refused_without_being_repeated() {
        let refusal = behaviour("4242 4242 4242 4242").unwrap_err();

        let body = refusal.body();
        assert_eq!(body.error.code, "raw_card_number");
        assert!(!body.error.message.contains("4242"));
    }

    #[test]
    fn quoted_card_numbers_are_masked_and_other_numbers_kept() {
        let message =
            "invalid type: integer `4242424242424242`, expected a string at line 1 column 40";

        assert_eq!(
            redact_card_numbers(message),
            "invalid type: integer `[redacted]`, expected a string at line 1 column 40"
        );
        assert_eq!(
            redact_card_numbers("unknown variant `4242 4242-4242 4242 `"),
            "unknown variant `[redacted] `"
        );
        assert_eq!(
            redact_card_numbers("amount 1200 - 300"),
            "amount 1200 - 300"
        );
    }

    #[test]
    fn labelled_test_cards_behave_like_their_brand_with_fingerprints_of_their_own() {
        assert_eq!(behaviour("tok_visa_buyer-17").unwrap(), Behaviour::Approve);
        assert_eq!(behaviour("tok_amex_a").unwrap(), Behaviour::Approve);
        assert_eq!(
            behaviour("tok_visa_").unwrap_err().body().error.code,
            "token_unknown"
        );
        assert_eq!(
            behaviour("tok_visa_a b").unwrap_err().body().error.code,
            "token_unknown"
        );
        assert_eq!(fingerprint("tok_visa"), fingerprint("tok_visa"));
        assert_ne!(fingerprint("tok_visa"), fingerprint("tok_visa_1"));
        assert_ne!(fingerprint("tok_visa_1"), fingerprint("tok_visa_2"));
    }

    #[test]
    fn only_known_tokens_are_accepted() {
        assert_eq!(behaviour("tok_visa").unwrap(), Behaviour::Approve);
        assert_eq!(behaviour("tok_timeout").unwrap(), Behaviour::ApproveLate);
        assert_eq!(
            behaviour("tok_unknown").unwrap_err().body().error.code,
            "token_unknown"
        );
        assert_eq!(
            behaviour("pm_card_visa").unwrap_err().body().error.code,
            "token_invalid"
        );
    }
}
