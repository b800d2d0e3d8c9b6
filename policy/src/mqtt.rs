//! The MQTT part of the config: the gateway broker's settings (`[mqtt]`), the
//! upstream brokers plaintext devices are upgraded to (`[mqtt.upstreams.NAME]`)
//! and each policy's topic permissions (`[policies.NAME.mqtt]`), with the
//! topic matching the front enforces on every PUBLISH and SUBSCRIBE.

use std::collections::BTreeMap;

/// Default TLS port of the device-facing broker.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// Default port the gateway takes redirected plaintext MQTT on (upgrade path).
pub const DEFAULT_UPGRADE_PORT: u16 = 18830;
/// Plaintext MQTT port devices use toward the internet.
pub const PLAINTEXT_PORT: u16 = 1883;

/// What happens to a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest queued message (counted, logged rate-limited).
    #[default]
    DropOldest,
    /// Disconnect the subscriber; its broker session is kept (bounded).
    Disconnect,
}

/// `[mqtt]`: present means the broker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// TLS port on the LAN interface.
    pub tls_port: u16,
    /// Optional plaintext port on the LAN interface (policies opt in).
    pub plaintext_port: Option<u16>,
    /// Where redirected plaintext MQTT from upgrade devices arrives.
    pub upgrade_port: u16,
    /// Largest MQTT packet accepted from a device, bytes.
    pub max_packet_size: u32,
    /// New connections a device may open per minute.
    pub connections_per_minute: u32,
    /// Connections open at once (all devices).
    pub max_connections: u32,
    /// Connections open (or handshaking) at once per device.
    pub max_connections_per_device: u32,
    /// Messages a device may publish per second (all its connections); a
    /// device over it is slowed down (not dropped).
    pub publish_rate: u32,
    /// Per-connection queue toward a device: messages and bytes.
    pub queue_messages: u32,
    pub queue_bytes: u32,
    pub overflow: Overflow,
    /// TLS handshake and CONNECT must complete within this, milliseconds.
    pub handshake_timeout_ms: u32,
    /// Require a client certificate issued by moat's CA (mTLS) on the TLS port.
    pub client_certificates: bool,
    /// Extra DNS names for the server certificate (the LAN addresses and
    /// `localhost` are always in it).
    pub names: Vec<String>,
    pub upstreams: BTreeMap<String, Upstream>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            tls_port: DEFAULT_TLS_PORT,
            plaintext_port: None,
            upgrade_port: DEFAULT_UPGRADE_PORT,
            max_packet_size: 256 * 1024,
            connections_per_minute: 30,
            max_connections: 1024,
            max_connections_per_device: 16,
            publish_rate: 1000,
            queue_messages: 1000,
            queue_bytes: 1024 * 1024,
            overflow: Overflow::DropOldest,
            handshake_timeout_ms: 5000,
            client_certificates: false,
            names: Vec::new(),
            upstreams: BTreeMap::new(),
        }
    }
}

/// A broker on the internet that plaintext devices are upgraded to (TLS,
/// certificate verified against `ca_file` for `host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Name checked against the broker's certificate (and resolved unless
    /// `address` is given).
    pub host: String,
    pub port: u16,
    /// Connect here instead of resolving `host`.
    pub address: Option<std::net::IpAddr>,
    pub ca_file: String,
}

/// `[policies.NAME.mqtt]`: what devices of the policy may do on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyMqtt {
    pub publish: Vec<TopicPattern>,
    pub subscribe: Vec<TopicPattern>,
    /// May use the plaintext listener (if one is configured).
    pub plaintext: bool,
    /// Plaintext MQTT to tcp/1883 on the internet is redirected to the
    /// gateway and carried to this upstream over TLS.
    pub upstream: Option<String>,
}

