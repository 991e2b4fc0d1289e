//! The showtime side of the index. A search reads each segment's most
//! selective posting list (a city, theater, format, language, time slot,
//! grid cell, pairs of these, or a movie) and checks everything else on
//! columnar fast fields, which tantivy keeps bit-packed per segment.
//!
//! Candidates sit at scattered document ids, so each column read is likely
//! a cache miss; that, not arithmetic, is what a scan costs. A showtime's
//! movie, venue and presentation are therefore numbered by a [`Registry`] and
//! packed into one `u64` fast field, so a candidate costs one read of it, and
//! a start time when the query has a time window. What a segment holds never
//! changes, so it is decoded once into per-segment structures: each movie's
//! showtimes in start order, and counts that answer the commonest broad
//! queries without reading showtimes at all.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::fastfield::AliveBitSet;
use tantivy::index::{InvertedIndexReader, SegmentId};
use tantivy::postings::{BlockSegmentPostings, TermInfo};
use tantivy::query::{ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, INDEXED, STRING};
use tantivy::{
    DocId, DocSet, Score, Searcher, SegmentReader, TantivyDocument, TantivyError, Term, TERMINATED,
};
use uuid::Uuid;

use crate::geo;
use crate::movies::{MovieTable, NO_MOVIE};
use crate::{Error, ShowtimeDoc};

/// Showtimes are bucketed into quarter-day slots so a "tonight" or "tomorrow"
/// filter reads a few posting lists instead of every start time. Slots are
/// also indexed paired with the format and with the grid cell, since
/// "tomorrow in IMAX" and "near me tonight" are how people browse, and each
/// pair's lists hold only those showtimes.
pub(crate) const SLOT_MICROS: i64 = 6 * 3_600 * 1_000_000;

const ID_HIGH: &str = "id_high";
const ID_LOW: &str = "id_low";
const KEYS: &str = "keys";
const STARTS_AT: &str = "starts_at";
const PRICE: &str = "min_price_cents";
const SEATS: &str = "seats_available";

