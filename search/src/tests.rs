use chrono::{Duration, TimeZone};

use super::*;
use crate::synthetic::{Catalogue, QueryKind};

fn movie(title: &str, director: &str, year: i32) -> MovieDoc {
    MovieDoc {
        id: Uuid::now_v7(),
        title: title.to_owned(),
        director: Some(director.to_owned()),
        cast: Vec::new(),
        synopsis: None,
        genres: vec!["drama".to_owned()],
        release_year: Some(year),
        rating: None,
        votes: None,
    }
}

fn catalogue() -> (MovieIndex, Vec<MovieDoc>) {
    let index = MovieIndex::new().expect("index");
    let movies = vec![
        movie("The Godfather", "Francis Ford Coppola", 1972),
        movie("Goodfellas", "Martin Scorsese", 1990),
        movie("Heat", "Michael Mann", 1995),
    ];
    index.upsert_movies(&movies).expect("upsert");
    (index, movies)
}

fn text(words: &str) -> SearchQuery {
    SearchQuery {
        text: Some(words.to_owned()),
        ..SearchQuery::default()
    }
}

fn ids(results: &SearchResults) -> Vec<Uuid> {
    results.hits.iter().map(|hit| hit.id).collect()
}

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

const BOSTON: (f64, f64) = (42.3601, -71.0589);

/// A showtime of `movie` in Boston at noon; tests change what they filter on.
fn showtime(movie: &MovieDoc) -> ShowtimeDoc {
    ShowtimeDoc {
        id: Uuid::now_v7(),
        movie_id: movie.id,
        theater_id: Uuid::nil(),
        theater_name: "Coolidge Corner".to_owned(),
        city: "Boston, MA".to_owned(),
        latitude: BOSTON.0,
        longitude: BOSTON.1,
        starts_at: noon(),
        format: "2d".to_owned(),
        language: "en".to_owned(),
        min_price_cents: 1_500,
        seats_available: 100,
    }
}

/// Heat and Goodfellas each get one showtime, shaped by the closures; The
/// Godfather gets none.
fn with_showtimes(
    heat: impl FnOnce(&mut ShowtimeDoc),
    goodfellas: impl FnOnce(&mut ShowtimeDoc),
) -> (MovieIndex, Vec<MovieDoc>) {
    let (index, movies) = catalogue();
    let mut first = showtime(&movies[2]);
    heat(&mut first);
    let mut second = showtime(&movies[1]);
    goodfellas(&mut second);
    index.upsert_showtimes(&[first, second]).expect("upsert");
    (index, movies)
}

#[test]
fn a_title_with_a_typo_still_finds_the_movie() {
    let (index, movies) = catalogue();
    let results = index.search(&text("godfathr")).expect("search");
    assert_eq!(results.hits.first().map(|h| h.id), Some(movies[0].id));
}

#[test]
fn a_prefix_finds_the_movie_as_a_person_types() {
    let (index, movies) = catalogue();
    let results = index.search(&text("goodf")).expect("search");
    assert_eq!(results.hits.first().map(|h| h.id), Some(movies[1].id));
}

#[test]
fn a_director_finds_their_movies() {
    let (index, movies) = catalogue();
    let results = index.search(&text("scorsese")).expect("search");
    assert_eq!(ids(&results), vec![movies[1].id]);
}

#[test]
fn upserting_a_movie_again_replaces_it() {
    let (index, mut movies) = catalogue();
    movies[2].title = "Heat (Director's Cut)".to_owned();
    index.upsert_movies(&movies[2..]).expect("upsert");
    assert_eq!(index.len(), 3);
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(results.hits[0].title, "Heat (Director's Cut)");
}

#[test]
fn query_syntax_characters_are_searched_as_words() {
    let (index, movies) = catalogue();
    for query in ["\"unbalanced: (quote", "heat: -+~^*[]{}", "!!!", ""] {
        let results = index.search(&text(query)).expect("no syntax errors");
        if query.starts_with("heat") {
            assert_eq!(ids(&results), vec![movies[2].id]);
        }
    }
}