/// A permission pattern: an MQTT filter (`+`, `#`) in which `%u` (the
/// device's name) and `%c` (its client id) stand for one whole level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Checks the pattern's syntax (a valid filter, substitutions as whole levels).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 1024 {
            return Err("must be 1 to 1024 bytes".into());
        }
        if s.chars().any(|c| c == '\0' || c.is_control()) {
            return Err("must not contain control characters".into());
        }
        let levels: Vec<&str> = s.split('/').collect();
        for (i, l) in levels.iter().enumerate() {
            if l.contains('#') && (*l != "#" || i + 1 != levels.len()) {
                return Err("`#` must be a whole level and the last one".into());
            }
            if l.contains('+') && *l != "+" {
                return Err("`+` must be a whole level".into());
            }
            if l.contains('%') && *l != "%u" && *l != "%c" {
                return Err("`%u` and `%c` must be whole levels".into());
            }
        }
        Ok(TopicPattern(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pattern's levels with `%u`/`%c` filled in. `None` if a value
    /// could itself act as a wildcard or separator (then nothing matches).
    fn levels<'a>(&'a self, user: &'a str, client: &'a str) -> Option<Vec<&'a str>> {
        // `$` would turn a grant into `$share/...` or `$SYS/...`.
        let bad = |v: &str| v.is_empty() || v.contains(['/', '+', '#']) || v.starts_with('$');
        self.0
            .split('/')
            .map(|l| match l {
                "%u" if bad(user) => None,
                "%c" if bad(client) => None,
                "%u" => Some(user),
                "%c" => Some(client),
                other => Some(other),
            })
            .collect()
    }

    /// May a device publish to `topic` (a topic name, no wildcards)?
    pub fn allows_topic(&self, topic: &str, user: &str, client: &str) -> bool {
        let Some(pat) = self.levels(user, client) else { return false };
        if topic.is_empty() || topic.contains(['+', '#']) {
            return false;
        }
        // `+`/`#` in a permission do not match topics starting with `$` at the
        // first level (MQTT 4.7.2): `#` never grants `$SYS`.
        if topic.starts_with('$') && matches!(pat.first(), Some(&"+") | Some(&"#")) {
            return false;
        }
        covers(&pat, &topic.split('/').collect::<Vec<_>>())
    }

    /// May a device subscribe to `filter`? Only if every topic the filter can
    /// match is a topic the pattern allows.
    pub fn allows_filter(&self, filter: &str, user: &str, client: &str) -> bool {
        let Some(pat) = self.levels(user, client) else { return false };
        // A shared subscription receives what its filter matches: judge that.
        let filter = match filter.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) => f,
                _ => return false,
            },
            None => filter,
        };
        let f: Vec<&str> = filter.split('/').collect();
        if filter.is_empty() || !valid_filter(&f) {
            return false;
        }
        if filter.starts_with('$') != pat.first().is_some_and(|l| l.starts_with('$')) {
            return false;
        }
        covers(&pat, &f)
    }
}

/// A filter's syntax: `#` only as the whole last level, `+` only whole.
fn valid_filter(levels: &[&str]) -> bool {
    levels
        .iter()
        .enumerate()
        .all(|(i, l)| (!l.contains('#') || (*l == "#" && i + 1 == levels.len())) && (!l.contains('+') || *l == "+"))
}

/// Does pattern `pat` cover every topic matched by `f` (a topic or a filter)?
fn covers(pat: &[&str], f: &[&str]) -> bool {
    match (pat.first(), f.first()) {
        (Some(&"#"), _) => true,
        (None, None) => true,
        // `a/#` also matches `a` itself (MQTT 4.7.1.2).
        (None, Some(&"#")) => false,
        (Some(_), None) => false,
        (None, Some(_)) => false,
        (Some(&"+"), Some(l)) if *l != "#" => covers(&pat[1..], &f[1..]),
        (Some(p), Some(l)) if p == l && *l != "+" && *l != "#" => covers(&pat[1..], &f[1..]),
        _ => false,
    }
}

/// Does subscription `filter` match `topic` (MQTT 4.7)? A shared
/// subscription (`$share/GROUP/filter`) matches like its filter.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    let f: Vec<&str> = filter.split('/').collect();
    if filter.is_empty() || !valid_filter(&f) || topic.contains(['+', '#']) {
        return false;
    }
    if topic.starts_with('$') && matches!(f.first(), Some(&"+") | Some(&"#")) {
        return false;
    }
    covers(&f, &topic.split('/').collect::<Vec<_>>())
}