/// Start times are kept to the microsecond.
pub(crate) fn micros(at: &DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn slot(micros: i64) -> i64 {
    micros.div_euclid(SLOT_MICROS)
}

/// The term pairing a slot with a format code.
pub(crate) fn slot_format(slot: i64, format: &str) -> String {
    format!("{slot}:{format}")
}

/// The term pairing a slot with a grid cell, as one number so a segment's
/// tens of thousands of such terms stay cheap to hold. Cells are below
/// 2^20 and the slots of every representable date fit in the remaining
/// bits, so distinct pairs get distinct numbers.
pub(crate) fn cell_slot(slot: i64, cell: u64) -> u64 {
    ((slot as u64) << 20) | cell
}

/// Formats and languages compare case-insensitively; they are stored
/// lowercase.
pub(crate) fn code(value: &str) -> String {
    value.to_lowercase()
}

/// Ids are indexed as a 64-bit fingerprint rather than 36 characters of
/// text: random ids share no prefixes, so the term dictionary costs per byte
/// of key, and a million showtimes would otherwise spend most of their
/// indexing and merging time there. Both halves are mixed in so ids that
/// differ in either half (time-ordered ids share a high half within a
/// millisecond) get different fingerprints.
fn fingerprint(id: &Uuid) -> u64 {
    let (high, low) = id.as_u64_pair();
    (high ^ low.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ShowtimeFields {
    id: Field,
    id_high: Field,
    id_low: Field,
    movie: Field,
    keys: Field,
    theater: Field,
    city_key: Field,
    cell: Field,
    starts_at: Field,
    slot: Field,
    slot_format: Field,
    cell_slot: Field,
    format: Field,
    language: Field,
    price: Field,
    seats: Field,
}

impl ShowtimeFields {
    pub(crate) fn schema() -> (Schema, Self) {
        let fast = || NumericOptions::default().set_fast();
        let mut builder = Schema::builder();
        let fields = Self {
            id: builder.add_u64_field("id", INDEXED),
            id_high: builder.add_u64_field(ID_HIGH, fast()),
            id_low: builder.add_u64_field(ID_LOW, fast()),
            movie: builder.add_text_field("movie", STRING),
            keys: builder.add_u64_field(KEYS, fast()),
            theater: builder.add_text_field("theater", STRING),
            city_key: builder.add_text_field("city_key", STRING),
            cell: builder.add_u64_field("cell", INDEXED),
            starts_at: builder.add_i64_field(STARTS_AT, fast()),
            slot: builder.add_i64_field("slot", INDEXED),
            slot_format: builder.add_text_field("slot_format", STRING),
            cell_slot: builder.add_u64_field("cell_slot", INDEXED),
            format: builder.add_text_field("format", STRING),
            language: builder.add_text_field("language", STRING),
            price: builder.add_i64_field(PRICE, fast()),
            seats: builder.add_i64_field(SEATS, fast()),
        };
        (builder.build(), fields)
    }

    /// Matches the showtimes with these ids.
    pub(crate) fn ids_query(&self, ids: &[Uuid]) -> IdsQuery {
        IdsQuery {
            field: self.id,
            ids: Arc::new(ids.to_vec()),
        }
    }

    pub(crate) fn movie_term(&self, id: &Uuid) -> Term {
        Term::from_field_text(self.movie, &id.to_string())
    }

    /// The document for a showtime, numbering its values in `registry`.
    pub(crate) fn document(
        &self,
        showtime: &ShowtimeDoc,
        registry: &mut Registry,
    ) -> Result<TantivyDocument, Error> {
        let (high, low) = showtime.id.as_u64_pair();
        let starts_at = micros(&showtime.starts_at);
        let format = code(&showtime.format);
        let language = code(&showtime.language);
        let keys = registry.keys(showtime, &format, &language)?;
        let cell = geo::cell(showtime.latitude, showtime.longitude);
        let mut document = TantivyDocument::new();
        document.add_u64(self.id, fingerprint(&showtime.id));
        document.add_u64(self.id_high, high);
        document.add_u64(self.id_low, low);
        document.add_text(self.movie, showtime.movie_id.to_string());
        document.add_u64(self.keys, keys.pack());
        document.add_text(self.theater, showtime.theater_id.to_string());
        document.add_text(self.city_key, showtime.city.to_lowercase());
        document.add_u64(self.cell, cell);
        document.add_i64(self.starts_at, starts_at);
        document.add_i64(self.slot, slot(starts_at));
        document.add_text(self.slot_format, slot_format(slot(starts_at), &format));
        document.add_u64(self.cell_slot, cell_slot(slot(starts_at), cell));
        document.add_text(self.format, format);
        document.add_text(self.language, language);
        document.add_i64(self.price, showtime.min_price_cents);
        document.add_i64(self.seats, i64::from(showtime.seats_available));
        Ok(document)
    }
}

/// A showtime's registry numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) movie: u32,
    pub(crate) venue: u32,
    pub(crate) presentation: u32,
}

/// Fast fields are bit-packed to the width of their largest value, so the
/// fields sit as low as their expected counts allow: a venue per theater
/// location and a presentation per format and language pair stay far below
/// these limits, and movies take the high bits, which are free.
const MOVIE_SHIFT: u32 = 24;
const VENUE_SHIFT: u32 = 8;
const MOVIE_LIMIT: usize = 1 << 24;
const VENUE_LIMIT: usize = 1 << 16;
const PRESENTATION_LIMIT: usize = 1 << 8;

impl Keys {
    fn pack(self) -> u64 {
        (u64::from(self.movie) << MOVIE_SHIFT)
            | (u64::from(self.venue) << VENUE_SHIFT)
            | u64::from(self.presentation)
    }

    #[inline]
    pub(crate) fn unpack(packed: u64) -> Self {
        Self {
            movie: (packed >> MOVIE_SHIFT) as u32,
            venue: ((packed >> VENUE_SHIFT) as u32) & 0xFFFF,
            presentation: (packed as u32) & 0xFF,
        }
    }
}

/// Strings numbered in order of first appearance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    by_lowercase: HashMap<String, Vec<u32>>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        self.by_lowercase
            .entry(name.to_lowercase())
            .or_default()
            .push(id);
        id
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Ids of the names equal to `lowercase` ignoring case.
    pub(crate) fn ids_ignoring_case(&self, lowercase: &str) -> &[u32] {
        self.by_lowercase.get(lowercase).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Where a showtime is screened: what a theater repeats across all of its
/// showtimes. There are about as many venues as theaters, so the table stays
/// in cache and a search decides each venue once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Venue {
    pub(crate) theater: Uuid,
    pub(crate) theater_name: u32,
    pub(crate) city: u32,
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
}

/// How a showtime is screened: its format and language.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presentation {
    pub(crate) format: u32,
    pub(crate) language: u32,
}

/// Identity of a venue; coordinates by their bits, which is equality.
type VenueKey = (Uuid, u32, u32, u64, u64);

/// Numbers for the movies, venues and presentations of indexed showtimes,
/// handed out on first sight and never reused, so a number in any segment
/// keeps its meaning. The index lives only in memory, so the registry never
/// needs to outlast it; it grows only with distinct values, not showtimes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    movies: Vec<Uuid>,
    movie_numbers: HashMap<Uuid, u32>,
    pub(crate) venues: Vec<Venue>,
    venue_numbers: HashMap<VenueKey, u32>,
    pub(crate) presentations: Vec<Presentation>,
    presentation_numbers: HashMap<(u32, u32), u32>,
    pub(crate) theater_names: Interner,
    pub(crate) cities: Interner,
    pub(crate) formats: Interner,
    pub(crate) languages: Interner,
}

