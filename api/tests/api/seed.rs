//! The demo catalogue loader on a fresh cluster, as a newcomer's first
//! `make run` meets it.

use crate::helpers::{connect, TestSchema};

/// Fresh schemas seeded one after another: on an empty node the seeder's
/// concurrent batches are the first to write each shared seat layout, which
/// is where batches that wrote layouts in their own order deadlocked.
const FRESH_SEEDS: usize = 8;

#[tokio::test]
async fn seeding_a_fresh_empty_schema_with_concurrent_batches_never_fails() {
    let scale = marquee::seed::Scale {
        movies: Some(300),
        cities: 3,
        theaters_per_city: 2,
        screens_per_theater: 5,
        days: 2,
        now_playing: 40,
        // Small batches, so that many run two at a time and each shares
        // layouts with the one beside it.
        showtime_batch: 25,
    };
    for round in 0..FRESH_SEEDS {
        let schema = TestSchema::new();
        let storage = schema.storage();
        storage.migrate().await.expect("migrations apply");
        let settings = &schema.settings;
        let seeded = marquee::seed::run(
            &storage,
            &settings.seed.movies_path,
            &settings.seed.places_path,
            &scale,
            settings.catalog.turnaround_minutes,
        )
        .await
        .unwrap_or_else(|err| panic!("seed {round} of a fresh schema failed: {err}"));
        assert!(
            seeded.showtimes > scale.showtime_batch * 4,
            "only {} showtimes: too few batches to run side by side",
            seeded.showtimes
        );
        let mut written = 0;
        for shard in &settings.database.shards {
            let client = connect(&shard.primary).await.expect("connect");
            let row = client
                .query_one(
                    &format!("select count(*) from {}.showtimes", schema.name),
                    &[],
                )
                .await
                .expect("count");
            written += row.get::<_, i64>(0);
        }
        assert_eq!(
            written,
            i64::try_from(seeded.showtimes).expect("fits"),
            "seed {round} wrote every showtime once"
        );
    }
}
