//! The movie side of the index: full-text fields in tantivy, plus a table of
//! every live movie that searches join showtimes against.

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
    STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument, Term};
use uuid::Uuid;

use crate::{Error, MovieDoc};

/// Name under which [`analyzer`] is registered with the index.
pub(crate) const TOKENIZER: &str = "marquee_text";

/// Words split on anything but letters and digits, so query syntax is just
/// punctuation; folded to lowercase ASCII so "Amélie" is found by "amelie".
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Stands for "no live movie" in tables of dense movie ids.
pub(crate) const NO_MOVIE: u32 = u32::MAX;

/// Votes at which a film counts as universally known: the most-rated films on
/// the large public rating sites sit around a million.
const WELL_KNOWN_VOTES: f64 = 1_000_000.0;

/// How much popularity can lift a score: at most 10 %, enough to order
/// equally good text matches and near-misses, never enough for a famous film
/// to outrank a clearly better match.
const POPULARITY_WEIGHT: f64 = 0.1;

/// Popularity in `0..=1`: `ln(1 + votes) / ln(1 + WELL_KNOWN_VOTES)`, capped at
/// 1, times `rating / 10`. The logarithm makes vote counts saturate (a film
/// with two million votes is not a thousand times as relevant as one with two
/// thousand), and multiplying by the rating keeps a widely seen flop from
/// outranking a well-liked film. A film without votes or rating scores 0.
pub(crate) fn popularity(rating: Option<f64>, votes: Option<i64>) -> f64 {
    let rating = rating
        .filter(|r| r.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 10.0);
    let votes = votes.unwrap_or(0).max(0) as f64;
    let reach = (votes.ln_1p() / WELL_KNOWN_VOTES.ln_1p()).min(1.0);
    reach * rating / 10.0
}

/// A movie's score: text relevance lifted by popularity. Relevance is offset
/// by one so that without text, where every movie's relevance is 0, the
/// order is popularity alone. Computed in f64 and rounded once, so the same
/// inputs always give the same bits, which cursors rely on.
pub(crate) fn score(relevance: f32, popularity: f64) -> f32 {
    ((1.0 + f64::from(relevance)) * (1.0 + POPULARITY_WEIGHT * popularity)) as f32
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct MovieFields {
    pub(crate) id: Field,
    title: Field,
    /// Director and cast together: they weigh the same, and one field
    /// means one typo automaton per query word instead of two.
    people: Field,
    synopsis: Field,
    genre: Field,
    year: Field,
    rating: Field,
    votes: Field,
}

impl MovieFields {
    pub(crate) fn schema() -> (Schema, Self) {
        let text = |stored: bool| {
            let options = TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            );
            if stored {
                options.set_stored()
            } else {
                options
            }
        };
        let mut builder = Schema::builder();
        let fields = Self {
            id: builder.add_text_field("id", STRING | STORED),
            title: builder.add_text_field("title", text(true)),
            people: builder.add_text_field("people", text(false)),
            synopsis: builder.add_text_field("synopsis", text(false)),
            genre: builder.add_text_field("genre", STORED),
            year: builder.add_i64_field("year", NumericOptions::default().set_stored()),
            rating: builder.add_f64_field("rating", NumericOptions::default().set_stored()),
            votes: builder.add_i64_field("votes", NumericOptions::default().set_stored()),
        };
        (builder.build(), fields)
    }

    pub(crate) fn id_term(&self, id: &Uuid) -> Term {
        Term::from_field_text(self.id, &id.to_string())
    }

    pub(crate) fn document(&self, movie: &MovieDoc) -> TantivyDocument {
        let mut document = TantivyDocument::new();
        document.add_text(self.id, movie.id.to_string());
        document.add_text(self.title, &movie.title);
        for person in movie.director.iter().chain(&movie.cast) {
            document.add_text(self.people, person);
        }
        if let Some(synopsis) = &movie.synopsis {
            document.add_text(self.synopsis, synopsis);
        }
        for genre in &movie.genres {
            document.add_text(self.genre, genre.to_lowercase());
        }
        if let Some(year) = movie.release_year {
            document.add_i64(self.year, i64::from(year));
        }
        if let Some(rating) = movie.rating {
            document.add_f64(self.rating, rating);
        }
        if let Some(votes) = movie.votes {
            document.add_i64(self.votes, votes);
        }
        document
    }

    /// Every word must match somewhere. Within a field a word scores best
    /// exactly, then as the start of a word (autocomplete), then with one
    /// typo, so "goodf" ranks "Goodfellas" above "The Godfather"; across
    /// fields the title counts most, people less and the synopsis least.
    pub(crate) fn search_query(&self, words: &[String]) -> Box<dyn Query> {
        let clauses = words
            .iter()
            .map(|word| {
                let typos = allows_typo(word);
                let mut alternatives = Vec::new();
                for (field, weight, typo_query) in [
                    (self.title, 8.0, Some(TypoQuery::Prefix)),
                    (self.people, 4.0, Some(TypoQuery::Word)),
                    // Prose holds so many near-miss words that a typo match
                    // there is mostly noise.
                    (self.synopsis, 1.0, None),
                ] {
                    let term = Term::from_field_text(field, word);
                    alternatives.push(should(
                        TermQuery::new(term.clone(), IndexRecordOption::WithFreqs),
                        weight,
                    ));
                    alternatives.push(should(
                        FuzzyTermQuery::new_prefix(term.clone(), 0, true),
                        weight / 2.0,
                    ));
                    match typo_query.filter(|_| typos) {
                        Some(TypoQuery::Prefix) => alternatives.push(should(
                            FuzzyTermQuery::new_prefix(term, 1, true),
                            weight / 8.0,
                        )),
                        Some(TypoQuery::Word) => alternatives
                            .push(should(FuzzyTermQuery::new(term, 1, true), weight / 4.0)),
                        None => {}
                    }
                }
                must(BooleanQuery::new(alternatives))
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }

    /// Title autocomplete: finished words must be there, exactly or with a
    /// typo; the word being typed may be a prefix, with a typo too. Scores are
    /// constants per kind of match, so equal matches tie exactly and
    /// popularity decides between them.
    pub(crate) fn suggest_query(&self, words: &[String]) -> Box<dyn Query> {
        let last = words.len().saturating_sub(1);
        let clauses = words
            .iter()
            .enumerate()
            .map(|(position, word)| {
                let term = Term::from_field_text(self.title, word);
                let typos = allows_typo(word);
                let mut alternatives = Vec::new();
                if position == last {
                    alternatives.push(should(
                        FuzzyTermQuery::new_prefix(term.clone(), 0, true),
                        2.0,
                    ));
                    if typos {
                        alternatives.push(should(FuzzyTermQuery::new_prefix(term, 1, true), 1.0));
                    }
                } else {
                    alternatives.push((
                        Occur::Should,
                        Box::new(ConstScoreQuery::new(
                            Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic)),
                            2.0,
                        )) as Box<dyn Query>,
                    ));
                    if typos {
                        alternatives.push(should(FuzzyTermQuery::new(term, 1, true), 1.0));
                    }
                }
                must(BooleanQuery::new(alternatives))
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }
}

#[derive(Clone, Copy)]
enum TypoQuery {
    Prefix,
    Word,
}

/// One typo in a word under four letters matches most short words.
fn allows_typo(word: &str) -> bool {
    word.chars().count() >= 4
}

fn should(query: impl Query, boost: f32) -> (Occur, Box<dyn Query>) {
    (
        Occur::Should,
        Box::new(BoostQuery::new(Box::new(query), boost)),
    )
}

fn must(query: impl Query) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(query))
}

