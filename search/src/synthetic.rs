//! A deterministic synthetic catalogue for the benchmark and the latency
//! example, so both measure the same index and the same queries.
//!
//! Cities are real US metros plus satellite towns around them, so "near me"
//! circles catch a realistic cluster of theaters; titles draw on a shared
//! word list, so a one-word search matches a few dozen movies.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use crate::{Error, GeoFilter, MovieDoc, MovieIndex, SearchQuery, ShowtimeDoc};

/// `SplitMix64`: tiny, fast and fully determined by its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`, or 0 when `bound` is 0.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniformly chosen item; `items` must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A random version-4 UUID.
    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

const METROS: [(&str, f64, f64); 60] = [
    ("New York, NY", 40.7128, -74.0060),
    ("Los Angeles, CA", 34.0522, -118.2437),
    ("Chicago, IL", 41.8781, -87.6298),
    ("Houston, TX", 29.7604, -95.3698),
    ("Phoenix, AZ", 33.4484, -112.0740),
    ("Philadelphia, PA", 39.9526, -75.1652),
    ("San Antonio, TX", 29.4241, -98.4936),
    ("San Diego, CA", 32.7157, -117.1611),
    ("Dallas, TX", 32.7767, -96.7970),
    ("San Jose, CA", 37.3382, -121.8863),
    ("Austin, TX", 30.2672, -97.7431),
    ("Jacksonville, FL", 30.3322, -81.6557),
    ("Columbus, OH", 39.9612, -82.9988),
    ("Charlotte, NC", 35.2271, -80.8431),
    ("Indianapolis, IN", 39.7684, -86.1581),
    ("San Francisco, CA", 37.7749, -122.4194),
    ("Seattle, WA", 47.6062, -122.3321),
    ("Denver, CO", 39.7392, -104.9903),
    ("Nashville, TN", 36.1627, -86.7816),
    ("Oklahoma City, OK", 35.4676, -97.5164),
    ("El Paso, TX", 31.7619, -106.4850),
    ("Boston, MA", 42.3601, -71.0589),
    ("Portland, OR", 45.5152, -122.6784),
    ("Las Vegas, NV", 36.1699, -115.1398),
    ("Detroit, MI", 42.3314, -83.0458),
    ("Memphis, TN", 35.1495, -90.0490),
    ("Louisville, KY", 38.2527, -85.7585),
    ("Baltimore, MD", 39.2904, -76.6122),
    ("Milwaukee, WI", 43.0389, -87.9065),
    ("Albuquerque, NM", 35.0844, -106.6504),
    ("Tucson, AZ", 32.2226, -110.9747),
    ("Fresno, CA", 36.7378, -119.7871),
    ("Sacramento, CA", 38.5816, -121.4944),
    ("Kansas City, MO", 39.0997, -94.5786),
    ("Atlanta, GA", 33.7490, -84.3880),
    ("Miami, FL", 25.7617, -80.1918),
    ("Raleigh, NC", 35.7796, -78.6382),
    ("Omaha, NE", 41.2565, -95.9345),
    ("Minneapolis, MN", 44.9778, -93.2650),
    ("Tulsa, OK", 36.1540, -95.9928),
    ("Cleveland, OH", 41.4993, -81.6944),
    ("New Orleans, LA", 29.9511, -90.0715),
    ("Tampa, FL", 27.9506, -82.4572),
    ("Pittsburgh, PA", 40.4406, -79.9959),
    ("Cincinnati, OH", 39.1031, -84.5120),
    ("St. Louis, MO", 38.6270, -90.1994),
    ("Orlando, FL", 28.5383, -81.3792),
    ("Salt Lake City, UT", 40.7608, -111.8910),
    ("Richmond, VA", 37.5407, -77.4360),
    ("Buffalo, NY", 42.8864, -78.8784),
    ("Boise, ID", 43.6150, -116.2023),
    ("Spokane, WA", 47.6588, -117.4260),
    ("Des Moines, IA", 41.5868, -93.6250),
    ("Birmingham, AL", 33.5186, -86.8104),
    ("Little Rock, AR", 34.7465, -92.2896),
    ("Charleston, SC", 32.7765, -79.9311),
    ("Portland, ME", 43.6591, -70.2568),
    ("Billings, MT", 45.7833, -108.5007),
    ("Fargo, ND", 46.8772, -96.7898),
    ("Anchorage, AK", 61.2181, -149.9003),
];

