//! Builds the eBPF object (crate `moat-ebpf`) for the target's endianness and
//! puts it in OUT_DIR for `include_bytes_aligned!`.
use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let ebpf_dir = root.join("../ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // Userspace-only builds (clippy, check): an empty object; the loader
        // refuses it with a clear error at run time.
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(out.join("moat"), b"").context("writing placeholder object")?;
        return Ok(());
    }
    // aya-build watches the eBPF crate; its shared types live in common/.
    println!("cargo:rerun-if-changed={}", root.join("../common").display());
    let package = aya_build::Package { name: "moat-ebpf", root_dir: ebpf_dir, ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
