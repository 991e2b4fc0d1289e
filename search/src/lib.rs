//! The embedded search index each API instance holds over the catalogue.
//!
//! The index lives in memory and is rebuilt from the shards at start-up, so an
//! instance never serves results from a stale file. Every call here blocks on
//! tantivy; async callers run it in `spawn_blocking`.

use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::schema::{Field, NumericOptions, Schema, Value, STORED, STRING, TEXT};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

/// Failures of the search index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("search index failure: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index writer is poisoned by an earlier panic")]
    Poisoned,
}

/// What the index knows of a movie.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieDoc {
    pub id: Uuid,
    pub title: String,
    pub director: Option<String>,
    pub genres: Vec<String>,
    pub release_year: Option<i32>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    pub title: String,
    pub release_year: Option<i32>,
    pub score: f32,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    director: Field,
    genre: Field,
    year: Field,
}

/// An in-memory movie index with one writer and a shared reader.
pub struct MovieIndex {
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    analyzer: TextAnalyzer,
}

impl std::fmt::Debug for MovieIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovieIndex")
            .field("documents", &self.len())
            .finish()
    }
}

fn boosted(query: impl Query, boost: f32) -> (Occur, Box<dyn Query>) {
    (
        Occur::Should,
        Box::new(BoostQuery::new(Box::new(query), boost)),
    )
}

/// A writer arena of 15 MB is tantivy's minimum and ample for the catalogue.
const WRITER_ARENA_BYTES: usize = 15_000_000;

impl MovieIndex {
    pub fn new() -> Result<Self, Error> {
        let mut builder = Schema::builder();
        let fields = Fields {
            id: builder.add_text_field("id", STRING | STORED),
            title: builder.add_text_field("title", TEXT | STORED),
            director: builder.add_text_field("director", TEXT),
            genre: builder.add_text_field("genre", STRING),
            year: builder
                .add_i64_field("year", NumericOptions::default().set_stored().set_indexed()),
        };
        let index = Index::create_in_ram(builder.build());
        let writer = index.writer_with_num_threads(1, WRITER_ARENA_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let analyzer = index.tokenizer_for_field(fields.title)?;
        Ok(Self {
            fields,
            reader,
            writer: Mutex::new(writer),
            analyzer,
        })
    }

    fn document(&self, movie: &MovieDoc) -> TantivyDocument {
        let f = self.fields;
        let mut document = doc!(f.id => movie.id.to_string(), f.title => movie.title.as_str());
        if let Some(director) = &movie.director {
            document.add_text(f.director, director);
        }
        for genre in &movie.genres {
            document.add_text(f.genre, genre);
        }
        if let Some(year) = movie.release_year {
            document.add_i64(f.year, i64::from(year));
        }
        document
    }

    /// Adds or replaces movies, then makes them visible to searches.
    pub fn upsert(&self, movies: &[MovieDoc]) -> Result<(), Error> {
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        for movie in movies {
            writer.delete_term(Term::from_field_text(self.fields.id, &movie.id.to_string()));
            writer.add_document(self.document(movie))?;
        }
        writer.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Every word must match the title or the director. A word matches best
    /// exactly, then as the start of a word (autocomplete), then with one
    /// typo, so "goodf" ranks "Goodfellas" above "The Godfather".
    fn query(&self, text: &str) -> Box<dyn Query> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut words = Vec::new();
        while stream.advance() {
            words.push(stream.token().text.clone());
        }
        let clauses = words
            .iter()
            .map(|word| {
                let title = Term::from_field_text(self.fields.title, word);
                let director = Term::from_field_text(self.fields.director, word);
                let alternatives: Vec<(Occur, Box<dyn Query>)> = vec![
                    boosted(
                        TermQuery::new(title.clone(), IndexRecordOption::WithFreqs),
                        8.0,
                    ),
                    boosted(FuzzyTermQuery::new_prefix(title.clone(), 0, true), 4.0),
                    boosted(FuzzyTermQuery::new_prefix(title, 1, true), 1.0),
                    boosted(
                        TermQuery::new(director.clone(), IndexRecordOption::WithFreqs),
                        4.0,
                    ),
                    boosted(FuzzyTermQuery::new(director, 1, true), 1.0),
                ];
                (
                    Occur::Must,
                    Box::new(BooleanQuery::new(alternatives)) as Box<dyn Query>,
                )
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }

    /// Movies matching free text, best first. Punctuation is ignored, so no
    /// input is a syntax error.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, Error> {
        let query = self.query(text);
        let searcher = self.reader.searcher();
        let top = searcher.search(&*query, &TopDocs::with_limit(limit.max(1)))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let document: TantivyDocument = searcher.doc(address)?;
            let text_of = |field| {
                document
                    .get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let Ok(id) = Uuid::parse_str(&text_of(self.fields.id)) else {
                continue;
            };
            hits.push(Hit {
                id,
                title: text_of(self.fields.title),
                release_year: document
                    .get_first(self.fields.year)
                    .and_then(|v| v.as_i64())
                    .and_then(|y| i32::try_from(y).ok()),
                score,
            });
        }
        Ok(hits)
    }

    /// Documents visible to searches.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(title: &str, director: &str, year: i32) -> MovieDoc {
        MovieDoc {
            id: Uuid::now_v7(),
            title: title.to_owned(),
            director: Some(director.to_owned()),
            genres: vec!["drama".to_owned()],
            release_year: Some(year),
        }
    }

    fn catalogue() -> (MovieIndex, Vec<MovieDoc>) {
        let index = MovieIndex::new().expect("index");
        let movies = vec![
            movie("The Godfather", "Francis Ford Coppola", 1972),
            movie("Goodfellas", "Martin Scorsese", 1990),
            movie("Heat", "Michael Mann", 1995),
        ];
        index.upsert(&movies).expect("upsert");
        (index, movies)
    }

    #[test]
    fn a_title_with_a_typo_still_finds_the_movie() {
        let (index, movies) = catalogue();
        let hits = index.search("godfathr", 5).expect("search");
        assert_eq!(hits.first().map(|h| h.id), Some(movies[0].id));
    }

    #[test]
    fn a_prefix_finds_the_movie_as_a_person_types() {
        let (index, movies) = catalogue();
        let hits = index.search("goodf", 5).expect("search");
        assert_eq!(hits.first().map(|h| h.id), Some(movies[1].id));
    }

    #[test]
    fn a_director_finds_their_movies() {
        let (index, movies) = catalogue();
        let hits = index.search("scorsese", 5).expect("search");
        assert_eq!(
            hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            vec![movies[1].id]
        );
    }

    #[test]
    fn upserting_a_movie_again_replaces_it() {
        let (index, mut movies) = catalogue();
        movies[2].title = "Heat (Director's Cut)".to_owned();
        index.upsert(&movies[2..]).expect("upsert");
        assert_eq!(index.len(), 3);
        let hits = index.search("heat", 5).expect("search");
        assert_eq!(hits[0].title, "Heat (Director's Cut)");
    }

    #[test]
    fn query_syntax_characters_are_searched_as_words() {
        let (index, _) = catalogue();
        assert!(index.search("\"unbalanced: (quote", 5).is_ok());
    }
}