/// The number of `key`, registering `value` under a new one if needed.
fn number<K: Eq + Hash, V>(
    numbers: &mut HashMap<K, u32>,
    values: &mut Vec<V>,
    limit: usize,
    what: &'static str,
    key: K,
    value: impl FnOnce() -> V,
) -> Result<u32, Error> {
    if let Some(&number) = numbers.get(&key) {
        return Ok(number);
    }
    if values.len() >= limit {
        return Err(Error::TooMany(what));
    }
    let number = values.len() as u32;
    values.push(value());
    numbers.insert(key, number);
    Ok(number)
}

impl Registry {
    fn keys(
        &mut self,
        showtime: &ShowtimeDoc,
        format: &str,
        language: &str,
    ) -> Result<Keys, Error> {
        let movie = number(
            &mut self.movie_numbers,
            &mut self.movies,
            MOVIE_LIMIT,
            "movies",
            showtime.movie_id,
            || showtime.movie_id,
        )?;
        let theater_name = self.theater_names.intern(&showtime.theater_name);
        let city = self.cities.intern(&showtime.city);
        let venue = Venue {
            theater: showtime.theater_id,
            theater_name,
            city,
            latitude: showtime.latitude,
            longitude: showtime.longitude,
        };
        let venue_key = (
            venue.theater,
            theater_name,
            city,
            venue.latitude.to_bits(),
            venue.longitude.to_bits(),
        );
        let venue = number(
            &mut self.venue_numbers,
            &mut self.venues,
            VENUE_LIMIT,
            "venues",
            venue_key,
            || venue,
        )?;
        let presentation = Presentation {
            format: self.formats.intern(format),
            language: self.languages.intern(language),
        };
        let presentation = number(
            &mut self.presentation_numbers,
            &mut self.presentations,
            PRESENTATION_LIMIT,
            "format and language pairs",
            (presentation.format, presentation.language),
            || presentation,
        )?;
        Ok(Keys {
            movie,
            venue,
            presentation,
        })
    }

    /// For each movie number, its dense id in `movies`.
    fn movie_positions(&self, movies: &MovieTable) -> Vec<u32> {
        self.movies
            .iter()
            .map(|id| movies.position(id).unwrap_or(NO_MOVIE))
            .collect()
    }
}

/// Showtimes by id: the fingerprint's posting list finds candidates and the
/// id columns confirm them, so a fingerprint collision never matches the
/// wrong showtime.
#[derive(Debug, Clone)]
pub(crate) struct IdsQuery {
    field: Field,
    ids: Arc<Vec<Uuid>>,
}

