//! moat's policy side: the TOML config model, its validation (errors with
//! `file:line:col` and a hint), and compilation to what the kernel enforces
//! (eBPF map entries and the nftables ruleset). Pure: no privileges, no I/O
//! beyond reading the config file.
#![forbid(unsafe_code)]

pub mod config;
pub mod diag;
pub mod mac;
pub mod model;
pub mod mqtt;
pub mod mud;
pub mod net;
pub mod nft;
mod raw;
pub mod service;
mod validate;
mod validate_mqtt;
mod validate_policy;
mod validate_service;

pub use config::{Classifier, Config, Device, Gateway, OnFailure};
pub use diag::{Diagnostic, Diagnostics};
pub use mac::MacAddr;
pub use model::Policy;
