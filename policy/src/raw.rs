//! The config file as written: serde structs that keep the spans of the values
//! validation may complain about. Unknown keys are errors everywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub gateway: Spanned<RawGateway>,
    #[serde(default)]
    pub classifier: Option<Spanned<RawClassifier>>,
    #[serde(default)]
    pub policies: BTreeMap<Spanned<String>, RawPolicy>,
    #[serde(default)]
    pub devices: Vec<Spanned<RawDevice>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub lan: Spanned<String>,
    pub wan: Spanned<String>,
    #[serde(default)]
    pub run_dir: Option<String>,
    /// Policy for devices not listed in `[[devices]]`.
    #[serde(default)]
    pub unknown_policy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    #[serde(default)]
    pub max_devices: Option<Spanned<i64>>,
    #[serde(default)]
    pub flow_table_size: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub block: Vec<Spanned<String>>,
    #[serde(default)]
    pub quarantine: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub mac: Spanned<String>,
    pub name: Spanned<String>,
    pub policy: Spanned<String>,
}
