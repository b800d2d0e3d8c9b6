//! `scripts/bench NAME`: runs one benchmark, prints its table and writes
//! target/bench/NAME.json. Needs root (BPF_PROG_TEST_RUN).

use std::process::ExitCode;

use moat_tests::{bench_classifier, bench_footprint, bench_mqtt, bench_policy};

const BENCHES: [&str; 4] = ["classifier", "policy", "mqtt", "footprint"];

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    let result = match name.as_str() {
        "classifier" => bench_classifier::run().inspect(bench_classifier::print),
        "policy" => bench_policy::run_all().inspect(bench_policy::print),
        "mqtt" => bench_mqtt::run().inspect(bench_mqtt::print),
        "footprint" => bench_footprint::run().inspect(bench_footprint::print),
        _ => {
            eprintln!("usage: moat-bench NAME (one of: {})", BENCHES.join(", "));
            return ExitCode::from(2);
        }
    };
    match result.and_then(|r| r.write()) {
        Ok(path) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark {name} failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
