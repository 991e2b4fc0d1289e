//! Answers a [`SearchQuery`]: text relevance from the movie index, then
//! showtime filtering and grouping over fast fields. A first pass counts
//! matching showtimes per movie and for the facets over the whole result
//! set, from the segments' precomputed counts where the query allows; then
//! the movies are ranked, and only those on the requested page have their
//! earliest matching showtimes listed.

use std::ops::Range;

use chrono::DateTime;
use tantivy::columnar::ColumnValues;
use tantivy::fastfield::AliveBitSet;
use tantivy::index::InvertedIndexReader;
use tantivy::postings::TermInfo;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::DocId;
use uuid::Uuid;

use crate::geo::Area;
use crate::movies::{self, MovieFields, NO_MOVIE};
use crate::showtimes::{
    self, Counted, Interner, Keys, ListReader, Postings, Presentation, Registry, SegmentView,
    Showtimes, Venue,
};
use crate::{
    Cursor, Error, FacetCount, Facets, MovieHit, SearchQuery, SearchResults, ShowtimeHit, Snapshot,
    Suggestion,
};

/// At most this many cities are reported as facets; a long tail of places
/// with a showtime or two is no help to someone choosing where to look.
const MAX_CITY_FACETS: usize = 20;

/// Start-time windows up to this long also offer their time slots' posting
/// lists to drive the scan. Wider windows cover too many slots to be the
/// most selective list; the exact start-time check applies either way.
const MAX_SLOT_SPAN_MICROS: i64 = 2 * 24 * 3_600 * 1_000_000;

/// Offer the candidate movies' showtimes to drive the scan only when text or
/// genres leave at most this share of the movies; larger sets are never the
/// most selective choice and summing their sizes costs time.
const MOVIE_DRIVER_SHARE: f64 = 0.5;

/// Matches the first pass keeps for listing the page's showtimes; past this
/// many, listing searches the page's movies again, which is cheaper than
/// keeping everything a broad query matches.
const KEPT_MATCHES: usize = 4_096;

/// Documents per block when a segment is scanned without a posting list.
const SCAN_BLOCK: u32 = 128;

/// Interned values a query accepts for one venue or presentation attribute.
struct Accepted {
    /// The indexed terms, to find posting lists.
    keys: Vec<String>,
    /// By interned id.
    ids: Vec<bool>,
}

impl Accepted {
    /// `None` when no indexed showtime has any of the ids.
    fn new(
        keys: Vec<String>,
        ids: impl IntoIterator<Item = u32>,
        interner: &Interner,
    ) -> Option<Self> {
        let mut accepted = vec![false; interner.len()];
        let mut any = false;
        for id in ids {
            accepted[id as usize] = true;
            any = true;
        }
        any.then_some(Self {
            keys,
            ids: accepted,
        })
    }

    /// Accepted codes (formats, languages) given as typed; `Some(None)` when
    /// none were given.
    fn codes(wanted: &[String], interner: &Interner) -> Option<Option<Self>> {
        if wanted.is_empty() {
            return Some(None);
        }
        let keys: Vec<String> = wanted.iter().map(|value| showtimes::code(value)).collect();
        let ids: Vec<u32> = keys.iter().filter_map(|key| interner.id(key)).collect();
        Self::new(keys, ids, interner).map(Some)
    }

    fn accepts(&self, id: u32) -> bool {
        self.ids.get(id as usize).copied().unwrap_or(false)
    }

    fn postings<'a>(&self, postings: &'a Postings<String>) -> Vec<&'a TermInfo> {
        self.keys
            .iter()
            .filter_map(|key| postings.get(key))
            .collect()
    }
}

/// Where a segment's candidates come from.
enum Driver<'a> {
    /// The segment cannot hold a match.
    Nothing,
    /// Every document.
    All,
    /// Showtimes of some movies, already decoded, with their start times.
    Docs(Vec<(&'a [DocId], &'a [i64])>),
    /// The union of posting lists of one field. Every filterable field holds
    /// one value per showtime, so the lists are disjoint.
    Lists {
        inverted: &'a InvertedIndexReader,
        lists: Vec<List<'a>>,
    },
}

/// One posting list of a [`Driver`].
struct List<'a> {
    info: &'a TermInfo,
    /// Whether the list's term guarantees the query's start-time window.
    within: bool,
    /// The list's showtimes counted, when its term is a time slot wholly
    /// inside the window and the slot is the query's only condition on them.
    counted: Option<Counted<'a>>,
}

impl<'a> List<'a> {
    fn untimed(info: &'a TermInfo) -> Self {
        Self {
            info,
            within: false,
            counted: None,
        }
    }
}