impl Query for IdsQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl IdsQuery {
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Vec<DocId>> {
        let inverted = reader.inverted_index(self.field)?;
        let high = every_row(reader.fast_fields().u64(ID_HIGH)?, 0);
        let low = every_row(reader.fast_fields().u64(ID_LOW)?, 0);
        let mut matches = Vec::new();
        let mut lists = ListReader::default();
        for id in self.ids.iter() {
            let term = Term::from_field_u64(self.field, fingerprint(id));
            let Some(info) = inverted.get_term_info(&term)? else {
                continue;
            };
            let pair = id.as_u64_pair();
            lists.for_each_block(&inverted, &info, |docs| {
                matches.extend(
                    docs.iter()
                        .filter(|&&doc| (high.get_val(doc), low.get_val(doc)) == pair),
                );
            })?;
        }
        matches.sort_unstable();
        matches.dedup();
        Ok(matches)
    }
}

impl Weight for IdsQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let docs = DocList {
            docs: self.matches(reader)?,
            position: 0,
        };
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.matches(reader)?.contains(&doc) {
            Ok(Explanation::new("showtime id", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} has none of the ids"
            )))
        }
    }
}

/// Sorted, distinct documents.
struct DocList {
    docs: Vec<DocId>,
    position: usize,
}

impl DocSet for DocList {
    fn advance(&mut self) -> DocId {
        self.position = (self.position + 1).min(self.docs.len());
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.position).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.docs.len()).unwrap_or(u32::MAX)
    }
}

/// Reads posting lists one after another through a single decoder: most
/// lists a search reads are short, and setting up a fresh decoder (a
/// kilobyte of buffers) would cost as much as decoding one.
#[derive(Default)]
pub(crate) struct ListReader(Option<BlockSegmentPostings>);

impl ListReader {
    /// Hands each block of a posting list's documents to `each`.
    pub(crate) fn for_each_block(
        &mut self,
        inverted: &InvertedIndexReader,
        info: &TermInfo,
        mut each: impl FnMut(&[DocId]),
    ) -> std::io::Result<()> {
        let postings = match &mut self.0 {
            Some(postings) => {
                inverted.reset_block_postings_from_terminfo(info, postings)?;
                postings
            }
            None => self.0.insert(
                inverted.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?,
            ),
        };
        loop {
            let docs = postings.docs();
            if docs.is_empty() {
                return Ok(());
            }
            each(docs);
            postings.advance();
        }
    }
}

/// A column with one value per document. Showtime fields are all required,
/// so segments hold full columns and reads go straight to the bit-packed
/// values; the default only fills in for documents that lack a value.
fn every_row<T>(column: Column<T>, default: T) -> Arc<dyn ColumnValues<T>>
where
    T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static,
{
    if column.get_cardinality() == Cardinality::Full {
        column.values
    } else {
        column.first_or_default_col(default)
    }
}

/// One indexed field of a segment: where its postings live and the posting
/// list of each of its terms. Filterable fields have small vocabularies, so
/// reading the whole dictionary once per segment spares every search its
/// term lookups.
pub(crate) struct Postings<K> {
    pub(crate) inverted: Arc<InvertedIndexReader>,
    terms: HashMap<K, TermInfo>,
}

impl<K: Eq + Hash> Postings<K> {
    fn open(
        reader: &SegmentReader,
        field: Field,
        key: impl Fn(&[u8]) -> Option<K>,
    ) -> Result<Self, Error> {
        let inverted = reader.inverted_index(field)?;
        let mut terms = HashMap::new();
        let mut stream = inverted.terms().stream()?;
        while let Some((bytes, info)) = stream.next() {
            if let Some(key) = key(bytes) {
                terms.insert(key, info.clone());
            }
        }
        Ok(Self { inverted, terms })
    }

    pub(crate) fn get(&self, key: &K) -> Option<&TermInfo> {
        self.terms.get(key)
    }
}

