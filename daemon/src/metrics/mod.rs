//! Prometheus metrics: counters moat keeps itself (`Metrics`, fed by the
//! main loop) and the kernel's counters, read at scrape time (`render`).

pub mod serve;

use crate::{events::Event, run::Daemon};

/// What the main loop counts between scrapes.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Every decoded classifier event.
    pub fn on_event(&mut self, _e: &Event) {}

    /// A config put into force (`result`: "ok" or "failed"), and how long it took.
    pub fn observe_apply(&mut self, _result: &'static str, _seconds: f64) {}

    /// A reload asked for by SIGHUP or the API (`result`: "ok", "invalid" or "failed").
    pub fn observe_reload(&mut self, _result: &'static str) {}
}

/// The text exposition of every metric, read now.
pub fn render(_d: &Daemon) -> String {
    String::new()
}
