//! `[log]`: modelled as written, every mistake reported at its place.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::path::Path;

use moat_policy::{
    service::{LogFormat, LogSettings},
    Config, Diagnostics,
};

const HEAD: &str = "[gateway]\nlan = \"br-lan\"\nwan = \"wan0\"\n";

fn parse(text: &str) -> Result<Config, Diagnostics> {
    Config::parse(Path::new("l.toml"), &format!("{HEAD}{text}"))
}

fn error(body: &str) -> String {
    match parse(body) {
        Ok(_) => panic!("should be rejected:\n{body}"),
        Err(d) => {
            assert_eq!(d.0.len(), 1, "expected one error: {d}");
            format!("{}:{}: {}", d.0[0].line, d.0[0].col, d.0[0].message)
        }
    }
}

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
