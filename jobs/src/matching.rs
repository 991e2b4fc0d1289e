//! Whether a subscription's filter matches a new showtime or release.

use marquee_storage::subscriptions::Filter;
use uuid::Uuid;

/// What a filter is matched against when a showtime is scheduled.
#[derive(Debug, Clone)]
pub struct ShowtimeFacts<'a> {
    pub movie_id: Uuid,
    pub title: &'a str,
    pub genres: &'a [String],
    pub theater_id: Uuid,
    /// Lower-cased.
    pub city: &'a str,
    pub latitude: f64,
    pub longitude: f64,
    pub format: &'a str,
}

/// The lower-cased words of a title or query: runs of letters and digits,
/// so "Spider-Man: No Way Home" has "spider" and "man".
pub fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words
}

fn title_has(filter: &Filter, title: &str) -> bool {
    if filter.title_words.is_empty() {
        return true;
    }
    let title = words(title);
    filter
        .title_words
        .iter()
        .all(|word| title.binary_search(word).is_ok())
}

fn genre_in(filter: &Filter, genres: &[String]) -> bool {
    filter
        .genre
        .as_ref()
        .is_none_or(|genre| genres.iter().any(|g| g.eq_ignore_ascii_case(genre)))
}

/// A new showtime matches a filter that is neither a seat watch nor
/// movie-level (those hear of releases) when every filter it sets holds.
pub fn matches_showtime(filter: &Filter, showtime: &ShowtimeFacts<'_>) -> bool {
    filter.showtime_id.is_none()
        && !filter.is_movie_level()
        && filter.movie_id.is_none_or(|id| id == showtime.movie_id)
        && filter.theater_id.is_none_or(|id| id == showtime.theater_id)
        && filter
            .format
            .as_ref()
            .is_none_or(|format| format == showtime.format)
        && filter
            .city
            .as_ref()
            .is_none_or(|city| city == showtime.city)
        && filter.near.is_none_or(|near| {
            marquee_search::haversine_km(
                near.latitude,
                near.longitude,
                showtime.latitude,
                showtime.longitude,
            ) <= near.radius_km
        })
        && genre_in(filter, showtime.genres)
        && title_has(filter, showtime.title)
}

/// A new release matches a movie-level filter (title words, genre) whose
/// filters all hold.
pub fn matches_release(filter: &Filter, title: &str, genres: &[String]) -> bool {
    filter.is_movie_level() && genre_in(filter, genres) && title_has(filter, title)
}

#[cfg(test)]
mod tests {
    use marquee_storage::subscriptions::Near;

    use super::*;

    fn dune() -> (Uuid, Uuid, Vec<String>) {
        (
            Uuid::new_v4(),
            Uuid::new_v4(),
            vec!["science-fiction".to_owned(), "adventure".to_owned()],
        )
    }

    fn facts<'a>(movie: Uuid, theater: Uuid, genres: &'a [String]) -> ShowtimeFacts<'a> {
        ShowtimeFacts {
            movie_id: movie,
            title: "Dune: Part Two",
            genres,
            theater_id: theater,
            city: "boston",
            latitude: 42.3554,
            longitude: -71.0640,
            format: "imax",
        }
    }

    #[test]
    fn words_split_on_punctuation_and_ignore_case() {
        assert_eq!(
            words("Spider-Man: No Way HOME"),
            ["home", "man", "no", "spider", "way"]
        );
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn a_showtime_matches_when_every_filter_holds() {
        let (movie, theater, genres) = dune();
        let filter = Filter {
            movie_id: Some(movie),
            title_words: vec!["dune".to_owned()],
            genre: Some("adventure".to_owned()),
            city: Some("boston".to_owned()),
            theater_id: Some(theater),
            format: Some("imax".to_owned()),
            ..Filter::default()
        };
        assert!(matches_showtime(&filter, &facts(movie, theater, &genres)));
    }

    #[test]
    fn one_failing_filter_is_enough_to_miss() {
        let (movie, theater, genres) = dune();
        let showtime = facts(movie, theater, &genres);
        let misses = [
            Filter {
                movie_id: Some(Uuid::new_v4()),
                ..Filter::default()
            },
            Filter {
                title_words: vec!["dune".to_owned(), "messiah".to_owned()],
                city: Some("boston".to_owned()),
                ..Filter::default()
            },
            Filter {
                genre: Some("horror".to_owned()),
                city: Some("boston".to_owned()),
                ..Filter::default()
            },
            Filter {
                city: Some("cambridge".to_owned()),
                ..Filter::default()
            },
            Filter {
                theater_id: Some(Uuid::new_v4()),
                ..Filter::default()
            },
            Filter {
                format: Some("3d".to_owned()),
                ..Filter::default()
            },
            Filter {
                showtime_id: Some(Uuid::new_v4()),
                ..Filter::default()
            },
        ];
        for filter in misses {
            assert!(!matches_showtime(&filter, &showtime), "{filter:?} matched");
        }
    }

    #[test]
    fn movie_level_filters_hear_of_releases_not_of_each_showtime() {
        let (movie, theater, genres) = dune();
        let showtime = facts(movie, theater, &genres);
        let by_genre = Filter {
            genre: Some("adventure".to_owned()),
            ..Filter::default()
        };
        assert!(!matches_showtime(&by_genre, &showtime));
        assert!(matches_release(&by_genre, "Dune: Part Two", &genres));
        let in_city = Filter {
            city: Some("boston".to_owned()),
            ..by_genre
        };
        assert!(matches_showtime(&in_city, &showtime));
    }

    #[test]
    fn a_radius_counts_great_circle_distance() {
        let (movie, theater, genres) = dune();
        let showtime = facts(movie, theater, &genres);
        // Cambridge, MA is about 4.5 km from Boston Common.
        let near = |radius_km| Filter {
            near: Some(Near {
                latitude: 42.3736,
                longitude: -71.1097,
                radius_km,
            }),
            ..Filter::default()
        };
        assert!(matches_showtime(&near(5.0), &showtime));
        assert!(!matches_showtime(&near(3.0), &showtime));
    }

    #[test]
    fn only_movie_level_filters_hear_of_releases() {
        let genres = vec!["horror".to_owned()];
        let by_genre = Filter {
            genre: Some("horror".to_owned()),
            ..Filter::default()
        };
        let by_title = Filter {
            title_words: vec!["nosferatu".to_owned()],
            ..Filter::default()
        };
        let in_city = Filter {
            city: Some("boston".to_owned()),
            ..by_genre.clone()
        };
        assert!(matches_release(&by_genre, "Nosferatu", &genres));
        assert!(matches_release(&by_title, "Nosferatu", &genres));
        assert!(!matches_release(&by_title, "Nope", &genres));
        assert!(!matches_release(&in_city, "Nosferatu", &genres));
    }
}
