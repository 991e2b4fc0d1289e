//! Movie rows. A movie lives on the shard that its id hashes to.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::outbox;

/// A movie as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub id: Uuid,
    pub title: String,
    pub genres: Vec<String>,
    pub director: Option<String>,
    pub synopsis: Option<String>,
    pub cast: Vec<String>,
    pub runtime_minutes: Option<i32>,
    pub certificate: Option<String>,
    pub release_date: Option<NaiveDate>,
    pub poster_url: Option<String>,
    pub imdb_rating: Option<f64>,
    pub imdb_votes: Option<i32>,
    pub demo_generated: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A movie to write; the id is chosen by the caller so that it can be routed
/// before the row exists.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMovie {
    pub id: Uuid,
    pub title: String,
    pub genres: Vec<String>,
    pub director: Option<String>,
    pub synopsis: Option<String>,
    pub cast: Vec<String>,
    pub runtime_minutes: Option<i32>,
    pub certificate: Option<String>,
    pub release_date: Option<NaiveDate>,
    pub poster_url: Option<String>,
    pub imdb_rating: Option<f64>,
    pub imdb_votes: Option<i32>,
    pub demo_generated: bool,
}

impl From<&Movie> for NewMovie {
    fn from(movie: &Movie) -> Self {
        Self {
            id: movie.id,
            title: movie.title.clone(),
            genres: movie.genres.clone(),
            director: movie.director.clone(),
            synopsis: movie.synopsis.clone(),
            cast: movie.cast.clone(),
            runtime_minutes: movie.runtime_minutes,
            certificate: movie.certificate.clone(),
            release_date: movie.release_date,
            poster_url: movie.poster_url.clone(),
            imdb_rating: movie.imdb_rating,
            imdb_votes: movie.imdb_votes,
            demo_generated: movie.demo_generated,
        }
    }
}

const COLUMNS: &str = "id, title, genres, director, synopsis, cast_members, runtime_minutes, \
     certificate, release_date, poster_url, imdb_rating::float8, imdb_votes, demo_generated, \
     version, created_at, updated_at";

fn from_row(row: &Row) -> Movie {
    Movie {
        id: row.get(0),
        title: row.get(1),
        genres: row.get(2),
        director: row.get(3),
        synopsis: row.get(4),
        cast: row.get(5),
        runtime_minutes: row.get(6),
        certificate: row.get(7),
        release_date: row.get(8),
        poster_url: row.get(9),
        imdb_rating: row.get(10),
        imdb_votes: row.get(11),
        demo_generated: row.get(12),
        version: row.get(13),
        created_at: row.get(14),
        updated_at: row.get(15),
    }
}

/// Inserts a movie, or rewrites it when the id exists, so that loading the
/// same data twice leaves one row per movie.
pub async fn upsert(
    client: &impl GenericClient,
    movie: &NewMovie,
) -> Result<Movie, tokio_postgres::Error> {
    let stored = write(client, movie).await?;
    let event = if stored.version == 1 {
        "movie.created"
    } else {
        "movie.changed"
    };
    outbox::record(client, "movie", movie.id, event).await?;
    Ok(stored)
}

/// The one statement that writes a movie row: inserted at version 1, or
/// rewritten with its version bumped.
async fn write(
    client: &impl GenericClient,
    movie: &NewMovie,
) -> Result<Movie, tokio_postgres::Error> {
    let sql = format!(
        "insert into movies (id, title, genres, director, synopsis, cast_members, runtime_minutes, \
             certificate, release_date, poster_url, imdb_rating, imdb_votes, demo_generated) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::float8::numeric(3, 1), $12, $13) \
         on conflict (id) do update set \
             title = excluded.title, genres = excluded.genres, director = excluded.director, \
             synopsis = excluded.synopsis, cast_members = excluded.cast_members, \
             runtime_minutes = excluded.runtime_minutes, certificate = excluded.certificate, \
             release_date = excluded.release_date, poster_url = excluded.poster_url, \
             imdb_rating = excluded.imdb_rating, imdb_votes = excluded.imdb_votes, \
             demo_generated = excluded.demo_generated, \
             version = movies.version + 1, updated_at = now() \
         returning {COLUMNS}"
    );
    let statement = client.prepare_cached(&sql).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &movie.id,
                &movie.title,
                &movie.genres,
                &movie.director,
                &movie.synopsis,
                &movie.cast,
                &movie.runtime_minutes,
                &movie.certificate,
                &movie.release_date,
                &movie.poster_url,
                &movie.imdb_rating,
                &movie.imdb_votes,
                &movie.demo_generated,
            ],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Movie>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!("select {COLUMNS} from movies where id = $1"))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(from_row))
}