const TOWN_NAMES: [&str; 12] = [
    "Heights", "Park", "Springs", "Falls", "Valley", "Grove", "Hills", "Ridge", "Lake", "Point",
    "Meadows", "Crossing",
];

const CHAINS: [&str; 8] = [
    "Regal",
    "AMC",
    "Cinemark",
    "Alamo Drafthouse",
    "Landmark",
    "Marcus",
    "Harkins",
    "Showcase",
];

/// Title words; with 3,200 titles of one to three words, each word appears
/// in a few dozen titles.
pub const TITLE_WORDS: [&str; 120] = [
    "midnight", "river", "shadow", "empire", "storm", "garden", "silent", "crimson", "echo",
    "harbor", "winter", "summer", "ghost", "kingdom", "iron", "glass", "desert", "ocean", "velvet",
    "thunder", "hollow", "signal", "paper", "golden", "broken", "wild", "electric", "northern",
    "last", "first", "little", "lost", "secret", "hidden", "burning", "frozen", "blue", "scarlet",
    "silver", "black", "white", "city", "road", "house", "island", "mountain", "station", "letter",
    "dream", "promise", "witness", "heart", "machine", "orchard", "comet", "lantern", "tide",
    "forest", "canyon", "prairie", "horizon", "voyage", "journey", "return", "legacy", "game",
    "heist", "vendetta", "requiem", "ballad", "symphony", "carnival", "circus", "dynasty",
    "frontier", "outlaw", "sheriff", "pilot", "captain", "doctor", "stranger", "daughter",
    "brother", "mother", "father", "sister", "queen", "king", "prince", "thief", "spy", "soldier",
    "dancer", "painter", "poet", "hunter", "wolf", "raven", "tiger", "falcon", "dragon", "serpent",
    "phoenix", "rose", "lily", "orchid", "maple", "cedar", "willow", "harvest", "eclipse",
    "aurora", "nebula", "galaxy", "planet", "orbit", "quantum", "cipher", "protocol", "anthem",
];

const FIRST_NAMES: [&str; 24] = [
    "Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Kenji", "Priya", "Omar", "Lena",
    "Jonas", "Chloe", "Diego", "Amara", "Felix", "Mara", "Ivan", "Nora", "Theo", "Yara", "Hugo",
    "Iris", "Rafael",
];

const LAST_NAMES: [&str; 24] = [
    "Garcia",
    "Smith",
    "Tanaka",
    "Okafor",
    "Novak",
    "Moreau",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Lindqvist",
    "Brennan",
    "Castillo",
    "Nakamura",
    "Petrov",
    "Adeyemi",
    "Fischer",
    "Silva",
    "Kim",
    "Walsh",
    "Duarte",
    "Sato",
    "Larsen",
    "Mendez",
    "Quinn",
];

const SYNOPSIS_WORDS: [&str; 40] = [
    "a",
    "the",
    "young",
    "old",
    "reluctant",
    "detective",
    "family",
    "town",
    "war",
    "love",
    "must",
    "uncover",
    "escape",
    "before",
    "after",
    "during",
    "betrayal",
    "truth",
    "friends",
    "rivals",
    "mission",
    "past",
    "future",
    "small",
    "across",
    "against",
    "together",
    "alone",
    "discovers",
    "mysterious",
    "dangerous",
    "unlikely",
    "journey",
    "world",
    "night",
    "time",
    "revenge",
    "hope",
    "survive",
    "forgotten",
];

const GENRES: [&str; 14] = [
    "action",
    "adventure",
    "animation",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "horror",
    "romance",
    "sci-fi",
    "thriller",
    "western",
];

/// A city with its centre.
#[derive(Debug, Clone)]
pub struct City {
    /// Display name such as `Boston, MA`.
    pub name: String,
    /// Latitude of the centre.
    pub latitude: f64,
    /// Longitude of the centre.
    pub longitude: f64,
}

/// A theater in one of the cities.
#[derive(Debug, Clone)]
pub struct Theater {
    /// Theater id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Index into [`Catalogue::cities`].
    pub city: usize,
    /// Latitude of the theater.
    pub latitude: f64,
    /// Longitude of the theater.
    pub longitude: f64,
}

/// The four query shapes the latency targets are set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A word or two of a title, or a word being typed.
    Text,
    /// Text plus the city the person is in.
    TextInCity,
    /// One day's showtimes in one format.
    DayAndFormat,
    /// Tomorrow's showtimes within 25 km of a point.
    NearTomorrow,
}

