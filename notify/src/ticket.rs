//! What a booking confirmation carries besides its text: a QR image of each
//! ticket's code, for the door scanner, and a calendar entry (RFC 5545)
//! for the showtime.

use chrono::{DateTime, Utc};
use qrcode::{Color, EcLevel, QrCode};

use crate::Error;

/// Pixels per QR module: large enough for a phone camera from a printout.
const MODULE_PIXELS: usize = 6;

/// The quiet zone every QR code needs around it, in modules.
const QUIET_MODULES: usize = 4;

/// A PNG of `text` as a QR code, black on white, with medium error
/// correction (15%): a scuffed phone screen still scans.
pub fn qr_png(text: &str) -> Result<Vec<u8>, Error> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|err| {
        Error::Attachment(format!("the ticket code does not fit a QR code: {err}"))
    })?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_MODULES) * MODULE_PIXELS;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (x, y) = (
            index % modules + QUIET_MODULES,
            index / modules + QUIET_MODULES,
        );
        for row in y * MODULE_PIXELS..(y + 1) * MODULE_PIXELS {
            let start = row * side + x * MODULE_PIXELS;
            pixels[start..start + MODULE_PIXELS].fill(0);
        }
    }
    let mut png = Vec::new();
    let side = u32::try_from(side)
        .map_err(|_| Error::Attachment("the QR code is too large".to_owned()))?;
    let mut encoder = png::Encoder::new(&mut png, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|err| Error::Attachment(err.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|err| Error::Attachment(err.to_string()))?;
    writer
        .finish()
        .map_err(|err| Error::Attachment(err.to_string()))?;
    Ok(png)
}

/// A showtime as a calendar entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarEvent {
    /// Stable across resends, so a calendar updates the entry it has.
    pub uid: String,
    pub summary: String,
    pub description: String,
    pub location: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub stamped_at: DateTime<Utc>,
    /// `CONFIRMED`, or `CANCELLED` to take the entry off a calendar.
    pub status: &'static str,
}

/// The entry as an iCalendar file: CRLF line ends, text escaped and lines
/// folded at 75 octets as RFC 5545 requires, times in UTC.
pub fn calendar(event: &CalendarEvent) -> String {
    let time = |at: &DateTime<Utc>| at.format("%Y%m%dT%H%M%SZ").to_string();
    let method = if event.status == "CANCELLED" {
        "CANCEL"
    } else {
        "PUBLISH"
    };
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Marquee//Tickets//EN".to_owned(),
        format!("METHOD:{method}"),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}", escape(&event.uid)),
        format!("DTSTAMP:{}", time(&event.stamped_at)),
        format!("DTSTART:{}", time(&event.starts_at)),
        format!("DTEND:{}", time(&event.ends_at)),
        format!("SUMMARY:{}", escape(&event.summary)),
        format!("DESCRIPTION:{}", escape(&event.description)),
        format!("LOCATION:{}", escape(&event.location)),
        format!("STATUS:{}", event.status),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    lines.iter().map(|line| fold(line)).collect()
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\n' => escaped.push_str("\\n"),
            '\r' => {}
            other => escaped.push(other),
        }
    }
    escaped
}

/// One content line, folded so no physical line exceeds 75 octets, never
/// inside a character; each continuation starts with a space.
fn fold(line: &str) -> String {
    let mut folded = String::with_capacity(line.len() + 8);
    let mut width = 0;
    for character in line.chars() {
        let size = character.len_utf8();
        if width + size > 75 {
            folded.push_str("\r\n ");
            width = 1;
        }
        folded.push(character);
        width += size;
    }
    folded.push_str("\r\n");
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CalendarEvent {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc));
        CalendarEvent {
            uid: "order-1@marquee".to_owned(),
            summary: "Dune: Part Two, seats A-1, A-2".to_owned(),
            description: "Screen 1; doors open 20 minutes before".to_owned(),
            location: "Coolidge Corner Theatre, 290 Harvard St, Brookline".to_owned(),
            starts_at: at("2026-12-01T19:30:00Z").expect("time"),
            ends_at: at("2026-12-01T22:16:00Z").expect("time"),
            stamped_at: at("2026-11-26T10:00:00Z").expect("time"),
            status: "CONFIRMED",
        }
    }

    #[test]
    fn a_calendar_entry_escapes_text_and_uses_crlf_and_utc() {
        let text = calendar(&event());

        assert!(text.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(text.contains("DTSTART:20261201T193000Z\r\n"));
        assert!(text.contains("SUMMARY:Dune: Part Two\\, seats A-1\\, A-2\r\n"));
        assert!(text.contains("DESCRIPTION:Screen 1\\; doors open"));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "no bare line feeds"
        );
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_a_character() {
        let mut long = event();
        long.description = "é".repeat(100);

        let text = calendar(&long);

        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("DESCRIPTION:{}\r\n", "é".repeat(100))));
    }

    #[test]
    fn a_cancelled_entry_asks_calendars_to_remove_it() {
        let mut cancelled = event();
        cancelled.status = "CANCELLED";

        let text = calendar(&cancelled);

        assert!(text.contains("METHOD:CANCEL\r\n"));
        assert!(text.contains("STATUS:CANCELLED\r\n"));
    }

    #[test]
    fn a_qr_code_is_a_png_with_a_quiet_zone() {
        let png = qr_png("MQT1.payload.signature").expect("png");

        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("a png");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!(frame.width, frame.height);
        let quiet = QUIET_MODULES * MODULE_PIXELS;
        assert!(pixels[..quiet * frame.width as usize]
            .iter()
            .all(|p| *p == 255));
        assert!(pixels.contains(&0));
    }
}