/// How a query constrains showtimes.
struct Plan {
    theater: Option<Uuid>,
    city: Option<Accepted>,
    formats: Option<Accepted>,
    languages: Option<Accepted>,
    starts: Option<Range<i64>>,
    /// Slots of a narrow start-time window, each with whether it lies
    /// wholly inside the window.
    slots: Vec<(i64, bool)>,
    area: Option<Area>,
    cells: Vec<u64>,
    max_price: Option<i64>,
    min_seats: Option<i64>,
}

impl Plan {
    /// `None` when the filters cannot match any showtime.
    fn new(query: &SearchQuery, registry: &Registry) -> Option<Self> {
        let city = match &query.city {
            Some(city) => {
                let key = city.to_lowercase();
                let ids = registry.cities.ids_ignoring_case(&key).to_vec();
                Some(Accepted::new(vec![key], ids, &registry.cities)?)
            }
            None => None,
        };
        let formats = Accepted::codes(&query.formats, &registry.formats)?;
        let languages = Accepted::codes(&query.languages, &registry.languages)?;
        let mut slots = Vec::new();
        let starts = if query.from.is_some() || query.to.is_some() {
            let start = query.from.as_ref().map_or(i64::MIN, showtimes::micros);
            let end = query.to.as_ref().map_or(i64::MAX, showtimes::micros);
            if start >= end {
                return None;
            }
            if query.from.is_some() && query.to.is_some() && end - start <= MAX_SLOT_SPAN_MICROS {
                slots = (showtimes::slot(start)..=showtimes::slot(end - 1))
                    .map(|slot| {
                        let covered =
                            slot.checked_mul(showtimes::SLOT_MICROS)
                                .is_some_and(|first| {
                                    first >= start
                                        && first.saturating_add(showtimes::SLOT_MICROS) <= end
                                });
                        (slot, covered)
                    })
                    .collect();
            }
            Some(start..end)
        } else {
            None
        };
        let area = match &query.near {
            Some(near) => Some(Area::new(near)?),
            None => None,
        };
        Some(Self {
            theater: query.theater,
            city,
            formats,
            languages,
            starts,
            slots,
            cells: area.and_then(|area| area.cells()).unwrap_or_default(),
            area,
            max_price: query.max_price_cents,
            min_seats: query.min_seats.map(i64::from),
        })
    }

    /// Whether any showtime filter is set, in which case movies need a
    /// matching showtime to be hits.
    fn filters(&self) -> bool {
        self.filters_venues()
            || self.filters_presentations()
            || self.starts.is_some()
            || self.max_price.is_some()
            || self.min_seats.is_some()
    }

    /// Whether a time slot, with a format, can be the only condition on
    /// the showtimes it lists: no other showtime filter applies.
    fn counts_by_slot(&self) -> bool {
        !self.filters_venues()
            && self.languages.is_none()
            && self.max_price.is_none()
            && self.min_seats.is_none()
    }

    fn filters_venues(&self) -> bool {
        self.theater.is_some() || self.city.is_some() || self.area.is_some()
    }

    fn filters_presentations(&self) -> bool {
        self.formats.is_some() || self.languages.is_some()
    }

    fn accepts_venue(&self, venue: &Venue) -> bool {
        self.theater.is_none_or(|theater| theater == venue.theater)
            && self
                .city
                .as_ref()
                .is_none_or(|city| city.accepts(venue.city))
            && self.area.is_none_or(|area| {
                area.in_box(venue.latitude, venue.longitude)
                    && area
                        .distance_if_within(venue.latitude, venue.longitude)
                        .is_some()
            })
    }

    fn accepts_presentation(&self, presentation: &Presentation) -> bool {
        self.formats
            .as_ref()
            .is_none_or(|formats| formats.accepts(presentation.format))
            && self
                .languages
                .as_ref()
                .is_none_or(|languages| languages.accepts(presentation.language))
    }

