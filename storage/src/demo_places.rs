//! Theaters, screens and showtimes for the demo catalogue, placed in real
//! US cities from `data/zipcodes.csv` (GeoNames via `vega-datasets`, CC
//! BY 4.0). Everything here is deterministic, so seeding twice writes the same
//! rows.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use siphasher::sip::SipHasher13;
use uuid::Uuid;

use crate::layout::{Prices, SeatKind, SeatLayout};
use crate::movies::NewMovie;
use crate::theaters::{OpeningHours, TheaterInfo};
use crate::Error;

/// A postal code with its coordinates.
pub type Place = (String, f64, f64);

/// A city and the postal codes it has, the count standing in for size.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub name: String,
    pub state: String,
    pub places: Vec<Place>,
}

/// Reads the postal-code file and returns cities, largest first.
pub fn load_cities(path: &Path) -> Result<Vec<City>, Error> {
    let unreadable = |reason: String| Error::DemoData {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|err| unreadable(err.to_string()))?;
    let mut cities: BTreeMap<(String, String), Vec<Place>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [zip, lat, lon, city, state, ..] = fields.as_slice() else {
            continue;
        };
        let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), lon.parse::<f64>()) else {
            continue;
        };
        if timezone(state).is_none() {
            continue;
        }
        cities
            .entry(((*city).to_owned(), (*state).to_owned()))
            .or_default()
            .push(((*zip).to_owned(), lat, lon));
    }
    let mut cities: Vec<City> = cities
        .into_iter()
        .map(|((name, state), places)| City {
            name,
            state,
            places,
        })
        .collect();
    cities.sort_by(|a, b| {
        b.places
            .len()
            .cmp(&a.places.len())
            .then(a.name.cmp(&b.name))
    });
    Ok(cities)
}

/// The main IANA zone of a US state; states split between zones get the
/// zone most of their people live in.
pub fn timezone(state: &str) -> Option<&'static str> {
    Some(match state {
        "CT" | "DE" | "DC" | "FL" | "GA" | "IN" | "KY" | "ME" | "MD" | "MA" | "MI" | "NH"
        | "NJ" | "NY" | "NC" | "OH" | "PA" | "RI" | "SC" | "VT" | "VA" | "WV" => "America/New_York",
        "AL" | "AR" | "IL" | "IA" | "KS" | "LA" | "MN" | "MS" | "MO" | "NE" | "ND" | "OK"
        | "SD" | "TN" | "TX" | "WI" => "America/Chicago",
        "CO" | "ID" | "MT" | "NM" | "UT" | "WY" => "America/Denver",
        "AZ" => "America/Phoenix",
        "CA" | "NV" | "OR" | "WA" => "America/Los_Angeles",
        "AK" => "America/Anchorage",
        "HI" => "Pacific/Honolulu",
        _ => return None,
    })
}

fn hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x6d61_7271, 0x7365_6564);
    for part in parts {
        hasher.write(part);
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// A stable UUIDv7-shaped id from a name, so seeding twice finds the row.
pub fn stable_id(name: &str) -> Uuid {
    let high = hash(&[name.as_bytes(), b"high"]);
    let low = hash(&[name.as_bytes(), b"low"]);
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&low.to_le_bytes());
    bytes[8..].copy_from_slice(&high.to_le_bytes()[..2]);
    // A fixed timestamp keeps demo ids apart from ids made at run time.
    uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000, &bytes).into_uuid()
}

const STREETS: [&str; 8] = [
    "Main St",
    "Broadway",
    "Market St",
    "Center Ave",
    "Park Ave",
    "Oak St",
    "Elm St",
    "1st Ave",
];

/// A demo theater in a city.
pub fn theater(city: &City, number: usize) -> (Uuid, TheaterInfo) {
    let key = format!("theater:{}:{}:{number}", city.name, city.state);
    let id = stable_id(&key);
    let h = hash(&[key.as_bytes()]);
    let place = &city.places[(h as usize) % city.places.len()];
    let street = STREETS[(h >> 8) as usize % STREETS.len()];
    let time = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN);
    let opening_hours = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| OpeningHours {
            day: (*day).to_owned(),
            opens: time(10, 0),
            closes: time(23, 30),
        })
        .collect();
    let info = TheaterInfo {
        name: format!(
            "Marquee {} {}",
            city.name,
            [
                "Central",
                "Plaza",
                "Riverside",
                "Uptown",
                "Westgate",
                "Eastside"
            ][number % 6]
        ),
        country: "US".to_owned(),
        region: Some(city.state.clone()),
        city: city.name.clone(),
        street: format!("{} {street} (demo address)", 100 + (h >> 16) % 1900),
        postcode: place.0.clone(),
        latitude: place.1,
        longitude: place.2,
        timezone: timezone(&city.state)
            .unwrap_or("America/New_York")
            .to_owned(),
        opening_hours,
        demo_generated: true,
    };
    (id, info)
}

/// Screen `number` of a theater: sizes vary like a real multiplex, with
/// the largest screen IMAX.
pub fn screen(theater: Uuid, number: usize, screens: usize) -> (Uuid, String, SeatLayout, bool) {
    let id = stable_id(&format!("screen:{theater}:{number}"));
    let imax = number == 0 && screens >= 4;
    let layout = if imax {
        SeatLayout::generate(18, 28, 7, 3)
    } else {
        match number % 3 {
            0 => SeatLayout::generate(14, 20, 5, 2),
            1 => SeatLayout::generate(10, 16, 4, 2),
            _ => SeatLayout::generate(8, 12, 6, 1),
        }
    };
    let name = if imax {
        "IMAX".to_owned()
    } else {
        format!("Screen {}", number + 1)
    };
    (id, name, layout, imax)
}

