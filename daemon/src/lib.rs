//! The moat daemon's library: loading the classifier into the kernel, keeping
//! its maps in step with the config, applying the nftables ruleset, and
//! reporting counters. `main.rs` is the CLI on top.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod decisions;
pub mod dhcp;
pub mod discover;
pub mod dns;
pub mod events;
pub mod forget;
pub mod http;
pub mod inventory;
pub mod kernel;
pub mod learn;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod mud_dir;
pub mod neighbours;
pub mod nft;
pub mod oui;
pub mod owner;
pub mod pins;
pub mod plan;
pub mod reload;
pub mod run;
pub mod status;
