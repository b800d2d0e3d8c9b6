//! Prometheus metrics: counters moat keeps itself (`Metrics`, fed by the
//! main loop) and the kernel's counters, read at scrape time (`render`).
//! Names and labels are listed in docs/metrics.md.

mod activity;
mod classifier;
mod device;
mod gateway;
mod labels;
mod mqtt;
mod scrape;
pub mod serve;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};
use tracing::{error, warn};

use crate::{clock::unix_secs as now, events::Event, kernel::KernelError, run::Daemon};
use scrape::Scrape;

/// Results `observe_apply` is called with.
const APPLY_RESULTS: [&str; 2] = ["ok", "failed"];
/// Results `observe_reload` is called with.
const RELOAD_RESULTS: [&str; 3] = ["ok", "invalid", "failed"];
/// Apply durations, seconds: one device's change should take ≤ 10 ms and a
/// full apply of 1,000 devices ≤ 200 ms, so the buckets are finest there.
const APPLY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0];

/// A part of a scrape that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// The metrics whose values exist only here (they count calls).
#[derive(Debug)]
struct Kept {
    registry: Registry,
    applies: IntCounterVec,
    apply_seconds: Histogram,
    reloads: IntCounterVec,
}

impl Kept {
    fn new() -> prometheus::Result<Self> {
        let applies = IntCounterVec::new(
            Opts::new(
                "moat_policy_applies_total",
                "Configs put into force (reloads, local MUD files, device decisions), by result (ok, failed: \
                 the previous config stays).",
            ),
            &["result"],
        )?;
        let apply_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "moat_policy_apply_duration_seconds",
                "Time to put a config into force (eBPF maps and the nft transaction), successful or not.",
            )
            .buckets(APPLY_BUCKETS.to_vec()),
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "moat_config_reloads_total",
                "Config reloads (SIGHUP or the API), by result: ok, invalid (the file did not validate), failed \
                 (it could not be applied).",
            ),
            &["result"],
        )?;
        // Every result from the start: a rate over a series that appears
        // only at its first event misses that event.
        for r in APPLY_RESULTS {
            applies.get_metric_with_label_values(&[r])?;
        }
        for r in RELOAD_RESULTS {
            reloads.get_metric_with_label_values(&[r])?;
        }
        let registry = Registry::new();
        registry.register(Box::new(applies.clone()))?;
        registry.register(Box::new(apply_seconds.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Kept { registry, applies, apply_seconds, reloads })
    }
}

/// What the main loop counts between scrapes.
#[derive(Debug)]
pub struct Metrics {
    /// `None` only if the metric definitions were rejected (a bug, logged).
    kept: Option<Kept>,
    activity: activity::Activity,
    kernel_release: String,
    started: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let kept = Kept::new().map_err(|e| error!(error = %e, "metric definitions rejected")).ok();
        // Read once: the kernel does not change under a running process.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let release = if release.trim().is_empty() { "unknown".to_string() } else { release.trim().to_string() };
        Metrics { kept, activity: activity::Activity::default(), kernel_release: release, started: now() }
    }

    /// Every decoded classifier event.
    pub fn on_event(&mut self, e: &Event) {
        self.activity.on_event(e, now());
    }

    /// A config put into force (`result`: "ok" or "failed"), and how long it took.
    pub fn observe_apply(&mut self, result: &'static str, seconds: f64) {
        let Some(k) = &self.kept else { return };
        if let Ok(c) = k.applies.get_metric_with_label_values(&[result]) {
            c.inc();
        }
        k.apply_seconds.observe(seconds);
    }

    /// A reload asked for by SIGHUP or the API (`result`: "ok", "invalid" or "failed").
    pub fn observe_reload(&mut self, result: &'static str) {
        let Some(k) = &self.kept else { return };
        if let Ok(c) = k.reloads.get_metric_with_label_values(&[result]) {
            c.inc();
        }
    }

    pub(crate) fn kernel_release(&self) -> &str {
        &self.kernel_release
    }

    pub(crate) fn started(&self) -> i64 {
        self.started
    }

    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.kept.as_ref().map(|k| k.registry.gather()).unwrap_or_default()
    }
}

/// The text exposition of every metric, read now.
pub fn render(d: &Daemon) -> String {
    let s = Scrape::new();
    let errors = fill(&s, d);
    let note = s.gauge(
        "moat_metrics_scrape_errors",
        "Parts of this scrape that could not be read (each is logged at warn); 0 when the scrape is complete.",
        scrape::int(errors),
    );
    if let Err(e) = note {
        warn!(error = %e, "metrics: error gauge");
    }
    let mut families = s.registry().gather();
    families.extend(d.metrics.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut text) {
        warn!(error = %e, "metrics: encoding failed");
    }
    text
}

/// Every scrape-time part; one that fails is logged and the others still
/// report. Returns how many failed.
fn fill(s: &Scrape, d: &Daemon) -> usize {
    let labels = labels::Labels::of(&d.cfg);
    let sightings = match &d.inventory {
        Ok(inv) => device::Sightings::of(&d.cfg, inv.records()),
        Err(_) => device::Sightings::default(),
    };
    let devices = || -> Result<(), Error> {
        let rows = device::rows(&d.cfg, &labels, &d.metrics.activity, &sightings, |id| d.kernel.device_stats(id))?;
        Ok(device::export(s, &rows)?)
    };
    let parts: [(&str, Result<(), Error>); 8] = [
        ("devices", devices()),
        ("device states", gateway::export_devices(s, d, &labels, &sightings).map_err(Error::from)),
        ("classifier counters", classifier::export_counters(s, &d.kernel)),
        ("classifier events", classifier::export_events(s, &d.events).map_err(Error::from)),
        ("classifier maps", classifier::export_maps(s, &d.kernel, &d.cfg)),
        ("learned", gateway::export_learned(s, d).map_err(Error::from)),
        ("process", gateway::export_process(s, d).map_err(Error::from)),
        ("mqtt", mqtt::export(s, &d.mqtt).map_err(Error::from)),
    ];
    let mut failed = 0;
    for (part, result) in parts {
        if let Err(e) = result {
            warn!(part, error = %e, "metrics: part of the scrape failed");
            failed += 1;
        }
    }
    failed
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn kept_metrics_start_at_zero_for_every_result_and_count_calls() {
        let mut m = Metrics::new();
        m.observe_apply("ok", 0.004);
        m.observe_apply("failed", 0.3);
        m.observe_reload("ok");
        let text = TextEncoder::new().encode_to_string(&m.gather()).unwrap_or_else(|e| panic!("{e}"));
        for line in [
            r#"moat_policy_applies_total{result="ok"} 1"#,
            r#"moat_policy_applies_total{result="failed"} 1"#,
            r#"moat_config_reloads_total{result="ok"} 1"#,
            r#"moat_config_reloads_total{result="invalid"} 0"#,
            r#"moat_config_reloads_total{result="failed"} 0"#,
            r#"moat_policy_apply_duration_seconds_bucket{le="0.005"} 1"#,
            r#"moat_policy_apply_duration_seconds_bucket{le="0.5"} 2"#,
            "moat_policy_apply_duration_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!m.kernel_release().is_empty());
    }
}