fn text_key(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

fn number_key(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Every movie's showtimes in one segment, decoded once and ordered by
/// start time, with the start times alongside: an index by movie and time.
/// A movie has only a few showtimes per segment, so searches that start from
/// a set of movies would otherwise spend as long setting up each short
/// posting list as reading it; and with the times at hand, a movie's
/// showtimes in a window, or its next few, are a binary search away instead
/// of a column read per showtime.
struct MovieDocs {
    docs: Vec<DocId>,
    starts: Vec<i64>,
    spans: HashMap<Uuid, (usize, usize)>,
}

impl MovieDocs {
    fn open(
        reader: &SegmentReader,
        field: Field,
        starts_at: &dyn ColumnValues<i64>,
    ) -> Result<Self, Error> {
        let inverted = reader.inverted_index(field)?;
        let mut lists = ListReader::default();
        let mut docs = Vec::with_capacity(reader.max_doc() as usize);
        let mut spans = HashMap::new();
        let mut stream = inverted.terms().stream()?;
        let mut starts = Vec::with_capacity(docs.capacity());
        let mut timed = Vec::new();
        while let Some((bytes, info)) = stream.next() {
            let Ok(id) = Uuid::try_parse_ascii(bytes) else {
                continue;
            };
            timed.clear();
            lists.for_each_block(&inverted, info, |block| {
                timed.extend(block.iter().map(|&doc| (starts_at.get_val(doc), doc)));
            })?;
            timed.sort_unstable();
            let start = docs.len();
            docs.extend(timed.iter().map(|&(_, doc)| doc));
            starts.extend(timed.iter().map(|&(starts_at, _)| starts_at));
            spans.insert(id, (start, docs.len()));
        }
        Ok(Self {
            docs,
            starts,
            spans,
        })
    }
}

/// Posting lists of the filterable fields of one segment.
pub(crate) struct SegmentPostings {
    movie: MovieDocs,
    pub(crate) theater: Postings<String>,
    pub(crate) city: Postings<String>,
    pub(crate) format: Postings<String>,
    pub(crate) language: Postings<String>,
    /// Keyed by the slot's order-preserving `u64` encoding.
    pub(crate) slot: Postings<u64>,
    pub(crate) slot_format: Postings<String>,
    pub(crate) cell_slot: Postings<u64>,
    pub(crate) cell: Postings<u64>,
}

/// The columns and posting lists of one segment. Segments never change once
/// written (deletes live in a separate bitset), so this is built once per
/// segment and shared by every snapshot that contains it.
pub(crate) struct SegmentColumns {
    segment: SegmentId,
    pub(crate) max_doc: u32,
    pub(crate) id_high: Arc<dyn ColumnValues<u64>>,
    pub(crate) id_low: Arc<dyn ColumnValues<u64>>,
    /// Packed [`Keys`].
    pub(crate) keys: Arc<dyn ColumnValues<u64>>,
    pub(crate) starts_at: Arc<dyn ColumnValues<i64>>,
    pub(crate) price: Arc<dyn ColumnValues<i64>>,
    pub(crate) seats: Arc<dyn ColumnValues<i64>>,
    pub(crate) postings: SegmentPostings,
}

impl SegmentColumns {
    fn open(reader: &SegmentReader, fields: &ShowtimeFields) -> Result<Self, Error> {
        let fast = reader.fast_fields();
        let starts_at = every_row(fast.i64(STARTS_AT)?, 0);
        let movie = MovieDocs::open(reader, fields.movie, &*starts_at)?;
        Ok(Self {
            segment: reader.segment_id(),
            max_doc: reader.max_doc(),
            id_high: every_row(fast.u64(ID_HIGH)?, 0),
            id_low: every_row(fast.u64(ID_LOW)?, 0),
            keys: every_row(fast.u64(KEYS)?, u64::MAX),
            starts_at,
            price: every_row(fast.i64(PRICE)?, i64::MAX),
            seats: every_row(fast.i64(SEATS)?, i64::MIN),
            postings: SegmentPostings {
                movie,
                theater: Postings::open(reader, fields.theater, text_key)?,
                city: Postings::open(reader, fields.city_key, text_key)?,
                format: Postings::open(reader, fields.format, text_key)?,
                language: Postings::open(reader, fields.language, text_key)?,
                slot: Postings::open(reader, fields.slot, number_key)?,
                slot_format: Postings::open(reader, fields.slot_format, text_key)?,
                cell_slot: Postings::open(reader, fields.cell_slot, number_key)?,
                cell: Postings::open(reader, fields.cell, number_key)?,
            },
        })
    }
}

/// Counts by registry number or interned id.
pub(crate) type Counts = [(u32, u32)];

/// A set of live showtimes counted: how many, and how many by movie, city,
/// format and language, each as a range of [`Summaries`]' arrays.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    count: u32,
    movies: (usize, usize),
    cities: (usize, usize),
    formats: (usize, usize),
    languages: (usize, usize),
}

/// A set of live showtimes counted.
pub(crate) struct Counted<'a> {
    pub(crate) count: u32,
    /// By registry movie number.
    pub(crate) movies: &'a Counts,
    pub(crate) cities: &'a Counts,
    pub(crate) formats: &'a Counts,
    pub(crate) languages: &'a Counts,
}

