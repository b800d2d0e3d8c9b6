//! Test support for moat: a lab of network namespaces (gateway, devices,
//! "internet") running the real `moat` binary on real traffic.
//!
//! Everything a lab creates is named after the creating process and a counter,
//! so tests run in parallel, and is removed on drop (also when a test panics);
//! leftovers of killed runs are reaped the next time a lab starts.
#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_classifier;
pub mod bench_footprint;
pub mod bench_mqtt;
pub mod bench_policy;
pub mod cmd;
pub mod frames;
pub mod lab;
pub mod moat;
pub mod mqtt;

pub use lab::{Lab, LabDevice};
pub use moat::Moat;
