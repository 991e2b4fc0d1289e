//! How many SMS a body is sent as, which is what carriers bill.
//!
//! An SMS holds 140 bytes. Text made only of the GSM-7 alphabet packs 160
//! characters into it; one character outside that alphabet, such as an
//! emoji or a curly quote, makes the whole body UCS-2, which holds 70. A
//! longer body is split into parts that each give up room for the header
//! that joins them: 153 GSM-7 characters or 67 UCS-2 units per part.

/// How a body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 alphabet, 7 bits a character; the characters of its
    /// extension table take two.
    Gsm7,
    /// UTF-16, 16 bits a unit; characters outside the Basic Multilingual
    /// Plane, such as most emoji, take two units.
    Ucs2,
}

/// The GSM 03.38 default alphabet, without the escape that introduces the
/// extension table.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters sent as an escape and a second septet.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// GSM-7 when every character of `body` is in the GSM alphabet, else UCS-2.
pub fn encoding(body: &str) -> Encoding {
    if body
        .chars()
        .all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c))
    {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The number of SMS `body` is sent as; an empty body still takes one.
///
/// A character is never split across two parts, neither an extension
/// character's two septets nor an emoji's two UTF-16 units, as phones
/// would not join the halves; so a split body may need one part more than
/// its length alone suggests.
pub fn count(body: &str) -> u32 {
    let (single, part, width): (usize, usize, fn(char) -> usize) = match encoding(body) {
        Encoding::Gsm7 => (GSM7_SINGLE, GSM7_PART, gsm7_septets),
        Encoding::Ucs2 => (UCS2_SINGLE, UCS2_PART, char::len_utf16),
    };
    if body.chars().map(width).sum::<usize>() <= single {
        return 1;
    }
    let mut parts: u32 = 1;
    let mut filled = 0;
    for c in body.chars() {
        let width = width(c);
        if filled + width > part {
            parts = parts.saturating_add(1);
            filled = 0;
        }
        filled += width;
    }
    parts
}

fn gsm7_septets(c: char) -> usize {
    if GSM7_EXTENSION.contains(c) {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_gsm7_and_one_foreign_character_makes_it_ucs2() {
        assert_eq!(
            encoding("Your seats: H7, H8 @ 19:30 (£12.50)"),
            Encoding::Gsm7
        );
        assert_eq!(
            encoding("Prices in € and {braces} stay GSM-7"),
            Encoding::Gsm7
        );
        assert_eq!(encoding("Enjoy the film 🎬"), Encoding::Ucs2);
        assert_eq!(encoding("It’s tonight"), Encoding::Ucs2);
        assert_eq!(encoding("Grüße, señor, ça va"), Encoding::Ucs2);
    }

    #[test]
    fn gsm7_text_of_160_characters_is_one_segment_and_161_is_two() {
        assert_eq!(count(&"a".repeat(160)), 1);
        assert_eq!(count(&"a".repeat(161)), 2);
    }

    #[test]
    fn split_gsm7_text_takes_153_characters_per_segment() {
        assert_eq!(count(&"a".repeat(306)), 2);
        assert_eq!(count(&"a".repeat(307)), 3);
        assert_eq!(count(&"a".repeat(1600)), 11);
    }

    #[test]
    fn ucs2_text_of_70_characters_is_one_segment_and_71_is_two() {
        assert_eq!(count(&"ж".repeat(70)), 1);
        assert_eq!(count(&"ж".repeat(71)), 2);
    }

    #[test]
    fn split_ucs2_text_takes_67_units_per_segment() {
        assert_eq!(count(&"ж".repeat(134)), 2);
        assert_eq!(count(&"ж".repeat(135)), 3);
    }

    #[test]
    fn one_emoji_turns_160_characters_into_three_ucs2_segments() {
        let body = format!("{}🎬", "a".repeat(159));

        assert_eq!(count(&body), 3);
    }

    #[test]
    fn extension_characters_take_two_septets() {
        assert_eq!(count(&"€".repeat(80)), 1);
        assert_eq!(count(&"€".repeat(81)), 2);
        assert_eq!(count(&format!("{}[", "a".repeat(159))), 2);
    }

    #[test]
    fn an_emoji_takes_two_ucs2_units() {
        assert_eq!(count(&"🎬".repeat(35)), 1);
        assert_eq!(count(&"🎬".repeat(36)), 2);
    }

    #[test]
    fn a_character_is_never_split_across_segments() {
        let gsm7 = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        let ucs2 = format!("{}🎬{}", "ж".repeat(66), "ж".repeat(66));

        assert_eq!(count(&gsm7), 3);
        assert_eq!(count(&ucs2), 3);
    }

    #[test]
    fn an_empty_body_is_one_segment() {
        assert_eq!(count(""), 1);
    }
}