/// Counters for one kind of value while a set of showtimes is counted,
/// remembering which were touched so emptying them is cheap.
struct Counter {
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl Counter {
    fn new(values: usize) -> Self {
        Self {
            counts: vec![0; values],
            touched: Vec::new(),
        }
    }

    fn add(&mut self, id: u32) {
        if let Some(count) = self.counts.get_mut(id as usize) {
            if *count == 0 {
                self.touched.push(id);
            }
            *count += 1;
        }
    }

    /// Moves the counts to `out`, returning their range there.
    fn drain_into(&mut self, out: &mut Vec<(u32, u32)>) -> (usize, usize) {
        let start = out.len();
        for id in self.touched.drain(..) {
            out.push((id, std::mem::take(&mut self.counts[id as usize])));
        }
        (start, out.len())
    }
}

/// Counts sets of showtimes one after another.
struct Counting<'a> {
    registry: &'a Registry,
    count: u32,
    movies: Counter,
    cities: Counter,
    formats: Counter,
    languages: Counter,
}

impl<'a> Counting<'a> {
    fn new(registry: &'a Registry) -> Self {
        Self {
            registry,
            count: 0,
            movies: Counter::new(registry.movies.len()),
            cities: Counter::new(registry.cities.len()),
            formats: Counter::new(registry.formats.len()),
            languages: Counter::new(registry.languages.len()),
        }
    }

    /// Counts the live showtimes among `docs`.
    fn add(&mut self, columns: &SegmentColumns, alive: Option<&AliveBitSet>, docs: &[DocId]) {
        let mut packed = vec![0; docs.len()];
        columns.keys.get_vals(docs, &mut packed);
        for (&doc, &packed) in docs.iter().zip(&packed) {
            if alive.is_some_and(|alive| !alive.is_alive(doc)) {
                continue;
            }
            let keys = Keys::unpack(packed);
            self.count += 1;
            self.movies.add(keys.movie);
            if let Some(venue) = self.registry.venues.get(keys.venue as usize) {
                self.cities.add(venue.city);
            }
            if let Some(presentation) = self.registry.presentations.get(keys.presentation as usize)
            {
                self.formats.add(presentation.format);
                self.languages.add(presentation.language);
            }
        }
    }

    /// Stores what was counted since the last call and starts afresh.
    fn finish(&mut self, summaries: &mut Summaries) -> Summary {
        Summary {
            count: std::mem::take(&mut self.count),
            movies: self.movies.drain_into(&mut summaries.movie_counts),
            cities: self.cities.drain_into(&mut summaries.cities),
            formats: self.formats.drain_into(&mut summaries.formats),
            languages: self.languages.drain_into(&mut summaries.languages),
        }
    }
}

/// One segment's live showtimes counted by movie and by time slot (alone and
/// with each format). Queries without showtime filters count every showtime
/// of their movies, and browsing by day (and format) counts every showtime
/// of a few slots; these answer both without reading a single showtime.
/// They depend only on the segment and its deletions, so they are built when
/// a segment appears and rebuilt only when its deletions change. Each kind of
/// count sits in its own flat array so adding them up is a straight walk.
pub(crate) struct Summaries {
    deleted: u32,
    /// By registry movie number.
    movies: Vec<Summary>,
    slots: HashMap<u64, Summary>,
    slot_formats: HashMap<String, Summary>,
    movie_counts: Vec<(u32, u32)>,
    cities: Vec<(u32, u32)>,
    formats: Vec<(u32, u32)>,
    languages: Vec<(u32, u32)>,
}