/// True when any pattern allows publishing to `topic`.
pub fn may_publish(acl: &[TopicPattern], topic: &str, user: &str, client: &str) -> bool {
    acl.iter().any(|p| p.allows_topic(topic, user, client))
}

/// True when any pattern covers `filter`.
pub fn may_subscribe(acl: &[TopicPattern], filter: &str, user: &str, client: &str) -> bool {
    acl.iter().any(|p| p.allows_filter(filter, user, client))
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    fn p(s: &str) -> TopicPattern {
        TopicPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn syntax() {
        for bad in ["", "a/#/b", "a#", "a/b+", "x/%uu", "a/%z", "a\u{1}b"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["#", "+", "a/+/b", "devices/%u/#", "%c", "$SYS/#"] {
            assert!(TopicPattern::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn publish_with_substitution() {
        let pat = p("devices/%u/#");
        assert!(pat.allows_topic("devices/cam/state", "cam", "c1"));
        assert!(pat.allows_topic("devices/cam", "cam", "c1"), "`#` includes the parent level");
        assert!(!pat.allows_topic("devices/bulb/state", "cam", "c1"));
        assert!(!pat.allows_topic("devices/cam/+", "cam", "c1"), "wildcards are not topic names");
        // A name that would act as a wildcard or separator grants nothing.
        assert!(!pat.allows_topic("devices/a/b/x", "a/b", "c1"));
        assert!(!p("devices/%c/x").allows_topic("devices/+/x", "cam", "+"));
        assert!(p("t/%c").allows_topic("t/c1", "cam", "c1"));
        assert!(!p("%c/#").allows_filter("$share/g/x", "cam", "$share"), "a `$` client id grants nothing");
        assert!(!p("%c/#").allows_topic("$SYS/x", "cam", "$SYS"));
    }

    #[test]
    fn dollar_topics_need_explicit_grant() {
        assert!(!p("#").allows_topic("$SYS/x", "u", "c"));
        assert!(!p("+/x").allows_topic("$SYS/x", "u", "c"));
        assert!(p("$SYS/#").allows_topic("$SYS/x", "u", "c"));
        assert!(!p("#").allows_filter("$SYS/#", "u", "c"));
    }

    #[test]
    fn subscribe_filter_must_be_covered() {
        let pat = p("devices/%u/cmd/#");
        assert!(pat.allows_filter("devices/cam/cmd/#", "cam", "c"));
        assert!(pat.allows_filter("devices/cam/cmd/+/x", "cam", "c"));
        assert!(!pat.allows_filter("devices/+/cmd/#", "cam", "c"), "+ at the name level covers other devices");
        assert!(!pat.allows_filter("devices/cam/#", "cam", "c"), "wider than the grant");
        assert!(!pat.allows_filter("#", "cam", "c"));
        assert!(p("a/+").allows_filter("a/+", "u", "c"));
        assert!(!p("a/+").allows_filter("a/#", "u", "c"));
        assert!(p("a/+/c").allows_filter("a/b/c", "u", "c"));
        assert!(!p("a/b").allows_filter("a/+", "u", "c"));
        assert!(!p("a/#").allows_filter("a/b#", "u", "c"), "malformed filter");
        assert!(p("a/#").allows_filter("$share/g/a/b", "u", "c"), "shared: judged by its filter");
        assert!(!p("a/#").allows_filter("$share/g/b", "u", "c"));
        assert!(!p("a/#").allows_filter("$share/+/a", "u", "c"));
    }

    #[test]
    fn subscription_matching() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("$share/g/a/#", "a/b"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }

    #[test]
    fn helpers_take_any_pattern() {
        let acl = vec![p("a/#"), p("b/%u")];
        assert!(may_publish(&acl, "b/me", "me", "c"));
        assert!(!may_publish(&acl, "b/you", "me", "c"));
        assert!(may_subscribe(&acl, "a/+/z", "me", "c"));
        assert!(!may_subscribe(&[], "a", "me", "c"));
    }
}