/// Splits text the way titles are indexed.
pub(crate) fn words(analyzer: &TextAnalyzer, text: &str) -> Vec<String> {
    let mut analyzer = analyzer.clone();
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while stream.advance() {
        words.push(stream.token().text.clone());
    }
    words
}

/// Collects every matching document with its score; searches need them all
/// to count and facet, not only a top page.
pub(crate) struct AllMatches;

pub(crate) struct SegmentMatches {
    segment: SegmentOrdinal,
    matches: Vec<(SegmentOrdinal, DocId, Score)>,
}

impl Collector for AllMatches {
    type Fruit = Vec<(SegmentOrdinal, DocId, Score)>;
    type Child = SegmentMatches;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(SegmentMatches {
            segment,
            matches: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentMatches {
    type Fruit = Vec<(SegmentOrdinal, DocId, Score)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.matches.push((self.segment, doc, score));
    }

    fn harvest(self) -> Self::Fruit {
        self.matches
    }
}

/// What a hit shows of a movie.
#[derive(Debug, Clone)]
pub(crate) struct MovieEntry {
    pub(crate) title: String,
    pub(crate) release_year: Option<i32>,
    pub(crate) rating: Option<f64>,
}

/// Every live movie, sorted by id. A movie's position here ("dense id") is
/// how showtimes join to it, and sorting by id makes that position the
/// tie-break order for results. What every search reads for every candidate
/// (id, popularity, genres) sits in flat arrays apart from what only hits
/// show, so ranking thousands of movies stays within a few cache lines each.
pub(crate) struct MovieTable {
    pub(crate) searcher: Searcher,
    pub(crate) ids: Vec<Uuid>,
    pub(crate) popularity: Vec<f64>,
    /// Each movie's genres are `genre_ids[genre_starts[dense]..genre_starts[dense + 1]]`.
    genre_ids: Vec<u32>,
    genre_starts: Vec<usize>,
    pub(crate) entries: Vec<MovieEntry>,
    pub(crate) genres: Vec<String>,
    /// Per segment of `searcher`, the dense id of each document.
    documents: Vec<Vec<u32>>,
}

/// A movie as read from the document store.
struct Loaded {
    id: Uuid,
    entry: MovieEntry,
    genres: Vec<u32>,
    popularity: f64,
    segment: usize,
    doc: DocId,
}

impl MovieTable {
    /// Reads every live movie out of the document store. This happens once
    /// per change to the movies, which are few next to showtimes.
    pub(crate) fn load(searcher: Searcher, fields: &MovieFields) -> Result<Self, Error> {
        let mut genre_numbers: HashMap<String, u32> = HashMap::new();
        let mut genres = Vec::new();
        let mut loaded = Vec::new();
        for (segment, reader) in searcher.segment_readers().iter().enumerate() {
            let store = reader.get_store_reader(64)?;
            for doc in reader.doc_ids_alive() {
                let document: TantivyDocument = store.get(doc)?;
                let text = |field| {
                    document
                        .get_first(field)
                        .and_then(|v| v.as_str().map(str::to_owned))
                };
                let Some(id) = text(fields.id).and_then(|id| Uuid::try_parse(&id).ok()) else {
                    continue;
                };
                let mut movie_genres = Vec::new();
                for genre in document.get_all(fields.genre).filter_map(|v| v.as_str()) {
                    let next = genres.len() as u32;
                    let number = *genre_numbers.entry(genre.to_owned()).or_insert_with(|| {
                        genres.push(genre.to_owned());
                        next
                    });
                    if !movie_genres.contains(&number) {
                        movie_genres.push(number);
                    }
                }
                let rating = document.get_first(fields.rating).and_then(|v| v.as_f64());
                let votes = document.get_first(fields.votes).and_then(|v| v.as_i64());
                loaded.push(Loaded {
                    id,
                    entry: MovieEntry {
                        title: text(fields.title).unwrap_or_default(),
                        release_year: document
                            .get_first(fields.year)
                            .and_then(|v| v.as_i64())
                            .and_then(|year| i32::try_from(year).ok()),
                        rating,
                    },
                    genres: movie_genres,
                    popularity: popularity(rating, votes),
                    segment,
                    doc,
                });
            }
        }
        loaded.sort_by_key(|movie| movie.id);
        loaded.dedup_by(|later, earlier| later.id == earlier.id);
        let mut table = Self {
            documents: searcher
                .segment_readers()
                .iter()
                .map(|reader| vec![NO_MOVIE; reader.max_doc() as usize])
                .collect(),
            searcher,
            ids: Vec::with_capacity(loaded.len()),
            popularity: Vec::with_capacity(loaded.len()),
            genre_ids: Vec::new(),
            genre_starts: vec![0],
            entries: Vec::with_capacity(loaded.len()),
            genres,
        };
        for (dense, movie) in loaded.into_iter().enumerate() {
            table.documents[movie.segment][movie.doc as usize] = dense as u32;
            table.ids.push(movie.id);
            table.popularity.push(movie.popularity);
            table.genre_ids.extend(movie.genres);
            table.genre_starts.push(table.genre_ids.len());
            table.entries.push(movie.entry);
        }
        Ok(table)
    }

    /// Number of live movies.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Genre numbers of a movie, indexes into [`MovieTable::genres`].
    pub(crate) fn genres_of(&self, dense: usize) -> &[u32] {
        &self.genre_ids[self.genre_starts[dense]..self.genre_starts[dense + 1]]
    }

    /// Dense id of a movie.
    pub(crate) fn position(&self, id: &Uuid) -> Option<u32> {
        let position = self.ids.binary_search(id).ok()?;
        u32::try_from(position).ok()
    }

    /// Dense id of a document of `searcher`.
    pub(crate) fn dense(&self, segment: SegmentOrdinal, doc: DocId) -> Option<usize> {
        let dense = *self.documents.get(segment as usize)?.get(doc as usize)?;
        (dense != NO_MOVIE).then_some(dense as usize)
    }

    /// Index of a genre slug in [`MovieTable::genres`].
    pub(crate) fn genre(&self, slug: &str) -> Option<u32> {
        let position = self.genres.iter().position(|genre| genre == slug)?;
        u32::try_from(position).ok()
    }

    /// Every match of `query` with its relevance, by dense id.
    pub(crate) fn matches(&self, query: &dyn Query) -> Result<Vec<(usize, f32)>, Error> {
        let found = self.searcher.search(query, &AllMatches)?;
        Ok(found
            .into_iter()
            .filter_map(|(segment, doc, relevance)| Some((self.dense(segment, doc)?, relevance)))
            .collect())
    }
}
