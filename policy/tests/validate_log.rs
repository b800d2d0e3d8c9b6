//! `[log]`: modelled as written, every mistake reported at its place.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use moat_policy::service::{LogFormat, LogSettings};

mod common;
use common::{error, parse};

#[test]
fn log_settings_are_modelled_with_defaults() {
    assert_eq!(parse("").unwrap().log, LogSettings::default());
    let cfg =
        parse("[log]\nlevel = \"warn,moat::mqtt=debug\"\nformat = \"json\"\npacket_events_per_minute = 5\n").unwrap();
    assert_eq!(cfg.log.level, "warn,moat::mqtt=debug");
    assert_eq!((cfg.log.format, cfg.log.packet_events_per_minute), (LogFormat::Json, 5));
}

#[test]
fn log_mistakes_are_reported_where_they_are() {
    assert_eq!(error("[log]\nlevel = \"loud\"\n"), "5:9: `level` = \"loud\" is not a log filter");
    assert_eq!(error("[log]\nlevel = \"moat=verbose\"\n"), "5:9: `level` = \"moat=verbose\" is not a log filter");
    assert_eq!(error("[log]\nformat = \"xml\"\n"), "5:10: unknown log format \"xml\"");
    assert_eq!(
        error("[log]\npacket_events_per_minute = -1\n"),
        "5:28: `packet_events_per_minute` = -1 is out of range"
    );
    assert!(error("[log]\ncolour = true\n").contains("unknown field `colour`"));
}
