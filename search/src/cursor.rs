//! Keyset positions for paging through search results.

use uuid::Uuid;

/// A position in a result list: the score and id of the last hit a client
/// has seen. Results are ordered by score, then id, so the next page starts
/// strictly after this pair and pages never overlap or skip, unlike offsets
/// when the index changes between requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    /// Score of the last hit seen.
    pub score: f32,
    /// Id of the last hit seen.
    pub id: Uuid,
}

const SCORE_DIGITS: usize = 8;
const ENCODED_LEN: usize = SCORE_DIGITS + 32;

impl Cursor {
    /// Opaque text for a URL: lowercase hex of the score's bits and the id,
    /// so the round trip is exact and needs no escaping.
    pub fn encode(&self) -> String {
        format!("{:08x}{}", self.score.to_bits(), self.id.simple())
    }

    /// Reads text from [`Cursor::encode`]; `None` for anything else, since
    /// cursors arrive from clients and must not fail a request.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() != ENCODED_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (score, id) = text.split_at(SCORE_DIGITS);
        let score = f32::from_bits(u32::from_str_radix(score, 16).ok()?);
        if !score.is_finite() {
            return None;
        }
        Some(Cursor {
            score,
            id: Uuid::try_parse(id).ok()?,
        })
    }

    /// Whether a hit with this score and id comes strictly after the cursor.
    pub(crate) fn precedes(&self, score: f32, id: &Uuid) -> bool {
        match score.total_cmp(&self.score) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => *id > self.id,
            std::cmp::Ordering::Greater => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_the_round_trip_through_text() {
        let cursor = Cursor {
            score: 12.345,
            id: Uuid::now_v7(),
        };
        let text = cursor.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Cursor::decode(&text), Some(cursor));
    }

    #[test]
    fn a_malformed_cursor_decodes_to_none() {
        let valid = Cursor {
            score: 1.0,
            id: Uuid::nil(),
        }
        .encode();
        let nan = format!("{:08x}{}", f32::NAN.to_bits(), Uuid::nil().simple());
        let multibyte = format!("é{}", &valid[2..]);
        for text in [
            "",
            "not a cursor",
            &valid[1..],
            &format!("{valid}0"),
            &valid.replace('0', "g"),
            &nan,
            &multibyte,
            "+0000000000000000000000000000000000000000",
        ] {
            assert_eq!(Cursor::decode(text), None, "{text:?}");
        }
    }
}