impl QueryKind {
    /// Every kind, in the order mixed workloads cycle through them.
    pub const ALL: [QueryKind; 4] = [
        QueryKind::Text,
        QueryKind::TextInCity,
        QueryKind::DayAndFormat,
        QueryKind::NearTomorrow,
    ];
}

/// Movies, cities and theaters, plus generators of showtimes and queries.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The movies.
    pub movies: Vec<MovieDoc>,
    /// The cities theaters are in.
    pub cities: Vec<City>,
    /// The theaters showtimes are at.
    pub theaters: Vec<Theater>,
    /// Midnight UTC of the first day of showtimes.
    pub start: DateTime<Utc>,
    /// Days of showtimes.
    pub days: u32,
    seed: u64,
}

/// Moves a point `km` kilometres along a bearing, on a locally flat Earth.
fn offset(lat: f64, lon: f64, km: f64, bearing: f64) -> (f64, f64) {
    let d_lat = km * bearing.cos() / 111.2;
    let d_lon = km * bearing.sin() / (111.2 * lat.to_radians().cos());
    (lat + d_lat, lon + d_lon)
}

impl Catalogue {
    /// The benchmark catalogue: 3,200 movies, 300 cities, 1,000 theaters and
    /// 14 days from 1 June 2025.
    pub fn standard() -> Self {
        Self::new(7, 3_200, 300, 1_000, 14)
    }

    /// A catalogue of the given size, fully determined by `seed`.
    pub fn new(seed: u64, movies: usize, cities: usize, theaters: usize, days: u32) -> Self {
        let mut rng = Rng::new(seed);
        let mut city_list: Vec<City> = METROS
            .iter()
            .take(cities)
            .map(|&(name, latitude, longitude)| City {
                name: name.to_owned(),
                latitude,
                longitude,
            })
            .collect();
        while city_list.len() < cities {
            let (metro, lat, lon) = *rng.pick(&METROS);
            let (base, state) = metro.split_once(", ").unwrap_or((metro, ""));
            let (latitude, longitude) = offset(
                lat,
                lon,
                8.0 + 52.0 * rng.unit(),
                std::f64::consts::TAU * rng.unit(),
            );
            let town = rng.pick(&TOWN_NAMES);
            let mut name = format!("{base} {town}, {state}");
            // Numbered once the metros' town names run out, so any number of
            // cities can be asked for.
            let mut number = 2;
            while city_list.iter().any(|city| city.name == name) {
                name = format!("{base} {town} {number}, {state}");
                number += 1;
            }
            city_list.push(City {
                name,
                latitude,
                longitude,
            });
        }
        let theater_list = (0..theaters)
            .map(|n| {
                let city = if n < city_list.len() {
                    n
                } else {
                    rng.below(city_list.len())
                };
                let (latitude, longitude) = offset(
                    city_list[city].latitude,
                    city_list[city].longitude,
                    6.0 * rng.unit(),
                    std::f64::consts::TAU * rng.unit(),
                );
                let town = city_list[city]
                    .name
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                Theater {
                    id: rng.uuid(),
                    name: format!("{} {town} {}", rng.pick(&CHAINS), n % 7 + 1),
                    city,
                    latitude,
                    longitude,
                }
            })
            .collect();
        let movie_list = (0..movies).map(|_| movie(&mut rng)).collect();
        Self {
            movies: movie_list,
            cities: city_list,
            theaters: theater_list,
            start: Utc
                .with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            days,
            seed,
        }
    }

