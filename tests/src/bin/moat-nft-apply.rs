//! Test support: applies the nft transaction on stdin with moat's own
//! `nft::apply` (run it inside a lab namespace with `ip netns exec`). Prints
//! moat's error and exits 1 if nft rejects it.

use std::{io::Read as _, process::ExitCode};

fn main() -> ExitCode {
    let mut script = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut script) {
        eprintln!("reading stdin: {e}");
        return ExitCode::from(2);
    }
    match moat::nft::apply("test", &script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
