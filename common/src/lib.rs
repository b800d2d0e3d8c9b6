//! Types and constants shared by the kernel programs (`moat-ebpf`) and user space.
//!
//! Every map key and value is `#[repr(C)]`, `Copy` and has a compile-time size
//! assertion, because the kernel sees raw bytes: a silent layout change would
//! corrupt verdicts rather than fail to build. The classification rules live
//! here too (`classify`), so they are unit-tested on the host and run unchanged
//! in the kernel.
#![no_std]
#![deny(unsafe_code)] // only the aya::Pod impls (feature "user") need it

pub mod class;
pub mod classify;
pub mod event;
pub mod maps;
pub mod mark;
pub mod reason;

pub use maps::{Counter, DeviceEntry, DeviceStats, FlowKey, FlowValue, MacKey};
