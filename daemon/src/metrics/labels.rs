//! The `device` label: which devices get one of their own, and what it says.
//!
//! Every label value is a time series per metric in Prometheus, so the number
//! of device labels is capped (`[metrics] max_labeled_devices`): the devices
//! with the lowest ids (listed first in the config; devices approved at run
//! time come after) keep their own label, the rest are summed under `other`.

use moat_policy::{Config, Device};

/// The label of the unknown-devices slot (id 0).
pub const UNKNOWN: &str = "unknown";
/// The label the devices over the cap are summed under.
pub const OTHER: &str = "other";

/// Configured devices split by the cap.
#[derive(Debug)]
pub struct Labels<'a> {
    /// Devices with their own label, by id, with the label.
    pub labeled: Vec<(&'a Device, String)>,
    /// Devices summed under [`OTHER`], by id.
    pub folded: Vec<&'a Device>,
}

impl<'a> Labels<'a> {
    /// Splits `cfg`'s devices: the first `max_labeled_devices` by id keep a label.
    pub fn of(cfg: &'a Config) -> Self {
        let max = usize::try_from(cfg.metrics.max_labeled_devices).unwrap_or(usize::MAX);
        let mut by_id: Vec<&Device> = cfg.devices.iter().collect();
        by_id.sort_by_key(|d| d.id);
        let folded = by_id.split_off(max.min(by_id.len()));
        Labels { labeled: by_id.into_iter().map(|d| (d, label(d))).collect(), folded }
    }
}

/// A device's label: its name, or its MAC when it has none or when the name
/// is one of the reserved labels (a device called "other" must not be
/// mistaken for the folded rest).
pub fn label(d: &Device) -> String {
    let name = d.name.as_str();
    if name.is_empty() || name == UNKNOWN || name == OTHER {
        d.mac.to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    fn config(max: u32, devices: &[(&str, &str)]) -> Config {
        let mut text =
            format!("[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n\n[metrics]\nmax_labeled_devices = {max}\n");
        text.push_str("\n[policies.open]\nblock = []\n");
        for (mac, name) in devices {
            text.push_str(&format!("\n[[devices]]\nmac = \"{mac}\"\nname = \"{name}\"\npolicy = \"open\"\n"));
        }
        Config::parse(std::path::Path::new("test.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(l: &Labels<'_>) -> (Vec<String>, Vec<String>) {
        (l.labeled.iter().map(|(_, n)| n.clone()).collect(), l.folded.iter().map(|d| d.name.clone()).collect())
    }

    const THREE: [(&str, &str); 3] =
        [("02:77:00:00:00:01", "camera"), ("02:77:00:00:00:02", "laptop"), ("02:77:00:00:00:03", "plug")];

    #[test]
    fn devices_over_the_cap_are_folded_by_id_order() {
        let mut cfg = config(2, &THREE);
        // Whatever order the list is in, the lowest ids keep their labels.
        cfg.devices.reverse();
        let l = Labels::of(&cfg);
        assert_eq!(names(&l), (vec!["camera".to_string(), "laptop".into()], vec!["plug".to_string()]));
    }

    #[test]
    fn cap_of_zero_folds_everything_and_a_large_cap_nothing() {
        let cfg = config(0, &THREE);
        assert_eq!(Labels::of(&cfg).labeled.len(), 0);
        assert_eq!(Labels::of(&cfg).folded.len(), 3);
        let cfg = config(256, &THREE);
        assert_eq!(Labels::of(&cfg).labeled.len(), 3);
        assert!(Labels::of(&cfg).folded.is_empty());
    }

    #[test]
    fn reserved_names_fall_back_to_the_mac() {
        let cfg = config(
            10,
            &[("02:77:00:00:00:0a", "other"), ("02:77:00:00:00:0b", "unknown"), ("02:77:00:00:00:0c", "tv")],
        );
        let (labeled, _) = names(&Labels::of(&cfg));
        assert_eq!(labeled, vec!["02:77:00:00:00:0a", "02:77:00:00:00:0b", "tv"]);
        let mut nameless = cfg.devices[2].clone();
        nameless.name.clear();
        assert_eq!(label(&nameless), "02:77:00:00:00:0c");
    }
}
