//! Readiness: every shard primary and replica, Redis and the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use marquee_sharding::{Cluster, HealthState, NodeHealth};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use crate::problem::ComponentStatus;
use crate::settings::Settings;

/// The dependencies a ready instance needs.
pub struct Readiness {
    cluster: Arc<Cluster>,
    redis: Option<redis::Client>,
    redis_problem: Option<String>,
    broker: Arc<BaseProducer>,
    topics: Vec<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

fn status(
    name: impl Into<String>,
    up: bool,
    latency: Duration,
    detail: Option<String>,
) -> ComponentStatus {
    ComponentStatus {
        name: name.into(),
        status: if up { "up" } else { "down" }.to_owned(),
        latency_ms: (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        detail,
        replica_lag_bytes: None,
    }
}

impl Readiness {
    pub fn new(
        settings: &Settings,
        cluster: Arc<Cluster>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        // A malformed Redis URL is a configuration problem, reported by the
        // probe instead of stopping start-up: Redis is optional to serving.
        let (redis, redis_problem) = match redis::Client::open(settings.redis.url.expose_secret()) {
            Ok(client) => (Some(client), None),
            Err(err) => (None, Some(format!("redis.url is invalid: {err}"))),
        };
        let broker: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.broker.bootstrap_servers)
            .set(
                "socket.timeout.ms",
                settings.readiness.timeout_ms.max(100).to_string(),
            )
            .set("log_level", "3")
            .create()?;
        Ok(Self {
            cluster,
            redis,
            redis_problem,
            broker: Arc::new(broker),
            topics: crate::settings::topics(),
            timeout: settings.readiness.timeout(),
        })
    }

    /// Probes everything concurrently; each probe is bounded by the timeout.
    pub async fn check(&self) -> Vec<ComponentStatus> {
        let (nodes, redis, broker) = futures::join!(
            self.cluster.health(self.timeout),
            self.redis(),
            self.broker()
        );
        let mut report: Vec<ComponentStatus> = nodes.into_iter().map(node_status).collect();
        report.push(redis);
        report.push(broker);
        report
    }

    async fn redis(&self) -> ComponentStatus {
        let started = Instant::now();
        let Some(client) = &self.redis else {
            return status(
                "redis",
                false,
                started.elapsed(),
                self.redis_problem.clone(),
            );
        };
        let ping = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_)) => status("redis", true, started.elapsed(), None),
            Ok(Err(err)) => status("redis", false, started.elapsed(), Some(err.to_string())),
            Err(_) => status(
                "redis",
                false,
                started.elapsed(),
                Some(format!("no answer within {:?}", self.timeout)),
            ),
        }
    }

    async fn broker(&self) -> ComponentStatus {
        let started = Instant::now();
        let (producer, timeout) = (Arc::clone(&self.broker), self.timeout);
        // librdkafka's metadata call blocks its thread.
        let metadata =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
                .await;
        let outcome = match metadata {
            Ok(Ok(metadata)) => {
                let missing: Vec<&str> =
                    self.topics
                        .iter()
                        .filter(|wanted| {
                            !metadata.topics().iter().any(|topic| {
                                topic.name() == wanted.as_str() && topic.error().is_none()
                            })
                        })
                        .map(String::as_str)
                        .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("topics missing: {}", missing.join(", ")))
                }
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        status("broker", outcome.is_ok(), started.elapsed(), outcome.err())
    }
}

fn node_status(node: NodeHealth) -> ComponentStatus {
    let up = node.state == HealthState::Up;
    let mut report = status(node.component, up, node.latency, node.detail);
    report.replica_lag_bytes = node.replica_lag_bytes;
    report
}
