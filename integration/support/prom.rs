//! `/metrics` parsed as Prometheus text (`prometheus-parse`), and the
//! samples looked up by name and labels.

use prometheus_parse::{HistogramCount, Scrape, Value};

pub struct Exposition(pub Scrape);

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Exposition(Scrape::parse(lines).expect("Prometheus text"))
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counter or gauge samples of `name` whose labels
    /// include `labels`; `None` when there is no such sample.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.matching(name, labels) {
            let v = match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a counter or gauge: {other:?}"),
            };
            *found.get_or_insert(0.0) += v;
        }
        found
    }

    /// Like [`get`](Self::get), the sample required.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// The buckets of the one histogram of `name` with `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<HistogramCount> {
        let mut found = self.matching(name, labels);
        let h = found
            .next()
            .unwrap_or_else(|| panic!("no histogram {name} {labels:?}"));
        assert!(
            found.next().is_none(),
            "several histograms {name} {labels:?}"
        );
        match &h.value {
            Value::Histogram(b) => b.clone(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Observations of a histogram at or below `le` seconds.
    pub fn bucket(&self, name: &str, labels: &[(&str, &str)], le: f64) -> f64 {
        self.histogram(name, labels)
            .iter()
            .find(|b| b.less_than == le)
            .unwrap_or_else(|| panic!("{name} has no bucket le={le}"))
            .count
    }

    /// Whether a family is declared with a help text.
    pub fn has_help(&self, name: &str) -> bool {
        self.0.docs.get(name).is_some_and(|d| !d.is_empty())
    }
}

/// `server`'s metrics, parsed.
pub fn scrape(server: &predictor::server::Server) -> Exposition {
    Exposition::parse(&server.metrics().render())
}
