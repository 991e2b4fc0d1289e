//! The server's seat-claim counters, read from `/metrics` before and after
//! a run: what they grew by is what the run made the server do.

use std::collections::BTreeMap;

/// Claim attempts that met contention, by locking mode.
pub const CONFLICTS: &str = "marquee_seat_claim_conflicts_total";
/// Claims (holds) by locking mode and outcome.
pub const CLAIMS: &str = "marquee_seat_claims_total";
/// Showtimes `auto` switched, by the mode switched to.
pub const SWITCHES: &str = "marquee_seat_locking_switches_total";

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One reading of a Prometheus text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Reads the text format, skipping comments and any line it cannot
    /// read rather than failing the run over one odd metric.
    pub fn parse(text: &str) -> Self {
        Self {
            samples: text.lines().filter_map(sample).collect(),
        }
    }

    /// The sum of `name`'s samples for each value of `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.name == name) {
            let key = sample.labels.get(label).cloned().unwrap_or_default();
            *sums.entry(key).or_insert(0.0) += sample.value;
        }
        sums
    }
}

/// How much each counter grew between two readings. A counter is exported
/// only from its first increment, so one missing before counts from zero.
pub fn growth(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(key, value)| {
            let grown = value - before.get(key).copied().unwrap_or(0.0);
            (key.clone(), grown.max(0.0).round() as u64)
        })
        .filter(|(_, grown)| *grown > 0)
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let labels = labels(line.get(open + 1..close)?)?;
            (&line[..open], labels, &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"`, with the format's escapes (`\"`, `\\`, `\n`) in values.
fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.is_empty() {
            return Some(labels);
        }
        let (name, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = &after[end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP marquee_seat_claims_total Seat claims (holds) by locking mode and outcome
# TYPE marquee_seat_claims_total counter
marquee_seat_claims_total{mode="optimistic",outcome="held"} 2
marquee_seat_claims_total{mode="optimistic",outcome="refused"} 1
marquee_seat_claims_total{mode="pessimistic",outcome="held"} 7
marquee_seat_claim_conflicts_total{mode="optimistic"} 5
marquee_process_up 1
marquee_http_requests_total{route="/v1/x",note="a \"quoted\", odd}"} 3
"#;

    #[test]
    fn samples_are_summed_by_one_label() {
        let scrape = Scrape::parse(TEXT);
        let by_mode = scrape.by_label(CLAIMS, "mode");
        assert_eq!(by_mode.get("optimistic"), Some(&3.0));
        assert_eq!(by_mode.get("pessimistic"), Some(&7.0));
        assert_eq!(
            scrape.by_label(CONFLICTS, "mode").get("optimistic"),
            Some(&5.0)
        );
    }

    #[test]
    fn escaped_quotes_and_braces_in_label_values_are_read() {
        let scrape = Scrape::parse(TEXT);
        let notes = scrape.by_label("marquee_http_requests_total", "note");
        assert_eq!(notes.get("a \"quoted\", odd}"), Some(&3.0));
        assert_eq!(
            scrape.by_label("marquee_process_up", "mode").get(""),
            Some(&1.0)
        );
    }

    #[test]
    fn a_metric_the_server_never_exported_sums_to_nothing() {
        assert!(Scrape::parse(TEXT).by_label(SWITCHES, "to").is_empty());
        assert!(Scrape::parse("not a metric line\n{}\n").samples.is_empty());
    }

    #[test]
    fn counters_first_seen_after_the_run_grow_from_zero() {
        let before = Scrape::parse(TEXT).by_label(CLAIMS, "mode");
        let after = Scrape::parse(
            "marquee_seat_claims_total{mode=\"optimistic\",outcome=\"held\"} 12\n\
             marquee_seat_claims_total{mode=\"pessimistic\",outcome=\"held\"} 7\n\
             marquee_seat_claims_total{mode=\"other\",outcome=\"held\"} 4\n",
        )
        .by_label(CLAIMS, "mode");
        let grown = growth(&before, &after);
        assert_eq!(grown.get("optimistic"), Some(&9));
        assert_eq!(grown.get("other"), Some(&4));
        assert_eq!(
            grown.get("pessimistic"),
            None,
            "unchanged counters are left out"
        );
    }
}