    /// The smallest set of posting lists that must contain every match in
    /// the segment, with how many documents it holds. `movies` offers the
    /// candidate movies' showtimes too.
    fn driver<'a>(&self, view: &'a SegmentView, movies: Option<&[usize]>) -> (u64, Driver<'a>) {
        let postings = &view.columns.postings;
        let mut best: Option<(u64, Driver<'a>)> = None;
        let mut offer = |size: u64, driver: Driver<'a>| {
            if best.as_ref().is_none_or(|(least, _)| size < *least) {
                best = Some((size, driver));
            }
        };
        let mut offer_lists = |inverted: &'a InvertedIndexReader, lists: Vec<List<'a>>| {
            let size = lists.iter().map(|list| u64::from(list.info.doc_freq)).sum();
            offer(size, Driver::Lists { inverted, lists });
        };
        let untimed = |lists: Vec<&'a TermInfo>| lists.into_iter().map(List::untimed).collect();
        let summaries = &*view.summaries;
        let only_slots = self.counts_by_slot();
        if let Some(theater) = self.theater {
            let list = postings.theater.get(&theater.to_string());
            offer_lists(
                &postings.theater.inverted,
                untimed(list.into_iter().collect()),
            );
        }
        for (accepted, field) in [
            (&self.city, &postings.city),
            (&self.formats, &postings.format),
            (&self.languages, &postings.language),
        ] {
            if let Some(accepted) = accepted {
                offer_lists(&field.inverted, untimed(accepted.postings(field)));
            }
        }
        if !self.slots.is_empty() {
            let lists = self
                .slots
                .iter()
                .filter_map(|&(slot, within)| {
                    let key = tantivy::i64_to_u64(slot);
                    let counted = within && only_slots && self.formats.is_none();
                    Some(List {
                        info: postings.slot.get(&key)?,
                        within,
                        counted: counted.then(|| summaries.slot(key)).flatten(),
                    })
                })
                .collect();
            offer_lists(&postings.slot.inverted, lists);
            if let Some(formats) = &self.formats {
                let field = &postings.slot_format;
                let lists = self
                    .slots
                    .iter()
                    .flat_map(|&(slot, within)| {
                        formats.keys.iter().filter_map(move |format| {
                            let key = showtimes::slot_format(slot, format);
                            let counted = within && only_slots;
                            Some(List {
                                info: field.get(&key)?,
                                within,
                                counted: counted.then(|| summaries.slot_format(&key)).flatten(),
                            })
                        })
                    })
                    .collect();
                offer_lists(&field.inverted, lists);
            }
        }
        if !self.cells.is_empty() {
            let lists = self
                .cells
                .iter()
                .filter_map(|key| postings.cell.get(key))
                .collect();
            offer_lists(&postings.cell.inverted, untimed(lists));
            if !self.slots.is_empty() {
                let field = &postings.cell_slot;
                let lists = self
                    .slots
                    .iter()
                    .flat_map(|&(slot, within)| {
                        self.cells.iter().filter_map(move |&cell| {
                            Some(List {
                                info: field.get(&showtimes::cell_slot(slot, cell))?,
                                within,
                                counted: None,
                            })
                        })
                    })
                    .collect();
                offer_lists(&field.inverted, lists);
            }
        }
        if let Some(movies) = movies {
            let docs: Vec<(&[DocId], &[i64])> = movies
                .iter()
                .map(|&dense| match &self.starts {
                    Some(window) => view.movie_docs_within(dense, window),
                    None => view.movie_docs(dense),
                })
                .collect();
            let size = docs.iter().map(|(docs, _)| docs.len() as u64).sum();
            offer(size, Driver::Docs(docs));
        }
        match best {
            None => (u64::from(view.columns.max_doc), Driver::All),
            Some((0, _)) => (0, Driver::Nothing),
            Some(best) => best,
        }
    }
}

/// A showtime that passed every check.
#[derive(Clone, Copy)]
struct Match {
    doc: DocId,
    keys: Keys,
    /// Dense movie id.
    movie: u32,
    /// Start time, when the scan knew or read it.
    starts_at: Option<i64>,
}

/// Matches kept from the first pass, with their segments.
type Kept = Vec<(usize, Match)>;

/// What a scan knows of its candidates' start times.
#[derive(Clone, Copy)]
enum Times<'a> {
    /// Nothing; the column is read if needed.
    Unknown,
    /// That they fall within the query's window.
    Within,
    /// Each one's start time.
    Known(&'a [i64]),
}

/// Reads one column for a block of documents in a single dispatch.
fn read<T: PartialOrd + Copy + Default + 'static>(
    column: &dyn ColumnValues<T>,
    docs: &[DocId],
    out: &mut Vec<T>,
) {
    out.clear();
    out.resize(docs.len(), T::default());
    column.get_vals(docs, out);
}

/// A query's verdicts on venues or presentations, each decided the first
/// time a showtime with it is seen.
struct Verdicts(Vec<u8>);

const UNDECIDED: u8 = 0;
const ACCEPTED: u8 = 1;
const REJECTED: u8 = 2;

impl Verdicts {
    fn new(values: usize) -> Self {
        Self(vec![UNDECIDED; values])
    }