impl Summaries {
    fn compute(
        reader: &SegmentReader,
        columns: &SegmentColumns,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let alive = reader.alive_bitset();
        let mut counting = Counting::new(registry);
        let mut summaries = Self {
            deleted: reader.num_deleted_docs(),
            movies: vec![Summary::default(); registry.movies.len()],
            slots: HashMap::new(),
            slot_formats: HashMap::new(),
            movie_counts: Vec::new(),
            cities: Vec::new(),
            formats: Vec::new(),
            languages: Vec::new(),
        };
        let movie_docs = &columns.postings.movie;
        for &(start, end) in movie_docs.spans.values() {
            for chunk in movie_docs.docs[start..end].chunks(128) {
                counting.add(columns, alive, chunk);
            }
            let summary = counting.finish(&mut summaries);
            let number = summaries.movie_counts[summary.movies.0..summary.movies.1]
                .first()
                .map(|&(number, _)| number);
            if let Some(slot) = number.and_then(|number| summaries.movies.get_mut(number as usize))
            {
                *slot = summary;
            }
        }
        let mut lists = ListReader::default();
        let postings = &columns.postings;
        for (key, info) in &postings.slot.terms {
            lists.for_each_block(&postings.slot.inverted, info, |docs| {
                counting.add(columns, alive, docs);
            })?;
            let summary = counting.finish(&mut summaries);
            summaries.slots.insert(*key, summary);
        }
        for (key, info) in &postings.slot_format.terms {
            lists.for_each_block(&postings.slot_format.inverted, info, |docs| {
                counting.add(columns, alive, docs);
            })?;
            let summary = counting.finish(&mut summaries);
            summaries.slot_formats.insert(key.clone(), summary);
        }
        Ok(summaries)
    }

    fn counted(&self, summary: Summary) -> Counted<'_> {
        Counted {
            count: summary.count,
            movies: &self.movie_counts[summary.movies.0..summary.movies.1],
            cities: &self.cities[summary.cities.0..summary.cities.1],
            formats: &self.formats[summary.formats.0..summary.formats.1],
            languages: &self.languages[summary.languages.0..summary.languages.1],
        }
    }

    /// A movie's live showtimes in the segment, counted.
    pub(crate) fn movie(&self, number: u32) -> Counted<'_> {
        self.counted(
            self.movies
                .get(number as usize)
                .copied()
                .unwrap_or_default(),
        )
    }

    /// A slot's live showtimes, by its order-preserving `u64` encoding.
    pub(crate) fn slot(&self, key: u64) -> Option<Counted<'_>> {
        self.slots.get(&key).map(|&summary| self.counted(summary))
    }

    /// The live showtimes of a slot in a format, by their [`slot_format`]
    /// term.
    pub(crate) fn slot_format(&self, key: &str) -> Option<Counted<'_>> {
        self.slot_formats
            .get(key)
            .map(|&summary| self.counted(summary))
    }
}

/// A segment as one snapshot sees it: its columns, and where the showtimes
/// of each movie of that snapshot's movie table are, by dense id.
pub(crate) struct SegmentView {
    pub(crate) columns: Arc<SegmentColumns>,
    movies: Arc<Vec<(usize, usize)>>,
    pub(crate) summaries: Arc<Summaries>,
}

impl SegmentView {
    fn spans(columns: &SegmentColumns, movies: &MovieTable) -> Arc<Vec<(usize, usize)>> {
        let mut spans = vec![(0, 0); movies.len()];
        for (id, &span) in &columns.postings.movie.spans {
            if let Some(dense) = movies.position(id) {
                spans[dense as usize] = span;
            }
        }
        Arc::new(spans)
    }