/// Every movie on one shard, for building the search index.
pub async fn all(client: &impl GenericClient) -> Result<Vec<Movie>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!("select {COLUMNS} from movies order by id"))
        .await?;
    Ok(client
        .query(&statement, &[])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

pub async fn delete(client: &impl GenericClient, id: Uuid) -> Result<u64, tokio_postgres::Error> {
    client
        .execute("delete from movies where id = $1", &[&id])
        .await
}

/// The node a fenced movie moved to, if this node has fenced it.
pub async fn fenced(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<String>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached("select moved_to from movie_fences where movie_id = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| row.get(0)))
}

/// Upserts unless the movie is fenced on this node, in which case nothing is
/// written and the fence's target is returned. The movie's row is locked
/// first, so a fence committed by a concurrent move is always seen: either
/// this write commits before the fence (and the move copies it) or it sees
/// the fence and writes nothing.
pub async fn upsert_unless_fenced(
    transaction: &deadpool_postgres::Transaction<'_>,
    movie: &NewMovie,
) -> Result<Result<Movie, String>, tokio_postgres::Error> {
    let lock = transaction
        .prepare_cached("select 1 from movies where id = $1 for update")
        .await?;
    transaction.query_opt(&lock, &[&movie.id]).await?;
    if let Some(moved_to) = fenced(transaction, movie.id).await? {
        return Ok(Err(moved_to));
    }
    upsert(transaction, movie).await.map(Ok)
}

/// Fences a movie on this node: locks its row, then records the fence, so
/// no write for it can commit here afterwards.
pub async fn fence(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    moved_to: &str,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .execute("select 1 from movies where id = $1 for update", &[&id])
        .await?;
    transaction
        .execute(
            "insert into movie_fences (movie_id, moved_to) values ($1, $2) \
             on conflict (movie_id) do update set moved_to = excluded.moved_to, fenced_at = now()",
            &[&id, &moved_to],
        )
        .await?;
    Ok(())
}

pub async fn unfence(client: &impl GenericClient, id: Uuid) -> Result<u64, tokio_postgres::Error> {
    client
        .execute("delete from movie_fences where movie_id = $1", &[&id])
        .await
}

/// Locks a movie's row against a concurrent move's fence, shared (writes to
/// its showtimes) or exclusive (changes to the movie itself). `Ok(false)`
/// when the movie does not exist here; `Err` with the fence's target when
/// it moved away.
pub async fn lock_unfenced(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    exclusive: bool,
) -> Result<Result<bool, String>, tokio_postgres::Error> {
    let sql = if exclusive {
        "select 1 from movies where id = $1 for update"
    } else {
        "select 1 from movies where id = $1 for share"
    };
    let (lock, fence) = futures::try_join!(
        transaction.prepare_cached(sql),
        transaction.prepare_cached("select moved_to from movie_fences where movie_id = $1"),
    )?;
    // Sent together and run in order: the fence is read once the lock is
    // held, so a fence committed by a concurrent move is always seen.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let (exists, fence) = futures::try_join!(
        transaction.query_opt(&lock, &params),
        transaction.query_opt(&fence, &params),
    )?;
    if let Some(fence) = fence {
        return Ok(Err(fence.get(0)));
    }
    Ok(Ok(exists.is_some()))
}

/// One node's share of a movie listing.
#[derive(Debug, Clone, Default)]
pub struct PageQuery<'a> {
    pub genre: Option<&'a str>,
    /// A `like` pattern over the lower-cased title.
    pub title_like: Option<&'a str>,
    pub released_from: Option<NaiveDate>,
    pub released_to: Option<NaiveDate>,
    pub after_title: Option<&'a str>,
    pub after_id: Option<Uuid>,
    pub limit: i64,
}

/// Movies after a keyset position in (lower-cased title, id) order, each
/// with its sort key.
pub async fn page(
    client: &impl GenericClient,
    query: &PageQuery<'_>,
) -> Result<Vec<(String, Movie)>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {COLUMNS}, lower(title) collate \"C\" as key from movies \
             where ($1::text is null or $1 = any(genres)) \
               and ($2::text is null or lower(title) like $2) \
               and ($3::date is null or release_date >= $3) \
               and ($4::date is null or release_date <= $4) \
               and ($5::text is null or (lower(title) collate \"C\", id) > ($5 collate \"C\", $6::uuid)) \
             order by lower(title) collate \"C\", id limit $7"
        ))
        .await?;
    Ok(client
        .query(
            &statement,
            &[
                &query.genre,
                &query.title_like,
                &query.released_from,
                &query.released_to,
                &query.after_title,
                &query.after_id,
                &query.limit,
            ],
        )
        .await?
        .iter()
        .map(|row| (row.get(16), from_row(row)))
        .collect())
}
