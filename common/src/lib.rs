//! Types and constants shared by the kernel programs (`moat-ebpf`) and user space.
//!
//! Every map key and value is `#[repr(C)]`, `Copy` and has a compile-time size
//! assertion, because the kernel sees raw bytes: a silent layout change would
//! corrupt verdicts rather than fail to build.
#![no_std]
#![deny(unsafe_code)] // only the aya::Pod impls (feature "user") need it

pub mod class;
pub mod maps;
pub mod reason;

pub use maps::{DeviceEntry, DeviceStats, MacKey};