    #[inline]
    fn accepts(&mut self, number: u32, decide: impl FnOnce(usize) -> bool) -> bool {
        let Some(verdict) = self.0.get_mut(number as usize) else {
            return false;
        };
        if *verdict == UNDECIDED {
            *verdict = if decide(number as usize) {
                ACCEPTED
            } else {
                REJECTED
            };
        }
        *verdict == ACCEPTED
    }
}

/// Column values of one block of candidates, in buffers reused across
/// blocks.
#[derive(Default)]
struct Columns {
    /// The candidates still in play.
    docs: Vec<DocId>,
    keys: Vec<u64>,
    starts: Vec<i64>,
    prices: Vec<i64>,
    seats: Vec<i64>,
}

/// Filters blocks of candidates down to matches.
struct Scanner<'a> {
    plan: &'a Plan,
    showtimes: &'a Showtimes,
    /// Movies whose showtimes count, by dense id.
    wanted: &'a [bool],
    columns: Columns,
    venues: Verdicts,
    presentations: Verdicts,
}

impl<'a> Scanner<'a> {
    fn new(plan: &'a Plan, showtimes: &'a Showtimes, wanted: &'a [bool]) -> Self {
        let registry = &showtimes.registry;
        Self {
            plan,
            showtimes,
            wanted,
            columns: Columns::default(),
            venues: Verdicts::new(registry.venues.len()),
            presentations: Verdicts::new(registry.presentations.len()),
        }
    }

    /// Hands the live documents of `docs` that match to `visit`. Every
    /// column a check needs is read for the whole block in one dispatch,
    /// then one pass over the block decides each showtime.
    fn filter(
        &mut self,
        view: &SegmentView,
        alive: Option<&AliveBitSet>,
        times: Times<'_>,
        docs: &[DocId],
        visit: &mut impl FnMut(Match),
    ) {
        let (plan, showtimes, columns) = (self.plan, self.showtimes, &view.columns);
        let registry = &*showtimes.registry;
        let window = plan
            .starts
            .as_ref()
            .filter(|_| !matches!(times, Times::Within));
        let values = &mut self.columns;
        values.docs.clear();
        values.starts.clear();
        match times {
            Times::Known(starts) => {
                values.docs.extend_from_slice(docs);
                values.starts.extend_from_slice(starts);
            }
            Times::Unknown if window.is_some() => {
                read(&*columns.starts_at, docs, &mut values.starts);
                values.docs.extend_from_slice(docs);
            }
            Times::Unknown | Times::Within => values.docs.extend_from_slice(docs),
        }
        // A time window passes only a sliver of most candidate lists, so it
        // is checked before the wider key column is read for the rest.
        if let Some(window) = window {
            let mut kept = 0;
            for index in 0..values.docs.len() {
                let starts_at = values.starts[index];
                values.docs[kept] = values.docs[index];
                values.starts[kept] = starts_at;
                kept += usize::from(window.contains(&starts_at));
            }
            values.docs.truncate(kept);
            values.starts.truncate(kept);
        }
        let docs = &values.docs;
        read(&*columns.keys, docs, &mut values.keys);
        if plan.max_price.is_some() {
            read(&*columns.price, docs, &mut values.prices);
        }
        if plan.min_seats.is_some() {
            read(&*columns.seats, docs, &mut values.seats);
        }
        let starts = &values.starts;
        let (filters_presentations, filters_venues) =
            (plan.filters_presentations(), plan.filters_venues());
        for (index, &doc) in docs.iter().enumerate() {
            if alive.is_some_and(|alive| !alive.is_alive(doc)) {
                continue;
            }
            let keys = Keys::unpack(values.keys[index]);
            if filters_presentations
                && !self.presentations.accepts(keys.presentation, |number| {
                    plan.accepts_presentation(&registry.presentations[number])
                })
            {
                continue;
            }
            if filters_venues
                && !self.venues.accepts(keys.venue, |number| {
                    plan.accepts_venue(&registry.venues[number])
                })
            {
                continue;
            }
            let starts_at = starts.get(index).copied();
            if plan.max_price.is_some_and(|max| values.prices[index] > max)
                || plan.min_seats.is_some_and(|min| values.seats[index] < min)
            {
                continue;
            }
            let movie = showtimes.movie(keys.movie);
            if movie == NO_MOVIE || !self.wanted[movie as usize] {
                continue;
            }
            visit(Match {
                doc,
                keys,
                movie,
                starts_at,
            });
        }
    }
}

