//! The service's prometheus registry, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use marquee_sharding::PoolStats;

use crate::problem::ComponentStatus;

/// Every metric the API exports; one registry per application instance, so
/// tests running several instances in one process do not share counts.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
    pool_connections: IntGaugeVec,
    component_up: IntGaugeVec,
    replica_lag: IntGaugeVec,
    search_documents: IntGauge,
    pub cache_lookups: IntCounterVec,
    pub index_events: IntCounterVec,
    pub index_delay: prometheus::Histogram,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    result.unwrap_or_else(|err| unreachable!("metric definitions are static and valid: {err}"))
}

impl Metrics {
    /// For other crates to register their metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("marquee".to_owned()), None)
            .unwrap_or_else(|err| unreachable!("a static prefix is valid: {err}"));
        let requests = must(IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        ));
        let latency = must(HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template, method and status",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method", "status"],
        ));
        let in_flight = must(IntGauge::new(
            "http_requests_in_flight",
            "HTTP requests being served",
        ));
        let pool_connections = must(IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections per server by state",
            ),
            &["server", "state"],
        ));
        let component_up = must(IntGaugeVec::new(
            Opts::new(
                "component_up",
                "Whether each dependency answered its readiness probe at this scrape (1) or not (0): \
                 catalog, shard primaries and replicas, redis, broker",
            ),
            &["component"],
        ));
        let replica_lag = must(IntGaugeVec::new(
            Opts::new(
                "replica_lag_bytes",
                "WAL bytes each replica has yet to replay, at this scrape",
            ),
            &["component"],
        ));
        let search_documents = must(IntGauge::new(
            "search_documents",
            "Documents in the search index",
        ));
        let cache_lookups = must(IntCounterVec::new(
            Opts::new(
                "cache_lookups_total",
                "Cache lookups by entry kind and outcome: local_hit (this instance), hit (Redis), miss",
            ),
            &["kind", "outcome"],
        ));
        let index_events = must(IntCounterVec::new(
            Opts::new(
                "search_index_events_total",
                "Catalog changes applied to this instance's search index, by aggregate; \
                 an item changed several times in one batch counts once",
            ),
            &["aggregate"],
        ));
        let index_delay = must(prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "search_index_delay_seconds",
                "From a catalog change's commit to this instance's index and cache having it, \
                 per batch (its oldest change)",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Version and commit of the running binary; always 1",
            ),
            &["version", "commit"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("MARQUEE_GIT_COMMIT")])
            .set(1);

        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
            Box::new(pool_connections.clone()),
            Box::new(component_up.clone()),
            Box::new(replica_lag.clone()),
            Box::new(search_documents.clone()),
            Box::new(cache_lookups.clone()),
            Box::new(index_events.clone()),
            Box::new(index_delay.clone()),
            Box::new(build_info),
        ] {
            must(registry.register(collector));
        }
        Self {
            registry,
            requests,
            latency,
            in_flight,
            pool_connections,
            component_up,
            replica_lag,
            search_documents,
            cache_lookups,
            index_events,
            index_delay,
        }
    }

    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    pub fn request_finished(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.in_flight.dec();
        let labels = [route, method, status_label(status)];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The text exposition, with pool, dependency and index gauges read at
    /// scrape time.
    pub fn render(
        &self,
        pools: &[PoolStats],
        components: &[ComponentStatus],
        search_documents: u64,
    ) -> String {
        for component in components {
            self.component_up
                .with_label_values(&[component.name.as_str()])
                .set(i64::from(component.status == "up"));
            if let Some(lag) = component.replica_lag_bytes {
                self.replica_lag
                    .with_label_values(&[component.name.as_str()])
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
        for pool in pools {
            for (state, value) in [
                ("size", pool.size),
                ("available", pool.available),
                ("waiting", pool.waiting),
                ("max", pool.max_size),
            ] {
                self.pool_connections
                    .with_label_values(&[pool.component.as_str(), state])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        self.search_documents
            .set(i64::try_from(search_documents).unwrap_or(i64::MAX));
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "metrics could not be encoded");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Status codes as static labels, so the hot path allocates nothing.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
