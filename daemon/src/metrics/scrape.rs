//! One scrape's worth of metrics: a registry made for the scrape and filled
//! with values read now. Most of what moat exports is a counter kept
//! elsewhere (the kernel's maps, the learner, the MQTT service), so each
//! scrape copies the current totals into fresh families instead of keeping a
//! second copy in sync.

use prometheus::{core::Collector, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// A registry for one scrape; families made through it are registered in it.
#[derive(Debug, Default)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    pub fn new() -> Self {
        Scrape::default()
    }

    fn add<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A counter family whose samples are set with [`set_counter`].
    pub fn counters(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    /// An integer gauge family.
    pub fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A floating-point gauge family (ratios).
    pub fn ratios(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A label-less counter set to `value`.
    pub fn counter(&self, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
        set_counter(&self.counters(name, help, &[])?, &[], value)
    }

    /// A label-less gauge set to `value`.
    pub fn gauge(&self, name: &str, help: &str, value: i64) -> prometheus::Result<()> {
        set_gauge(&self.gauges(name, help, &[])?, &[], value)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Sets a counter sample to a total read elsewhere (a fresh sample starts at
/// 0, so adding the total sets it). Adding lets two sources with the same
/// labels sum up, which is how folded devices end up under `other`.
pub fn set_counter(family: &IntCounterVec, labels: &[&str], value: u64) -> prometheus::Result<()> {
    family.get_metric_with_label_values(labels)?.inc_by(value);
    Ok(())
}

/// Sets an integer gauge sample.
pub fn set_gauge(family: &IntGaugeVec, labels: &[&str], value: i64) -> prometheus::Result<()> {
    family.get_metric_with_label_values(labels)?.set(value);
    Ok(())
}

/// A count as a gauge value (saturating: counts never get near `i64::MAX`).
pub fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