/// The first pass: runs the plan over every segment and counts each
/// matching showtime of a wanted movie, keeping the matches in `kept` while
/// they are few. `listed` names the wanted movies when they are few enough
/// for their showtimes to be worth offering as the driver.
fn count_matches(
    showtimes: &Showtimes,
    plan: &Plan,
    wanted: &[bool],
    listed: Option<&[usize]>,
    tally: &mut Tally,
    kept: &mut Option<Kept>,
) -> Result<(), Error> {
    let registry = &*showtimes.registry;
    let everything = showtimes.every_movie(|movie| wanted[movie as usize]);
    let mut scanner = Scanner::new(plan, showtimes, wanted);
    let mut reader = ListReader::default();
    let mut every = Vec::with_capacity(SCAN_BLOCK as usize);
    for (segment, (segment_reader, view)) in showtimes
        .searcher
        .segment_readers()
        .iter()
        .zip(&showtimes.segments)
        .enumerate()
    {
        let alive = segment_reader.alive_bitset();
        let record = |tally: &mut Tally, kept: &mut Option<Kept>, found: Match| {
            tally.record(registry, &found);
            match kept {
                Some(list) if list.len() < KEPT_MATCHES => list.push((segment, found)),
                Some(_) => *kept = None,
                None => {}
            }
        };
        match plan.driver(view, listed).1 {
            Driver::Nothing => {}
            Driver::All => {
                let max_doc = segment_reader.max_doc();
                for start in (0..max_doc).step_by(SCAN_BLOCK as usize) {
                    every.clear();
                    every.extend(start..max_doc.min(start + SCAN_BLOCK));
                    scanner.filter(view, alive, Times::Unknown, &every, &mut |found| {
                        record(tally, kept, found);
                    });
                }
            }
            Driver::Docs(movies) => {
                for (docs, starts) in movies {
                    for (chunk, starts) in docs
                        .chunks(SCAN_BLOCK as usize)
                        .zip(starts.chunks(SCAN_BLOCK as usize))
                    {
                        scanner.filter(view, alive, Times::Known(starts), chunk, &mut |found| {
                            record(tally, kept, found);
                        });
                    }
                }
            }
            Driver::Lists { inverted, lists } => {
                for list in lists {
                    if let Some(counted) = &list.counted {
                        if tally.absorb(counted, showtimes, wanted, everything) {
                            // Counted lists yield no matches to keep.
                            *kept = None;
                            continue;
                        }
                    }
                    let times = if list.within {
                        Times::Within
                    } else {
                        Times::Unknown
                    };
                    reader.for_each_block(inverted, list.info, |docs| {
                        scanner.filter(view, alive, times, docs, &mut |found| {
                            record(tally, kept, found);
                        });
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Showtime counts of the first pass.
struct Tally {
    per_movie: Vec<u32>,
    formats: Vec<u64>,
    languages: Vec<u64>,
    cities: Vec<u64>,
}

impl Tally {
    fn new(movies: usize, registry: &Registry) -> Self {
        Self {
            per_movie: vec![0; movies],
            formats: vec![0; registry.formats.len()],
            languages: vec![0; registry.languages.len()],
            cities: vec![0; registry.cities.len()],
        }
    }

    /// Adds the facet counts of counted showtimes.
    fn add_facets(&mut self, counted: &Counted<'_>) {
        for (totals, counts) in [
            (&mut self.cities, counted.cities),
            (&mut self.formats, counted.formats),
            (&mut self.languages, counted.languages),
        ] {
            for &(id, count) in counts {
                add(totals, id, u64::from(count));
            }
        }
    }

    /// Adds counted showtimes when all of them belong to wanted movies, and
    /// says whether it did. `everything` says every movie with showtimes is
    /// wanted, which spares checking.
    fn absorb(
        &mut self,
        counted: &Counted<'_>,
        showtimes: &Showtimes,
        wanted: &[bool],
        everything: bool,
    ) -> bool {
        let wanted = |number: u32| {
            let movie = showtimes.movie(number);
            movie != NO_MOVIE && wanted[movie as usize]
        };
        if !everything && !counted.movies.iter().all(|&(number, _)| wanted(number)) {
            return false;
        }
        for &(number, count) in counted.movies {
            self.per_movie[showtimes.movie(number) as usize] += count;
        }
        self.add_facets(counted);
        true
    }

    /// Counts one matching showtime.
    fn record(&mut self, registry: &Registry, found: &Match) {
        self.per_movie[found.movie as usize] += 1;
        if let Some(venue) = registry.venues.get(found.keys.venue as usize) {
            add(&mut self.cities, venue.city, 1);
        }
        if let Some(presentation) = registry.presentations.get(found.keys.presentation as usize) {
            add(&mut self.formats, presentation.format, 1);
            add(&mut self.languages, presentation.language, 1);
        }
    }
}

fn add(counts: &mut [u64], id: u32, count: u64) {
    if let Some(total) = counts.get_mut(id as usize) {
        *total += count;
    }
}

/// Non-zero counts by value, most common first, then alphabetically.
fn facet_counts<'a>(counts: &[u64], name: impl Fn(u32) -> &'a str, cap: usize) -> Vec<FacetCount> {
    let mut facets: Vec<FacetCount> = counts
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(id, &count)| FacetCount {
            value: name(id as u32).to_owned(),
            count,
        })
        .collect();
    facets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    facets.truncate(cap);
    facets
}

pub(crate) fn search(
    snapshot: &Snapshot,
    fields: &MovieFields,
    analyzer: &TextAnalyzer,
    query: &SearchQuery,
) -> Result<SearchResults, Error> {
    let movies = &snapshot.movies;
    let showtimes = &snapshot.showtimes;
    let registry = &*showtimes.registry;
    let Some(plan) = Plan::new(query, registry) else {
        return Ok(SearchResults::default());
    };
    let relevance = relevance(snapshot, fields, analyzer, query)?;
    let wanted: Vec<bool> = relevance.iter().map(Option::is_some).collect();
    let candidates: Vec<usize> = (0..wanted.len()).filter(|&dense| wanted[dense]).collect();
    if candidates.is_empty() {
        return Ok(SearchResults::default());
    }
    let (tally, kept) = first_pass(showtimes, &plan, &wanted, &candidates)?;

    let mut genres = vec![0u64; movies.genres.len()];
    let mut ranked: Vec<(f32, usize)> = Vec::new();
    let mut total = 0u64;
    for &dense in &candidates {
        if plan.filters() && tally.per_movie[dense] == 0 {
            continue;
        }
        total += 1;
        for &genre in movies.genres_of(dense) {
            genres[genre as usize] += 1;
        }
        let score = movies::score(
            relevance[dense].unwrap_or_default(),
            movies.popularity[dense],
        );
        if query
            .after
            .is_none_or(|after| after.precedes(score, &movies.ids[dense]))
        {
            ranked.push((score, dense));
        }
    }
    // Dense ids follow movie ids, so they break score ties in id order.
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let more = ranked.len() > query.limit;
    if more && query.limit > 0 {
        ranked.select_nth_unstable_by(query.limit, order);
    }
    ranked.truncate(query.limit);
    ranked.sort_unstable_by(order);

    let listed = match kept {
        Some(kept) => pick_showtimes(snapshot, &ranked, kept, query.showtimes_per_hit),
        None => list_showtimes(snapshot, &plan, &ranked, query.showtimes_per_hit),
    };
    let hits: Vec<MovieHit> = ranked
        .iter()
        .zip(listed)
        .map(|(&(score, dense), listed)| {
            let entry = &movies.entries[dense];
            MovieHit {
                id: movies.ids[dense],
                title: entry.title.clone(),
                release_year: entry.release_year,
                genres: movies
                    .genres_of(dense)
                    .iter()
                    .map(|&genre| movies.genres[genre as usize].clone())
                    .collect(),
                rating: entry.rating,
                score,
                showtime_count: u64::from(tally.per_movie[dense]),
                showtimes: listed
                    .iter()
                    .map(|listed| showtime_hit(showtimes, &plan, listed))
                    .collect(),
            }
        })
        .collect();
    let next = match hits.last() {
        Some(last) if more => Some(Cursor {
            score: last.score,
            id: last.id,
        }),
        _ => None,
    };
    Ok(SearchResults {
        total,
        hits,
        facets: Facets {
            genres: facet_counts(&genres, |id| &movies.genres[id as usize], usize::MAX),
            formats: facet_counts(&tally.formats, |id| registry.formats.name(id), usize::MAX),
            languages: facet_counts(
                &tally.languages,
                |id| registry.languages.name(id),
                usize::MAX,
            ),
            cities: facet_counts(
                &tally.cities,
                |id| registry.cities.name(id),
                MAX_CITY_FACETS,
            ),
        },
        next,
    })
}

/// Each movie's text relevance, `None` for a movie the text or genres rule
/// out; without text, every movie is relevant at 0.
fn relevance(
    snapshot: &Snapshot,
    fields: &MovieFields,
    analyzer: &TextAnalyzer,
    query: &SearchQuery,
) -> Result<Vec<Option<f32>>, Error> {
    let movies = &snapshot.movies;
    let words = query
        .text
        .as_deref()
        .map(|text| movies::words(analyzer, text))
        .unwrap_or_default();
    let mut relevance = if words.is_empty() {
        vec![Some(0.0); movies.len()]
    } else {
        let mut relevance = vec![None; movies.len()];
        for (dense, score) in movies.matches(&*fields.search_query(&words))? {
            relevance[dense] = Some(score);
        }
        relevance
    };
    if !query.genres.is_empty() {
        let wanted: Vec<u32> = query
            .genres
            .iter()
            .filter_map(|genre| movies.genre(&genre.to_lowercase()))
            .collect();
        for (dense, relevance) in relevance.iter_mut().enumerate() {
            if !movies
                .genres_of(dense)
                .iter()
                .any(|genre| wanted.contains(genre))
            {
                *relevance = None;
            }
        }
    }
    Ok(relevance)
}

/// Counts the candidate movies' matching showtimes and their facets. Without
/// showtime filters every showtime matches, and the segments' summaries
/// answer; otherwise the plan runs, keeping the matches while they are few
/// so the page's showtimes can be picked from them instead of searched for
/// again.
fn first_pass(
    showtimes: &Showtimes,
    plan: &Plan,
    wanted: &[bool],
    candidates: &[usize],
) -> Result<(Tally, Option<Kept>), Error> {
    let mut tally = Tally::new(wanted.len(), &showtimes.registry);
    if !plan.filters() {
        for &dense in candidates {
            let Some(number) = showtimes.movie_number(dense) else {
                continue;
            };
            for view in &showtimes.segments {
                let counted = view.summaries.movie(number);
                tally.per_movie[dense] += counted.count;
                tally.add_facets(&counted);
            }
        }
        return Ok((tally, None));
    }
    let few = (candidates.len() as f64) <= MOVIE_DRIVER_SHARE * wanted.len() as f64;
    let mut kept = Some(Vec::new());
    count_matches(
        showtimes,
        plan,
        wanted,
        few.then_some(candidates),
        &mut tally,
        &mut kept,
    )?;
    Ok((tally, kept))
}

/// The earliest showtimes of each ranked movie among the first pass's
/// matches, in rank order.
fn pick_showtimes(
    snapshot: &Snapshot,
    ranked: &[(f32, usize)],
    kept: Kept,
    per_hit: usize,
) -> Vec<Vec<Listed>> {
    let showtimes = &snapshot.showtimes;
    let mut rank_of = vec![usize::MAX; snapshot.movies.len()];
    for (rank, &(_, dense)) in ranked.iter().enumerate() {
        rank_of[dense] = rank;
    }
    let mut listed: Vec<Vec<Listed>> = ranked.iter().map(|_| Vec::new()).collect();
    for (segment, found) in kept {
        if let Some(list) = listed.get_mut(rank_of[found.movie as usize]) {
            list.push(Listed::new(showtimes, segment, found));
        }
    }
    for list in &mut listed {
        keep_earliest(list, per_hit, showtimes);
    }
    listed
}

/// A matching showtime of a movie on the page.
struct Listed {
    starts_at: i64,
    keys: Keys,
    segment: usize,
    doc: DocId,
}

impl Listed {
    fn new(showtimes: &Showtimes, segment: usize, found: Match) -> Self {
        let starts_at = found.starts_at.unwrap_or_else(|| {
            showtimes.segments[segment]
                .columns
                .starts_at
                .get_val(found.doc)
        });
        Self {
            starts_at,
            keys: found.keys,
            segment,
            doc: found.doc,
        }
    }

    fn id(&self, showtimes: &Showtimes) -> Uuid {
        let columns = &showtimes.segments[self.segment].columns;
        Uuid::from_u64_pair(
            columns.id_high.get_val(self.doc),
            columns.id_low.get_val(self.doc),
        )
    }
}

/// The earliest matching showtimes of each ranked movie, in rank order; ties
/// in start time go to the lower showtime id. Every segment holds a movie's
/// showtimes in start order with their times at hand, so for each movie the
/// segments' lists are merged by start time and showtimes checked in that
/// order until the list is full: usually just the showtimes listed.
fn list_showtimes(
    snapshot: &Snapshot,
    plan: &Plan,
    ranked: &[(f32, usize)],
    per_hit: usize,
) -> Vec<Vec<Listed>> {
    let mut listed: Vec<Vec<Listed>> = ranked.iter().map(|_| Vec::new()).collect();
    if per_hit == 0 || ranked.is_empty() {
        return listed;
    }
    let showtimes = &snapshot.showtimes;
    let mut wanted = vec![false; snapshot.movies.len()];
    for &(_, dense) in ranked {
        wanted[dense] = true;
    }
    let mut scanner = Scanner::new(plan, showtimes, &wanted);
    let readers = showtimes.searcher.segment_readers();
    // Per segment: the movie's showtimes in the window and how far into
    // them the merge has got.
    let mut cursors: Vec<(&[DocId], &[i64], usize)> = Vec::with_capacity(readers.len());
    for (&(_, dense), found) in ranked.iter().zip(&mut listed) {
        cursors.clear();
        cursors.extend(showtimes.segments.iter().map(|view| {
            let (docs, starts) = match &plan.starts {
                Some(window) => view.movie_docs_within(dense, window),
                None => view.movie_docs(dense),
            };
            (docs, starts, 0)
        }));
        loop {
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(segment, &(_, starts, at))| Some((starts.get(at)?, segment)))
                .min();
            let Some((&starts_at, segment)) = next else {
                break;
            };
            // A full list can only gain showtimes tied with its last.
            if found
                .get(per_hit - 1)
                .is_some_and(|last| starts_at > last.starts_at)
            {
                break;
            }
            let (docs, starts, at) = &mut cursors[segment];
            let (docs, starts, index) = (*docs, *starts, *at);
            *at += 1;
            scanner.filter(
                &showtimes.segments[segment],
                readers[segment].alive_bitset(),
                Times::Known(&starts[index..=index]),
                &docs[index..=index],
                &mut |matched| found.push(Listed::new(showtimes, segment, matched)),
            );
        }
    }
    for found in &mut listed {
        keep_earliest(found, per_hit, showtimes);
    }
    listed
}

/// Narrows a movie's matching showtimes to the earliest `per_hit`, earliest
/// first; ties in start time go to the lower showtime id.
fn keep_earliest(found: &mut Vec<Listed>, per_hit: usize, showtimes: &Showtimes) {
    if per_hit == 0 {
        found.clear();
        return;
    }
    if found.len() > per_hit {
        // Only showtimes no later than the earliest `per_hit` can make the
        // list, so ids are read for those alone.
        found.select_nth_unstable_by_key(per_hit - 1, |listed| listed.starts_at);
        let last = found[per_hit - 1].starts_at;
        found.retain(|listed| listed.starts_at <= last);
    }
    let mut keyed: Vec<(i64, Uuid, Listed)> = found
        .drain(..)
        .map(|listed| (listed.starts_at, listed.id(showtimes), listed))
        .collect();
    keyed.sort_unstable_by_key(|&(starts_at, id, _)| (starts_at, id));
    found.extend(keyed.into_iter().take(per_hit).map(|(_, _, listed)| listed));
}

fn showtime_hit(showtimes: &Showtimes, plan: &Plan, listed: &Listed) -> ShowtimeHit {
    let columns = &showtimes.segments[listed.segment].columns;
    let registry = &*showtimes.registry;
    let doc = listed.doc;
    let venue = registry.venues.get(listed.keys.venue as usize);
    let presentation = registry
        .presentations
        .get(listed.keys.presentation as usize);
    let name = |interner: &Interner, id: Option<u32>| {
        id.map_or_else(String::new, |id| interner.name(id).to_owned())
    };
    ShowtimeHit {
        id: listed.id(showtimes),
        theater_id: venue.map_or_else(Uuid::nil, |venue| venue.theater),
        theater_name: name(&registry.theater_names, venue.map(|v| v.theater_name)),
        city: name(&registry.cities, venue.map(|v| v.city)),
        starts_at: DateTime::from_timestamp_micros(listed.starts_at).unwrap_or_default(),
        format: name(&registry.formats, presentation.map(|p| p.format)),
        language: name(&registry.languages, presentation.map(|p| p.language)),
        min_price_cents: columns.price.get_val(doc),
        seats_available: i32::try_from(columns.seats.get_val(doc)).unwrap_or_default(),
        distance_km: plan
            .area
            .zip(venue)
            .map(|(area, venue)| area.distance(venue.latitude, venue.longitude)),
    }
}

pub(crate) fn suggest(
    snapshot: &Snapshot,
    fields: &MovieFields,
    analyzer: &TextAnalyzer,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Suggestion>, Error> {
    let words = movies::words(analyzer, prefix);
    if words.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let movies = &snapshot.movies;
    let mut found = movies.matches(&*fields.suggest_query(&words))?;
    let popularity = |dense: usize| movies.popularity[dense];
    found.sort_unstable_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| popularity(b.0).total_cmp(&popularity(a.0)))
            .then(a.0.cmp(&b.0))
    });
    Ok(found
        .into_iter()
        .take(limit)
        .map(|(dense, _)| {
            let entry = &movies.entries[dense];
            Suggestion {
                id: movies.ids[dense],
                title: entry.title.clone(),
                release_year: entry.release_year,
            }
        })
        .collect())
}
