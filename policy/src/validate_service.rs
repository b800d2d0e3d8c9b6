//! Validation of `[api]`, `[metrics]` and `[log]`.

use toml::Spanned;

use crate::{
    raw::{RawApi, RawLog, RawMetrics},
    service::{ApiSettings, LogFormat, LogSettings, MetricsSettings, API_SOCKET_NAME, DEFAULT_API_GROUP},
    validate::{bounded, Checker},
};

pub(crate) fn api(c: &mut Checker<'_>, raw: Option<&Spanned<RawApi>>, run_dir: &str) -> ApiSettings {
    let r = raw.map(Spanned::get_ref);
    let socket = match r.and_then(|r| r.socket.as_ref()) {
        Some(s) if !s.get_ref().starts_with('/') || s.get_ref().contains("..") || s.get_ref().ends_with('/') => {
            c.err(s, format!("`socket` = {:?} must be an absolute file path without \"..\"", s.get_ref()), None);
            String::new()
        }
        Some(s) if s.get_ref().len() > 107 => {
            c.err(s, "`socket` path is longer than a Unix socket address allows (107 bytes)", None);
            String::new()
        }
        Some(s) => s.get_ref().clone(),
        None => format!("{}/{API_SOCKET_NAME}", run_dir.trim_end_matches('/')),
    };
    let group = match r.and_then(|r| r.group.as_ref()) {
        Some(g) if !valid_group(g.get_ref()) => {
            c.err(g, format!("`group` = {:?} is not a valid group name", g.get_ref()), Some("e.g. \"moat\"".into()));
            DEFAULT_API_GROUP.to_string()
        }
        Some(g) => g.get_ref().clone(),
        None => DEFAULT_API_GROUP.to_string(),
    };
    ApiSettings { socket, group }
}

fn valid_group(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 32
        && !g.starts_with('-')
        && g.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

pub(crate) fn metrics(c: &mut Checker<'_>, raw: Option<&Spanned<RawMetrics>>) -> MetricsSettings {
    let d = MetricsSettings::default();
    let Some(r) = raw.map(Spanned::get_ref) else { return d };
    let listen = match &r.listen {
        None => d.listen,
        Some(v) if v.get_ref() == "off" => None,
        Some(v) => match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                c.err(
                    v,
                    format!("`listen` = {:?} is not an address:port", v.get_ref()),
                    Some("e.g. \"127.0.0.1:9469\" or \"[::1]:9469\", or \"off\"".into()),
                );
                d.listen
            }
        },
    };
    MetricsSettings {
        listen,
        max_labeled_devices: bounded(
            c,
            r.max_labeled_devices.as_ref(),
            "max_labeled_devices",
            (0, 100_000),
            d.max_labeled_devices,
        ),
    }
}

pub(crate) fn log(c: &mut Checker<'_>, raw: Option<&Spanned<RawLog>>) -> LogSettings {
    let d = LogSettings::default();
    let Some(r) = raw.map(Spanned::get_ref) else { return d };
    let level = match &r.level {
        Some(v) if !valid_filter(v.get_ref()) => {
            c.err(
                v,
                format!("`level` = {:?} is not a log filter", v.get_ref()),
                Some("error, warn, info, debug or trace, optionally per module: \"info,moat::mqtt=debug\"".into()),
            );
            d.level.clone()
        }
        Some(v) => v.get_ref().clone(),
        None => d.level.clone(),
    };
    let format = match r.format.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "plain")) => LogFormat::Plain,
        Some((_, "json")) => LogFormat::Json,
        Some((v, other)) => {
            c.err(v, format!("unknown log format {other:?}"), Some("\"plain\" or \"json\"".into()));
            LogFormat::Plain
        }
    };
    LogSettings {
        level,
        format,
        packet_events_per_minute: bounded(
            c,
            r.packet_events_per_minute.as_ref(),
            "packet_events_per_minute",
            (0, 60_000),
            d.packet_events_per_minute,
        ),
    }
}

/// `LEVEL` or `target=LEVEL` items separated by commas (the subset of
/// tracing's filter syntax moat documents).
fn valid_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    !s.is_empty()
        && s.split(',').all(|item| {
            let (target, level) = item.rsplit_once('=').unwrap_or(("", item));
            let target_ok = target.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | ':'));
            target_ok && LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        })
}
