//! Validation of `[log]`.

use toml::Spanned;

use crate::{
    raw::RawLog,
    service::{LogFormat, LogSettings},
    validate::{bounded, Checker},
};

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