#[test]
fn cast_and_synopsis_words_match() {
    let (index, mut movies) = catalogue();
    movies[2].cast = vec!["Al Pacino".to_owned(), "Robert De Niro".to_owned()];
    movies[1].synopsis = Some("A young man rises through the mob.".to_owned());
    index.upsert_movies(&movies).expect("upsert");
    let by_cast = index.search(&text("pacino")).expect("search");
    assert_eq!(ids(&by_cast), vec![movies[2].id]);
    let by_synopsis = index.search(&text("mob")).expect("search");
    assert_eq!(ids(&by_synopsis), vec![movies[1].id]);
    let across_fields = index.search(&text("heat niro")).expect("search");
    assert_eq!(ids(&across_fields), vec![movies[2].id]);
}

#[test]
fn a_title_match_outranks_a_synopsis_match() {
    let (index, mut movies) = catalogue();
    movies[0].synopsis = Some("Tensions heat up in the family.".to_owned());
    index.upsert_movies(&movies).expect("upsert");
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(ids(&results), vec![movies[2].id, movies[0].id]);
}

#[test]
fn the_genre_filter_keeps_movies_of_any_listed_genre() {
    let (index, mut movies) = catalogue();
    movies[0].genres = vec!["crime".to_owned()];
    movies[2].genres = vec!["action".to_owned(), "thriller".to_owned()];
    index.upsert_movies(&movies).expect("upsert");
    let results = index
        .search(&SearchQuery {
            genres: vec!["Crime".to_owned(), "thriller".to_owned()],
            ..SearchQuery::default()
        })
        .expect("search");
    let mut found = ids(&results);
    found.sort();
    let mut expected = vec![movies[0].id, movies[2].id];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn the_city_filter_matches_the_display_name_ignoring_case() {
    let (index, movies) = with_showtimes(|_| {}, |s| s.city = "Cambridge, MA".to_owned());
    let results = index
        .search(&SearchQuery {
            city: Some("BOSTON, ma".to_owned()),
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(ids(&results), vec![movies[2].id]);
    assert_eq!(results.hits[0].showtimes[0].city, "Boston, MA");
    let partial = index
        .search(&SearchQuery {
            city: Some("Boston".to_owned()),
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(partial.total, 0);
}

#[test]
fn a_radius_includes_a_theater_10_km_away_and_excludes_one_60_km_away() {
    // A degree of latitude is about 111.2 km.
    let (index, movies) = with_showtimes(
        |s| s.latitude = BOSTON.0 + 10.0 / 111.2,
        |s| s.latitude = BOSTON.0 - 60.0 / 111.2,
    );
    let results = index
        .search(&SearchQuery {
            near: Some(GeoFilter {
                latitude: BOSTON.0,
                longitude: BOSTON.1,
                radius_km: 25.0,
            }),
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(ids(&results), vec![movies[2].id]);
    let distance = results.hits[0].showtimes[0].distance_km.expect("distance");
    assert!((distance - 10.0).abs() < 0.1, "{distance}");
}

#[test]
fn a_date_range_includes_its_start_and_excludes_its_end() {
    let (index, movies) = with_showtimes(|_| {}, |s| s.starts_at = noon() + Duration::hours(3));
    let window = |from: DateTime<Utc>, to: DateTime<Utc>| {
        let results = index
            .search(&SearchQuery {
                from: Some(from),
                to: Some(to),
                ..SearchQuery::default()
            })
            .expect("search");
        ids(&results)
    };
    let three = noon() + Duration::hours(3);
    assert_eq!(window(noon(), three), vec![movies[2].id]);
    assert_eq!(
        window(noon() + Duration::seconds(1), three),
        Vec::<Uuid>::new()
    );
    let mut both = window(noon(), three + Duration::seconds(1));
    both.sort();
    let mut expected = vec![movies[1].id, movies[2].id];
    expected.sort();
    assert_eq!(both, expected);
    assert_eq!(window(three, noon()), Vec::<Uuid>::new());
    let open_ended = index
        .search(&SearchQuery {
            from: Some(three),
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(ids(&open_ended), vec![movies[1].id]);
}

#[test]
fn format_and_language_filters_accept_any_listed_value() {
    let (index, movies) = with_showtimes(
        |s| s.format = "IMAX".to_owned(),
        |s| {
            s.format = "3d".to_owned();
            s.language = "es".to_owned();
        },
    );
    let search = |formats: &[&str], languages: &[&str]| {
        let mut found = ids(&index
            .search(&SearchQuery {
                formats: formats.iter().map(|f| (*f).to_owned()).collect(),
                languages: languages.iter().map(|l| (*l).to_owned()).collect(),
                ..SearchQuery::default()
            })
            .expect("search"));
        found.sort();
        found
    };
    assert_eq!(search(&["imax"], &[]), vec![movies[2].id]);
    let mut both = vec![movies[1].id, movies[2].id];
    both.sort();
    assert_eq!(search(&["imax", "3d"], &[]), both);
    assert_eq!(search(&[], &["es"]), vec![movies[1].id]);
    assert_eq!(search(&["imax"], &["es"]), Vec::<Uuid>::new());
    assert_eq!(search(&["4dx"], &[]), Vec::<Uuid>::new());
}

#[test]
fn price_and_seat_filters_bound_the_showtimes() {
    let (index, movies) = with_showtimes(
        |s| {
            s.min_price_cents = 1_000;
            s.seats_available = 2;
        },
        |s| {
            s.min_price_cents = 2_000;
            s.seats_available = 50;
        },
    );
    let search = |max_price_cents: Option<i64>, min_seats: Option<u32>| {
        ids(&index
            .search(&SearchQuery {
                max_price_cents,
                min_seats,
                ..SearchQuery::default()
            })
            .expect("search"))
    };
    assert_eq!(search(Some(1_000), None), vec![movies[2].id]);
    assert_eq!(search(Some(999), None), Vec::<Uuid>::new());
    assert_eq!(search(None, Some(3)), vec![movies[1].id]);
    assert_eq!(search(None, Some(50)), vec![movies[1].id]);
    assert_eq!(search(Some(1_500), Some(3)), Vec::<Uuid>::new());
}

#[test]
fn the_theater_filter_keeps_that_theaters_showtimes() {
    let theater = Uuid::now_v7();
    let (index, movies) = with_showtimes(|s| s.theater_id = theater, |_| {});
    let results = index
        .search(&SearchQuery {
            theater: Some(theater),
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(ids(&results), vec![movies[2].id]);
    assert_eq!(results.hits[0].showtimes[0].theater_id, theater);
}

#[test]
fn a_movie_without_a_matching_showtime_is_excluded_when_a_showtime_filter_is_set() {
    let (index, movies) = with_showtimes(|_| {}, |s| s.format = "3d".to_owned());
    let unfiltered = index.search(&SearchQuery::default()).expect("search");
    assert_eq!(unfiltered.total, 3);
    let godfather = unfiltered
        .hits
        .iter()
        .find(|hit| hit.id == movies[0].id)
        .expect("listed without filters");
    assert_eq!(godfather.showtime_count, 0);
    let filtered = index
        .search(&SearchQuery {
            formats: vec!["2d".to_owned()],
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(ids(&filtered), vec![movies[2].id]);
    assert_eq!(filtered.total, 1);
}

#[test]
fn matching_showtimes_are_counted_and_listed_earliest_first() {
    let (index, movies) = catalogue();
    let showtimes: Vec<ShowtimeDoc> = (0..6)
        .map(|hour| ShowtimeDoc {
            starts_at: noon() + Duration::hours(5 - hour),
            format: if hour % 2 == 0 { "2d" } else { "3d" }.to_owned(),
            ..showtime(&movies[2])
        })
        .collect();
    index.upsert_showtimes(&showtimes).expect("upsert");
    let all = index
        .search(&SearchQuery {
            text: Some("heat".to_owned()),
            showtimes_per_hit: 4,
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(all.hits[0].showtime_count, 6);
    let starts: Vec<_> = all.hits[0].showtimes.iter().map(|s| s.starts_at).collect();
    let expected: Vec<_> = (0..4).map(|hour| noon() + Duration::hours(hour)).collect();
    assert_eq!(starts, expected);
    let filtered = index
        .search(&SearchQuery {
            text: Some("heat".to_owned()),
            formats: vec!["3d".to_owned()],
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(filtered.hits[0].showtime_count, 3);
    assert!(filtered.hits[0].showtimes.iter().all(|s| s.format == "3d"));
}

/// 25 movies with ratings that tie in threes, each with showtimes in a few
/// formats and cities.
fn paged_catalogue() -> (MovieIndex, Vec<MovieDoc>) {
    let index = MovieIndex::new().expect("index");
    let movies: Vec<MovieDoc> = (0..25)
        .map(|n| MovieDoc {
            rating: Some(f64::from(n / 3)),
            votes: Some(1_000),
            genres: vec![if n % 2 == 0 { "drama" } else { "comedy" }.to_owned()],
            ..movie(&format!("Feature {n}"), "Someone", 2000)
        })
        .collect();
    index.upsert_movies(&movies).expect("upsert");
    let showtimes: Vec<ShowtimeDoc> = movies
        .iter()
        .enumerate()
        .flat_map(|(n, movie)| {
            (0..=n % 3).map(move |k| ShowtimeDoc {
                format: ["2d", "3d", "imax"][k].to_owned(),
                city: format!("City {}", (n + k) % 25),
                ..showtime(movie)
            })
        })
        .collect();
    index.upsert_showtimes(&showtimes).expect("upsert");
    (index, movies)
}

#[test]
fn facets_count_over_the_full_result_set_not_the_page() {
    let (index, _) = paged_catalogue();
    let results = index
        .search(&SearchQuery {
            limit: 5,
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(results.hits.len(), 5);
    assert_eq!(results.total, 25);
    let count = |facets: &[FacetCount], value: &str| {
        facets
            .iter()
            .find(|f| f.value == value)
            .map_or(0, |f| f.count)
    };
    assert_eq!(count(&results.facets.genres, "drama"), 13);
    assert_eq!(count(&results.facets.genres, "comedy"), 12);
    // Movie n has showtimes in formats 0..=n % 3: 25 in 2d, 16 in 3d, 8 in IMAX.
    assert_eq!(
        results.facets.formats,
        vec![
            FacetCount {
                value: "2d".to_owned(),
                count: 25
            },
            FacetCount {
                value: "3d".to_owned(),
                count: 16
            },
            FacetCount {
                value: "imax".to_owned(),
                count: 8
            },
        ]
    );
    assert_eq!(results.facets.cities.len(), 20);
    assert!(results
        .facets
        .cities
        .windows(2)
        .all(|pair| pair[0].count > pair[1].count
            || (pair[0].count == pair[1].count && pair[0].value < pair[1].value)));
    let filtered = index
        .search(&SearchQuery {
            formats: vec!["imax".to_owned()],
            limit: 2,
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(filtered.total, 8);
    assert_eq!(count(&filtered.facets.formats, "imax"), 8);
    assert_eq!(count(&filtered.facets.formats, "2d"), 0);
}

#[test]
fn cursor_paging_over_25_movies_with_limit_10_yields_all_25_exactly_once_in_order() {
    let (index, movies) = paged_catalogue();
    let everything = index
        .search(&SearchQuery {
            limit: 100,
            ..SearchQuery::default()
        })
        .expect("search");
    assert_eq!(everything.hits.len(), 25);
    assert_eq!(everything.next, None);
    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = index
            .search(&SearchQuery {
                limit: 10,
                after,
                ..SearchQuery::default()
            })
            .expect("search");
        pages += 1;
        assert_eq!(page.total, 25);
        paged.extend(page.hits.iter().map(|hit| (hit.score, hit.id)));
        match page.next {
            Some(cursor) => after = Cursor::decode(&cursor.encode()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<_> = everything.hits.iter().map(|h| (h.score, h.id)).collect();
    assert_eq!(paged, expected);
    assert!(paged
        .windows(2)
        .all(|pair| pair[0].0 > pair[1].0 || (pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1)));
    let mut seen: Vec<Uuid> = paged.iter().map(|(_, id)| *id).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), movies.len());
}

#[test]
fn removing_a_movie_removes_its_showtimes() {
    let (index, movies) = with_showtimes(|_| {}, |_| {});
    assert_eq!(index.len(), 5);
    index.remove_movies(&[movies[2].id]).expect("remove");
    assert_eq!(index.movie_count(), 2);
    assert_eq!(index.showtime_count(), 1);
    let results = index.search(&SearchQuery::default()).expect("search");
    assert!(!ids(&results).contains(&movies[2].id));
    assert_eq!(results.facets.cities[0].count, 1);
    // Put back, the movie does not get its old showtimes back.
    index.upsert_movies(&movies[2..]).expect("upsert");
    let heat = index.search(&text("heat")).expect("search");
    assert_eq!(heat.hits[0].showtime_count, 0);
}

#[test]
fn removing_a_showtime_hides_it() {
    let (index, movies) = catalogue();
    let first = showtime(&movies[2]);
    let second = showtime(&movies[2]);
    index
        .upsert_showtimes(&[first.clone(), second.clone()])
        .expect("upsert");
    index.remove_showtimes(&[first.id]).expect("remove");
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(results.hits[0].showtime_count, 1);
    assert_eq!(results.hits[0].showtimes[0].id, second.id);
}

#[test]
fn upserting_a_showtime_again_replaces_it() {
    let (index, movies) = catalogue();
    let original = showtime(&movies[2]);
    let moved = ShowtimeDoc {
        starts_at: noon() + Duration::hours(2),
        ..original.clone()
    };
    index
        .upsert_showtimes(std::slice::from_ref(&original))
        .expect("upsert");
    index
        .upsert_showtimes(&[original.clone(), moved.clone()])
        .expect("upsert");
    assert_eq!(index.showtime_count(), 1);
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(results.hits[0].showtimes[0].starts_at, moved.starts_at);
}

#[test]
fn showtimes_indexed_before_their_movie_appear_with_it() {
    let index = MovieIndex::new().expect("index");
    let heat = movie("Heat", "Michael Mann", 1995);
    index.upsert_showtimes(&[showtime(&heat)]).expect("upsert");
    assert_eq!(
        index.search(&SearchQuery::default()).expect("search").total,
        0
    );
    index
        .upsert_movies(std::slice::from_ref(&heat))
        .expect("upsert");
    let results = index.search(&SearchQuery::default()).expect("search");
    assert_eq!(ids(&results), vec![heat.id]);
    assert_eq!(results.hits[0].showtime_count, 1);
}

#[test]
fn showtimes_of_a_movie_not_indexed_are_not_counted() {
    let (index, movies) = catalogue();
    let orphan = movie("Unreleased", "Someone", 2030);
    index
        .upsert_showtimes(&[showtime(&movies[2]), showtime(&orphan)])
        .expect("upsert");
    let midnight = noon() - Duration::hours(12);
    for query in [
        SearchQuery::default(),
        SearchQuery {
            from: Some(midnight),
            to: Some(midnight + Duration::days(1)),
            ..SearchQuery::default()
        },
        SearchQuery {
            from: Some(midnight),
            to: Some(midnight + Duration::days(1)),
            formats: vec!["2d".to_owned()],
            ..SearchQuery::default()
        },
    ] {
        let results = index.search(&query).expect("search");
        assert_eq!(results.facets.cities[0].count, 1, "{query:?}");
        assert_eq!(results.facets.formats[0].count, 1, "{query:?}");
    }
}

#[test]
fn a_showtime_hit_reports_what_was_indexed() {
    let (index, movies) = catalogue();
    let indexed = ShowtimeDoc {
        theater_id: Uuid::now_v7(),
        format: "imax".to_owned(),
        language: "fr".to_owned(),
        seats_available: 7,
        ..showtime(&movies[2])
    };
    index
        .upsert_showtimes(std::slice::from_ref(&indexed))
        .expect("upsert");
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(
        results.hits[0].showtimes,
        vec![ShowtimeHit {
            id: indexed.id,
            theater_id: indexed.theater_id,
            theater_name: indexed.theater_name,
            city: indexed.city,
            starts_at: indexed.starts_at,
            format: indexed.format,
            language: indexed.language,
            min_price_cents: indexed.min_price_cents,
            seats_available: indexed.seats_available,
            distance_km: None,
        }]
    );
}

#[test]
fn searches_run_while_showtimes_are_written() {
    let (index, movies) = catalogue();
    let index = Arc::new(index);
    let searcher = {
        let index = Arc::clone(&index);
        std::thread::spawn(move || {
            for _ in 0..200 {
                index.search(&SearchQuery::default()).expect("search");
            }
        })
    };
    for hour in 0..20 {
        let showtime = ShowtimeDoc {
            starts_at: noon() + Duration::hours(hour),
            ..showtime(&movies[2])
        };
        index.upsert_showtimes(&[showtime]).expect("upsert");
    }
    searcher.join().expect("searches succeed");
    assert_eq!(index.showtime_count(), 20);
}

fn rated(title: &str, rating: f64, votes: i64) -> MovieDoc {
    MovieDoc {
        rating: Some(rating),
        votes: Some(votes),
        ..movie(title, "Someone", 2000)
    }
}

#[test]
fn popularity_breaks_ties_between_equally_relevant_titles() {
    let index = MovieIndex::new().expect("index");
    let obscure = rated("Heat", 6.0, 40);
    let famous = rated("Heat", 8.3, 700_000);
    let liked = rated("Heat", 8.3, 9_000);
    index
        .upsert_movies(&[obscure.clone(), famous.clone(), liked.clone()])
        .expect("upsert");
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(ids(&results), vec![famous.id, liked.id, obscure.id]);
}

#[test]
fn popularity_does_not_beat_a_better_text_match() {
    let index = MovieIndex::new().expect("index");
    let exact = rated("Heat", 5.0, 100);
    let prefix = rated("Heathers", 9.0, 1_000_000);
    index
        .upsert_movies(&[exact.clone(), prefix.clone()])
        .expect("upsert");
    let results = index.search(&text("heat")).expect("search");
    assert_eq!(ids(&results), vec![exact.id, prefix.id]);
}

#[test]
fn without_text_every_movie_matches_ranked_by_popularity() {
    let index = MovieIndex::new().expect("index");
    let movies = vec![
        rated("Alpha", 7.0, 10_000),
        rated("Beta", 9.0, 500_000),
        movie("Gamma", "Someone", 2000),
    ];
    index.upsert_movies(&movies).expect("upsert");
    let results = index.search(&SearchQuery::default()).expect("search");
    assert_eq!(
        ids(&results),
        vec![movies[1].id, movies[0].id, movies[2].id]
    );
}

#[test]
fn suggest_returns_prefix_matches_ranked_by_popularity_and_tolerates_a_typo() {
    let index = MovieIndex::new().expect("index");
    let star_wars = rated("Star Wars", 8.6, 1_400_000);
    let stardust = rated("Stardust", 7.6, 280_000);
    let starman = rated("Starman", 7.0, 50_000);
    let heat = rated("Heat", 8.3, 700_000);
    index
        .upsert_movies(&[
            starman.clone(),
            heat.clone(),
            stardust.clone(),
            star_wars.clone(),
        ])
        .expect("upsert");
    let titles = |prefix: &str| -> Vec<String> {
        index
            .suggest(prefix, 10)
            .expect("suggest")
            .into_iter()
            .map(|s| s.title)
            .collect()
    };
    assert_eq!(titles("sta"), vec!["Star Wars", "Stardust", "Starman"]);
    assert_eq!(titles("star w"), vec!["Star Wars"]);
    assert_eq!(titles("stqrd"), vec!["Stardust"]);
    assert_eq!(titles("star wras"), vec!["Star Wars"]);
    assert_eq!(
        index.suggest("sta", 1).expect("suggest")[0].id,
        star_wars.id
    );
    assert!(titles("").is_empty());
    assert!(titles("zzz").is_empty());
}

#[test]
fn len_counts_movies_and_showtimes() {
    let index = MovieIndex::new().expect("index");
    assert!(index.is_empty());
    let (index, _) = with_showtimes(|_| {}, |_| {});
    assert_eq!(
        (index.len(), index.movie_count(), index.showtime_count()),
        (5, 3, 2)
    );
    assert!(!index.is_empty());
}

/// A page as (movie, showtime count, listed showtime ids).
type Page = Vec<(Uuid, u64, Vec<Uuid>)>;

/// Total, page and city facets.
type Expected = (u64, Page, Vec<FacetCount>);

/// What a search should return, worked out by brute force over the
/// documents for queries without text.
fn reference(catalogue: &Catalogue, showtimes: &[ShowtimeDoc], query: &SearchQuery) -> Expected {
    let area = query.near.as_ref().and_then(geo::Area::new);
    let matches = |s: &ShowtimeDoc| {
        query
            .city
            .as_ref()
            .is_none_or(|c| c.to_lowercase() == s.city.to_lowercase())
            && query.from.is_none_or(|from| s.starts_at >= from)
            && query.to.is_none_or(|to| s.starts_at < to)
            && (query.formats.is_empty() || query.formats.contains(&s.format))
            && query
                .max_price_cents
                .is_none_or(|max| s.min_price_cents <= max)
            && query
                .min_seats
                .is_none_or(|min| i64::from(s.seats_available) >= i64::from(min))
            && query.near.is_none_or(|_| {
                area.is_some_and(|a| a.distance_if_within(s.latitude, s.longitude).is_some())
            })
    };
    let mut hits = Vec::new();
    let mut cities: std::collections::BTreeMap<String, u64> = Default::default();
    for movie in &catalogue.movies {
        let mut own: Vec<&ShowtimeDoc> = showtimes
            .iter()
            .filter(|s| s.movie_id == movie.id && matches(s))
            .collect();
        let filtered = query.city.is_some()
            || query.near.is_some()
            || query.from.is_some()
            || !query.formats.is_empty()
            || query.max_price_cents.is_some()
            || query.min_seats.is_some();
        if own.is_empty() && filtered {
            continue;
        }
        for s in &own {
            *cities.entry(s.city.clone()).or_default() += 1;
        }
        own.sort_by_key(|s| (s.starts_at, s.id));
        let score = movies::score(0.0, movies::popularity(movie.rating, movie.votes));
        hits.push((
            score,
            movie.id,
            own.len() as u64,
            own.iter()
                .take(query.showtimes_per_hit)
                .map(|s| s.id)
                .collect::<Vec<_>>(),
        ));
    }
    let total = hits.len() as u64;
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let page = hits
        .into_iter()
        .take(query.limit)
        .map(|(_, id, count, listed)| (id, count, listed))
        .collect();
    let mut cities: Vec<FacetCount> = cities
        .into_iter()
        .map(|(value, count)| FacetCount { value, count })
        .collect();
    cities.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    cities.truncate(20);
    (total, page, cities)
}

#[test]
fn search_agrees_with_brute_force_over_many_segments_with_replacements() {
    let catalogue = Catalogue::new(3, 150, 40, 60, 3);
    let index = MovieIndex::new().expect("index");
    catalogue.load(&index, 6_000, 700).expect("load");
    let mut showtimes: Vec<ShowtimeDoc> = (0..6_000).map(|n| catalogue.showtime(n)).collect();
    // Move some showtimes and drop others, so segments carry deletes.
    let moved: Vec<ShowtimeDoc> = showtimes
        .iter()
        .step_by(7)
        .map(|s| ShowtimeDoc {
            starts_at: s.starts_at + Duration::hours(5),
            format: "imax".to_owned(),
            ..s.clone()
        })
        .collect();
    index.upsert_showtimes(&moved).expect("upsert");
    let dropped: Vec<Uuid> = showtimes.iter().skip(3).step_by(11).map(|s| s.id).collect();
    index.remove_showtimes(&dropped).expect("remove");
    for s in &mut showtimes {
        if let Some(m) = moved.iter().find(|m| m.id == s.id) {
            *s = m.clone();
        }
    }
    showtimes.retain(|s| !dropped.contains(&s.id));
    assert_eq!(index.showtime_count(), showtimes.len() as u64);

    let mut queries: Vec<SearchQuery> = (0..12)
        .flat_map(|n| {
            [QueryKind::DayAndFormat, QueryKind::NearTomorrow].map(|kind| SearchQuery {
                limit: 15,
                ..catalogue.query(kind, n)
            })
        })
        .collect();
    queries.push(SearchQuery {
        limit: 15,
        showtimes_per_hit: 4,
        ..SearchQuery::default()
    });
    queries.push(SearchQuery {
        city: Some(catalogue.cities[1].name.to_uppercase()),
        limit: 15,
        ..SearchQuery::default()
    });
    // Matches too many showtimes to keep, so the page's are searched again.
    queries.push(SearchQuery {
        min_seats: Some(10),
        limit: 15,
        showtimes_per_hit: 4,
        ..SearchQuery::default()
    });
    for query in &queries {
        let results = index.search(query).expect("search");
        let (total, page, cities) = reference(&catalogue, &showtimes, query);
        assert_eq!(results.total, total, "{query:?}");
        let got: Page = results
            .hits
            .iter()
            .map(|hit| {
                (
                    hit.id,
                    hit.showtime_count,
                    hit.showtimes.iter().map(|s| s.id).collect(),
                )
            })
            .collect();
        assert_eq!(got, page, "{query:?}");
        assert_eq!(results.facets.cities, cities, "{query:?}");
    }
}
