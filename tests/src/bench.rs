//! Benchmark reports in the shape DESIGN.md fixes: a human table on stdout
//! and `target/bench/NAME.json` with results, baseline, ratio, target, met.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

/// One benchmark's numbers.
#[derive(Debug, Default)]
pub struct Report {
    pub name: String,
    pub unit: BTreeMap<String, String>,
    pub results: BTreeMap<String, f64>,
    pub baseline: BTreeMap<String, f64>,
    pub ratio: BTreeMap<String, f64>,
    pub target: BTreeMap<String, f64>,
    pub met: BTreeMap<String, bool>,
}

impl Report {
    pub fn new(name: &str) -> Self {
        Report { name: name.to_string(), ..Default::default() }
    }

    /// A target on a ratio (or derived number) that must not exceed `max`.
    pub fn at_most(&mut self, key: &str, value: f64, max: f64, unit: &str) {
        self.ratio.insert(key.to_string(), value);
        self.target.insert(key.to_string(), max);
        self.met.insert(key.to_string(), value <= max);
        self.unit.insert(key.to_string(), unit.to_string());
    }

    /// A target on a ratio that must reach at least `min`.
    pub fn at_least(&mut self, key: &str, value: f64, min: f64) {
        self.ratio.insert(key.to_string(), value);
        self.target.insert(key.to_string(), min);
        self.met.insert(key.to_string(), value >= min);
        self.unit.insert(key.to_string(), "ratio (at least the target)".to_string());
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "unit": self.unit, "results": self.results, "baseline": self.baseline,
            "ratio": self.ratio, "target": self.target, "met": self.met,
        })
    }

    /// Writes target/bench/NAME.json (next to the workspace's target dir).
    pub fn write(&self) -> Result<PathBuf> {
        let dir = target_dir()?.join("bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.name));
        std::fs::write(&path, serde_json::to_string_pretty(&self.to_json())?)?;
        Ok(path)
    }
}

fn target_dir() -> Result<PathBuf> {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(t));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/<bin>
    exe.ancestors().nth(2).map(PathBuf::from).context("cannot find the target directory")
}

/// Median of a non-empty sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}
