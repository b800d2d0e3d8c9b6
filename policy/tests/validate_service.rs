//! `[api]`, `[metrics]` and `[log]`: modelled as written, every mistake reported at its place.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use moat_policy::service::{ApiSettings, LogFormat, LogSettings, MetricsSettings};

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

#[test]
fn api_and_metrics_are_modelled_with_defaults() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.api, ApiSettings { socket: "/run/moat/moat.sock".into(), group: "moat".into() });
    assert_eq!(cfg.metrics, MetricsSettings::default());
    assert_eq!(cfg.metrics.listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9469"));
    let cfg = parse("[api]\nsocket = \"/tmp/m/ctl.sock\"\ngroup = \"staff\"\n[metrics]\nlisten = \"off\"\nmax_labeled_devices = 2\n").unwrap();
    assert_eq!((cfg.api.socket.as_str(), cfg.api.group.as_str()), ("/tmp/m/ctl.sock", "staff"));
    assert_eq!((cfg.metrics.listen, cfg.metrics.max_labeled_devices), (None, 2));
    let cfg = parse("[metrics]\nlisten = \"[::1]:9000\"\n").unwrap();
    assert_eq!(cfg.metrics.listen.map(|a| a.to_string()).as_deref(), Some("[::1]:9000"));
}

#[test]
fn api_and_metrics_mistakes_are_reported_where_they_are() {
    assert_eq!(
        error("[api]\nsocket = \"moat.sock\"\n"),
        "5:10: `socket` = \"moat.sock\" must be an absolute file path without \"..\""
    );
    assert_eq!(error("[api]\ngroup = \"-x\"\n"), "5:9: `group` = \"-x\" is not a valid group name");
    assert_eq!(error("[metrics]\nlisten = \"9469\"\n"), "5:10: `listen` = \"9469\" is not an address:port");
    assert_eq!(
        error("[metrics]\nmax_labeled_devices = 100001\n"),
        "5:23: `max_labeled_devices` = 100001 is out of range"
    );
}