    /// The showtimes of a dense movie id in this segment, deleted or not,
    /// by start time, with their start times.
    pub(crate) fn movie_docs(&self, dense: usize) -> (&[DocId], &[i64]) {
        let (start, end) = self.movies.get(dense).copied().unwrap_or_default();
        let movie = &self.columns.postings.movie;
        (&movie.docs[start..end], &movie.starts[start..end])
    }

    /// The showtimes of a dense movie id starting within `window`, by start
    /// time, with their start times.
    pub(crate) fn movie_docs_within(
        &self,
        dense: usize,
        window: &Range<i64>,
    ) -> (&[DocId], &[i64]) {
        let (docs, starts) = self.movie_docs(dense);
        let first = starts.partition_point(|&starts_at| starts_at < window.start);
        let end = starts.partition_point(|&starts_at| starts_at < window.end);
        (&docs[first..end], &starts[first..end])
    }
}

/// Showtimes as of one reload, joined to one movie table.
pub(crate) struct Showtimes {
    pub(crate) searcher: Searcher,
    /// Aligned with `searcher.segment_readers()`.
    pub(crate) segments: Vec<SegmentView>,
    pub(crate) registry: Arc<Registry>,
    /// Dense movie id of each registry movie number, [`NO_MOVIE`] for a
    /// movie not in the table.
    movie_positions: Vec<u32>,
    /// Registry movie number of each dense movie id, [`NO_MOVIE`] for a movie
    /// without showtimes.
    movie_numbers: Vec<u32>,
    movies: Arc<MovieTable>,
}

impl Showtimes {
    /// Views for `searcher` joined to `movies`, reusing what `previous`
    /// already built for segments it shares.
    pub(crate) fn build(
        searcher: Searcher,
        fields: &ShowtimeFields,
        movies: &Arc<MovieTable>,
        registry: Arc<Registry>,
        previous: Option<&Showtimes>,
    ) -> Result<Self, Error> {
        let same_movies = previous.is_some_and(|p| Arc::ptr_eq(&p.movies, movies));
        let known: HashMap<SegmentId, &SegmentView> = previous
            .map(|p| {
                p.segments
                    .iter()
                    .map(|view| (view.columns.segment, view))
                    .collect()
            })
            .unwrap_or_default();
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        for reader in searcher.segment_readers() {
            let known = known.get(&reader.segment_id());
            let columns = match known {
                Some(view) => Arc::clone(&view.columns),
                None => Arc::new(SegmentColumns::open(reader, fields)?),
            };
            let movies = match known {
                Some(view) if same_movies => Arc::clone(&view.movies),
                _ => SegmentView::spans(&columns, movies),
            };
            let summaries = match known {
                Some(view) if view.summaries.deleted == reader.num_deleted_docs() => {
                    Arc::clone(&view.summaries)
                }
                _ => Arc::new(Summaries::compute(reader, &columns, &registry)?),
            };
            segments.push(SegmentView {
                columns,
                movies,
                summaries,
            });
        }
        let mut movie_numbers = vec![NO_MOVIE; movies.len()];
        let movie_positions = registry.movie_positions(movies);
        for (number, &dense) in movie_positions.iter().enumerate() {
            if let Some(slot) = movie_numbers.get_mut(dense as usize) {
                *slot = number as u32;
            }
        }
        Ok(Self {
            searcher,
            segments,
            movie_positions,
            movie_numbers,
            registry,
            movies: Arc::clone(movies),
        })
    }

    /// Registry movie number of a dense movie id, if it has showtimes.
    pub(crate) fn movie_number(&self, dense: usize) -> Option<u32> {
        self.movie_numbers
            .get(dense)
            .copied()
            .filter(|&number| number != NO_MOVIE)
    }

    /// Whether every movie with showtimes is in the movie table and passes.
    pub(crate) fn every_movie(&self, pass: impl Fn(u32) -> bool) -> bool {
        self.movie_positions
            .iter()
            .all(|&movie| movie != NO_MOVIE && pass(movie))
    }

    /// Dense movie id of a registry movie number, [`NO_MOVIE`] for none.
    #[inline]
    pub(crate) fn movie(&self, number: u32) -> u32 {
        self.movie_positions
            .get(number as usize)
            .copied()
            .unwrap_or(NO_MOVIE)
    }
}