/// A showtime the seed writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedShowtime {
    pub id: Uuid,
    pub movie_id: Uuid,
    pub theater_id: Uuid,
    pub screen_id: Uuid,
    pub layout: SeatLayout,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub format: String,
    pub language: String,
    pub prices: Prices,
}

fn prices(imax: bool, evening: bool) -> Prices {
    let base = if imax { 1_800 } else { 1_200 } + if evening { 200 } else { 0 };
    [
        (SeatKind::Standard, base),
        (SeatKind::Premium, base + 400),
        (SeatKind::Wheelchair, base),
        (SeatKind::Companion, base),
    ]
    .into_iter()
    .collect()
}

/// One screen's programme for one local day: back-to-back showtimes from
/// late morning until closing, each followed by `turnaround`.
#[allow(clippy::too_many_arguments)]
pub fn screen_day(
    theater: Uuid,
    zone: &chrono_tz::Tz,
    screen: (Uuid, &SeatLayout, bool),
    day: NaiveDate,
    movies: &[NewMovie],
    turnaround: Duration,
) -> Vec<SeedShowtime> {
    let (screen_id, layout, imax) = screen;
    let mut out = Vec::new();
    let Some(open) = day.and_hms_opt(11, 0, 0) else {
        return out;
    };
    let Some(last_start) = day.and_hms_opt(22, 0, 0) else {
        return out;
    };
    let key = format!("{screen_id}:{day}");
    let mut h = hash(&[key.as_bytes()]);
    // Screens stagger their first show so the lobby is not flooded at once.
    let mut local = open + Duration::minutes(((h % 6) * 15) as i64);
    let mut slot = 0u64;
    while local <= last_start && !movies.is_empty() {
        // Each screen runs one movie for the day, as multiplexes do, with
        // a second feature in the evening.
        let pick = if slot < 2 { h } else { h >> 20 };
        let movie = &movies[(pick as usize) % movies.len()];
        let runtime = Duration::minutes(i64::from(movie.runtime_minutes.unwrap_or(100)));
        let Some(starts_local) = zone.from_local_datetime(&local).earliest() else {
            break;
        };
        let starts_at = starts_local.with_timezone(&Utc);
        let ends_at = starts_at + runtime + turnaround;
        let evening = local.time() >= NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN);
        let format = if imax {
            "imax"
        } else if h.is_multiple_of(5) {
            "3d"
        } else {
            "2d"
        };
        let language = if h.is_multiple_of(11) { "es" } else { "en" };
        out.push(SeedShowtime {
            id: marquee_sharding::ids::scoped_stable(
                movie.id,
                hash(&[
                    screen_id.as_bytes(),
                    &starts_at.timestamp().to_be_bytes(),
                    theater.as_bytes(),
                ]),
            ),
            movie_id: movie.id,
            theater_id: theater,
            screen_id,
            layout: layout.clone(),
            starts_at,
            ends_at,
            format: format.to_owned(),
            language: language.to_owned(),
            prices: prices(imax, evening),
        });
        // Next show starts on a quarter hour after this one has cleared.
        let next = local + runtime + turnaround;
        let minutes = i64::from(chrono::Timelike::minute(&next.time()));
        local = next + Duration::minutes((15 - minutes % 15) % 15);
        slot += 1;
        h = h.rotate_left(7);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data")
            .join(name)
    }

    #[test]
    fn cities_come_largest_first_with_real_coordinates() {
        let cities = load_cities(&data("zipcodes.csv")).expect("zipcodes load");
        assert!(cities.len() > 10_000);
        let biggest = &cities[0];
        assert!(
            biggest.places.len() > 50,
            "{} has {}",
            biggest.name,
            biggest.places.len()
        );
        assert!(cities
            .iter()
            .take(50)
            .all(|c| (18.0..72.0).contains(&c.places[0].1)));
    }

    #[test]
    fn a_screen_day_never_overlaps_itself_and_is_stable() {
        let zone: chrono_tz::Tz = "America/New_York".parse().expect("zone");
        let movies = crate::demo::load_movies(&data("movies.json")).expect("movies");
        let movies: Vec<NewMovie> = movies
            .into_iter()
            .filter(|m| m.runtime_minutes.is_some())
            .take(50)
            .collect();
        let layout = SeatLayout::generate(10, 12, 4, 1);
        let theater = stable_id("t");
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let first = screen_day(
            theater,
            &zone,
            (stable_id("s"), &layout, false),
            day,
            &movies,
            Duration::minutes(20),
        );
        let again = screen_day(
            theater,
            &zone,
            (stable_id("s"), &layout, false),
            day,
            &movies,
            Duration::minutes(20),
        );
        assert_eq!(first, again);
        assert!(first.len() >= 3, "only {} shows", first.len());
        for pair in first.windows(2) {
            assert!(pair[0].ends_at <= pair[1].starts_at);
        }
        for show in &first {
            assert!(marquee_sharding::ids::is_scoped_to(show.id, show.movie_id));
        }
    }
}