    /// Showtime number `n`; the same `n` always gives the same showtime.
    pub fn showtime(&self, n: u64) -> ShowtimeDoc {
        let mut rng = Rng::new(self.seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let movie = &self.movies[rng.below(self.movies.len())];
        let theater = &self.theaters[rng.below(self.theaters.len())];
        let day = rng.below(self.days as usize) as i64;
        // Screenings run from noon to about midnight in US time zones, which
        // is 16:00 to 07:15 the next day in UTC.
        let minutes = 16 * 60 + 15 * rng.below(62) as i64;
        let format = match rng.below(20) {
            0..=11 => "2d",
            12..=16 => "3d",
            _ => "imax",
        };
        let language = match rng.below(100) {
            0..=77 => "en",
            78..=89 => "es",
            90..=93 => "fr",
            94..=96 => "ja",
            _ => "ko",
        };
        let surcharge = if format == "imax" { 500 } else { 0 };
        ShowtimeDoc {
            id: rng.uuid(),
            movie_id: movie.id,
            theater_id: theater.id,
            theater_name: theater.name.clone(),
            city: self.cities[theater.city].name.clone(),
            latitude: theater.latitude,
            longitude: theater.longitude,
            starts_at: self.start + Duration::days(day) + Duration::minutes(minutes),
            format: format.to_owned(),
            language: language.to_owned(),
            min_price_cents: 700 + 50 * rng.below(37) as i64 + surcharge,
            seats_available: rng.below(301) as i32,
        }
    }

    /// Indexes the movies and `showtimes` showtimes in batches of `batch`.
    pub fn load(&self, index: &MovieIndex, showtimes: u64, batch: usize) -> Result<(), Error> {
        index.upsert_movies(&self.movies)?;
        let mut next = 0;
        while next < showtimes {
            let end = (next + batch.max(1) as u64).min(showtimes);
            let docs: Vec<ShowtimeDoc> = (next..end).map(|n| self.showtime(n)).collect();
            index.upsert_showtimes(&docs)?;
            next = end;
        }
        Ok(())
    }

    /// Query number `n` of a kind; the same `n` always gives the same query.
    pub fn query(&self, kind: QueryKind, n: u64) -> SearchQuery {
        let mut rng = Rng::new(self.seed.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let day = |rng: &mut Rng| self.start + Duration::days(rng.below(self.days as usize) as i64);
        let base = SearchQuery {
            limit: 20,
            showtimes_per_hit: 3,
            ..SearchQuery::default()
        };
        match kind {
            QueryKind::Text => SearchQuery {
                text: Some(self.text(&mut rng)),
                ..base
            },
            QueryKind::TextInCity => SearchQuery {
                text: Some(self.text(&mut rng)),
                city: Some(rng.pick(&self.cities).name.clone()),
                ..base
            },
            QueryKind::DayAndFormat => {
                let from = day(&mut rng);
                SearchQuery {
                    from: Some(from),
                    to: Some(from + Duration::days(1)),
                    formats: vec![(*rng.pick(&["2d", "3d", "imax"])).to_owned()],
                    ..base
                }
            }
            QueryKind::NearTomorrow => {
                let city = rng.pick(&self.cities);
                let (latitude, longitude) = offset(
                    city.latitude,
                    city.longitude,
                    10.0 * rng.unit(),
                    std::f64::consts::TAU * rng.unit(),
                );
                let tomorrow = self.start + Duration::days(1);
                SearchQuery {
                    near: Some(GeoFilter {
                        latitude,
                        longitude,
                        radius_km: 25.0,
                    }),
                    from: Some(tomorrow),
                    to: Some(tomorrow + Duration::days(1)),
                    ..base
                }
            }
        }
    }

    /// A title word, two words of a real title, or the start of a word as
    /// someone types it.
    fn text(&self, rng: &mut Rng) -> String {
        match rng.below(3) {
            0 => (*rng.pick(&TITLE_WORDS)).to_owned(),
            1 => {
                let title = &rng.pick(&self.movies).title;
                title.split(' ').take(2).collect::<Vec<_>>().join(" ")
            }
            _ => {
                let word = rng.pick(&TITLE_WORDS);
                word[..word.len().min(4)].to_owned()
            }
        }
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn person(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES))
}

fn movie(rng: &mut Rng) -> MovieDoc {
    let words = 1 + rng.below(3);
    let mut title: Vec<String> = (0..words)
        .map(|_| {
            let word: &&str = rng.pick(&TITLE_WORDS);
            capitalised(word)
        })
        .collect();
    if rng.below(4) == 0 {
        title.insert(0, "The".to_owned());
    }
    let synopsis: Vec<&str> = (0..12 + rng.below(14))
        .map(|_| *rng.pick(&SYNOPSIS_WORDS))
        .collect();
    let mut genres: Vec<String> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let genre = (*rng.pick(&GENRES)).to_owned();
        if !genres.contains(&genre) {
            genres.push(genre);
        }
    }
    // Vote counts spread over five orders of magnitude, most films at the
    // low end, as on public rating sites.
    let votes = 10f64.powf(1.0 + 5.5 * rng.unit().powi(2)) as i64;
    MovieDoc {
        id: rng.uuid(),
        title: title.join(" "),
        director: Some(person(rng)),
        cast: (0..3 + rng.below(3)).map(|_| person(rng)).collect(),
        synopsis: Some(synopsis.join(" ")),
        genres,
        release_year: Some(1970 + rng.below(56) as i32),
        rating: Some((20 + rng.below(76)) as f64 / 10.0),
        votes: Some(votes),
    }
}
