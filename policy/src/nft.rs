//! Compiles a config to the nftables ruleset moat owns (`table inet moat`).
//!
//! The text form is what `nft -f` applies in one atomic transaction and what a
//! person reviews; the leading `table` + `delete table` pair makes the apply a
//! replace whether or not the table exists.

use std::fmt::Write as _;

use crate::Config;

/// Family and name of moat's table.
pub const TABLE: &str = "inet moat";

/// The complete ruleset, as an atomic replace of `table inet moat`.
pub fn ruleset(cfg: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# moat ruleset: generated from the config; do not edit");
    let _ = writeln!(s, "table {TABLE}");
    let _ = writeln!(s, "delete table {TABLE}");
    let _ = writeln!(s, "table {TABLE} {{");
    let _ = writeln!(s, "\tchain forward {{");
    let _ = writeln!(s, "\t\ttype filter hook forward priority filter; policy accept;");
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(s, "\t\tct state invalid counter drop comment \"invalid\"");
    let _ = writeln!(s, "\t\tiifname {} ct state new counter drop comment \"wan-inbound\"", quote(&cfg.gateway.wan));
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// The transaction that removes moat's table.
pub fn teardown() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}

/// nft string literal. Interface names are validated (no quotes, spaces or
/// control characters), so quoting is enough.
fn quote(s: &str) -> String {
    format!("\"{s}\"")
}
