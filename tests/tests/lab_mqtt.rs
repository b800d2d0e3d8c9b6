//! The gateway's MQTT broker over TLS with real clients (mosquitto_pub/sub
//! and paho-mqtt) from device namespaces: per-device credentials tied to the
//! device's MAC, topic permissions on every PUBLISH and SUBSCRIBE, QoS 0/1/2,
//! retained messages, v3.1.1 and v5 refusals, and clients that misbehave.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a failing test panics

use std::{path::Path, time::Duration};

use anyhow::Result;
use moat_tests::{
    cmd::output,
    lab::{wait_for, Lab, GW_V4},
    moat::lab_config,
    mqtt::{count, counters, credentials, publish, received, subscribe, Creds},
    Moat,
};

const SENSOR: &str = "02:77:00:00:00:01";
const APP: &str = "02:77:00:00:00:02";
const PLAIN: &str = "02:77:00:00:00:03";

/// sensor: its own tree; app: reads every device, commands them; plain: no broker.
fn config(extra_mqtt: &str) -> String {
    lab_config(&format!(
        r#"
[mqtt]
names = ["gateway.lab"]
max_packet_size = 4096
handshake_timeout_ms = 1500
connections_per_minute = 600
{extra_mqtt}

[policies.sensor]
[policies.sensor.mqtt]
publish = ["devices/%u/#"]
subscribe = ["devices/%u/cmd/#"]

[policies.app]
[policies.app.mqtt]
publish = ["devices/+/cmd/#"]
subscribe = ["devices/#"]

[policies.plain]

[[devices]]
mac = "{SENSOR}"
name = "sensor"
policy = "sensor"

[[devices]]
mac = "{APP}"
name = "app"
policy = "app"

[[devices]]
mac = "{PLAIN}"
name = "plain"
policy = "plain"
"#
    ))
}

fn wait_lines(log: &Path, n: usize) -> Vec<String> {
    let log = log.to_path_buf();
    let _ = wait_for(Duration::from_secs(10), || Ok(received(&log).len() >= n));
    received(&log)
}

#[test]
fn tls_broker_enforces_identity_and_permissions() -> Result<()> {
    let mut lab = Lab::new(&[SENSOR, APP, PLAIN])?;
    let moat = Moat::start(&lab, &config(""))?;
    let (sensor_ns, app_ns, plain_ns) =
        (lab.devices[0].ns.clone(), lab.devices[1].ns.clone(), lab.devices[2].ns.clone());
    let sensor = credentials(&moat, "sensor")?;
    let app = credentials(&moat, "app")?;
    assert_ne!(sensor.password, app.password, "passwords are per device");
    assert!(credentials(&moat, "sensor").is_err(), "an existing password is not replaced without --rotate");

    // app sees every device's messages, QoS 0/1/2, v3.1.1.
    let all = subscribe(&mut lab, &app_ns, &app, &["devices/#"], &["-q", "2"], "app-sub")?;
    for q in ["0", "1", "2"] {
        publish(&sensor_ns, &sensor, "devices/sensor/temp", &format!("t-q{q}"), &["-q", q])?;
    }
    // Outside sensor's permissions: acknowledged (v3.1.1 has no refusal code), dropped, counted.
    publish(&sensor_ns, &sensor, "devices/app/spoof", "forged", &["-q", "1"])?;
    publish(&sensor_ns, &sensor, "devices/sensor/state", "on", &["-r", "-q", "1"])?;
    let got = wait_lines(&all, 4);
    assert_eq!(
        got,
        vec![
            "devices/sensor/temp t-q0",
            "devices/sensor/temp t-q1",
            "devices/sensor/temp t-q2",
            "devices/sensor/state on"
        ],
        "app receives exactly sensor's permitted messages"
    );

    // A retained message reaches a later subscriber; v5 client this time.
    let late = subscribe(&mut lab, &app_ns, &app, &["devices/sensor/state"], &["-V", "mqttv5", "-C", "1"], "late")?;
    assert_eq!(wait_lines(&late, 1), vec!["devices/sensor/state on"]);

    // sensor may not subscribe to other devices (v3.1.1: SUBACK failure).
    let out = output(
        Some(&sensor_ns),
        &moat_tests::mqtt::sub_args(&sensor, &["devices/#"], &["-C", "1", "-W", "3"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("denied") || !out.status.success(), "wide subscription must be refused: {text}");

    // Commands flow app → sensor within both ACLs.
    let cmds = subscribe(&mut lab, &sensor_ns, &sensor, &["devices/sensor/cmd/#"], &["-q", "1"], "sensor-cmd")?;
    publish(&app_ns, &app, "devices/sensor/cmd/reboot", "now", &["-q", "1", "-V", "mqttv5"])?;
    assert_eq!(wait_lines(&cmds, 1), vec!["devices/sensor/cmd/reboot now"]);

    // Wrong password, another device's credentials, a device without broker access.
    let wrong = Creds { password: "not-the-password".into(), ..sensor.clone() };
    let e = publish(&sensor_ns, &wrong, "devices/sensor/x", "x", &[]).unwrap_err().to_string();
    assert!(e.contains("bad user name or password"), "wrong password gets a CONNACK refusal: {e}");
    let e = publish(&app_ns, &sensor, "devices/sensor/x", "x", &[]).unwrap_err().to_string();
    assert!(e.contains("not authorised"), "sensor's credentials from app's MAC are refused: {e}");
    // A device whose policy has no broker access does not even reach the port.
    assert!(!moat_tests::lab::connects(&plain_ns, GW_V4, 8883)?, "no MQTT permissions: the TLS port is closed to it");

    // MQTT 5 reason codes, with paho-mqtt.
    let v5 = paho_check(&sensor_ns, &sensor)?;
    assert_eq!(v5["connect"], 0, "{v5}");
    assert_eq!(v5["suback"], serde_json::json!([2, 1, 0x87]), "granted QoS 2 and 1, then not authorized: {v5}");
    assert_eq!(v5["pub"]["allowed_q2"], 0, "{v5}");
    assert_eq!(v5["pub"]["denied_q1"], 0x87, "PUBACK not authorized: {v5}");
    // paho ignores a PUBREC's reason code and sends PUBREL anyway; moat answers
    // it with "packet identifier not found" (the wire-level PUBREC is checked
    // in `misbehaving_clients_...`).
    assert_eq!(v5["pub"]["denied_q2"], 0x92, "{v5}");
    // Overlapping subscriptions: delivered at the highest granted QoS (MQTT
    // 5 3.3.4 allows a copy per matching subscription; each is at QoS 2).
    let got = v5["received"].as_array().cloned().unwrap_or_default();
    assert!(!got.is_empty() && got.len() <= 2, "{v5}");
    assert!(got.iter().all(|m| *m == serde_json::json!(["devices/sensor/cmd/x", 2, "v5-allowed_q2"])), "{v5}");

    let s = counters(&moat, "sensor")?;
    assert_eq!(count(&s, "publish_denied"), 3, "one v3.1.1 + two v5 denied publishes: {s}");
    assert_eq!(count(&s, "subscribe_denied"), 2, "{s}");
    assert_eq!(count(&s, "auth_failures"), 1, "{s}");
    assert_eq!(count(&s, "identity_mismatch"), 0, "{s}");
    let a = counters(&moat, "app")?;
    assert_eq!(count(&a, "identity_mismatch"), 1, "app's connection with sensor's credentials: {a}");
    assert!(moat.log_text().contains("MQTT login refused"));
    assert!(!moat.log_text().contains(&sensor.password), "passwords are never logged");
    Ok(())
}

#[test]
fn misbehaving_clients_are_cut_off_while_others_keep_working() -> Result<()> {
    let mut lab = Lab::new(&[SENSOR, APP])?;
    let moat = Moat::start(&lab, &config(""))?;
    let (sensor_ns, app_ns) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let (sensor, app) = (credentials(&moat, "sensor")?, credentials(&moat, "app")?);
    let all = subscribe(&mut lab, &app_ns, &app, &["devices/#"], &["-q", "1"], "app-sub")?;

    // 30 connections that start a TLS handshake and stall (handshake_timeout_ms =
    // 1500): the device's first 16 connections time out, the rest are refused at accept.
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/mqtt_raw.py").display().to_string();
    lab.spawn(&app_ns, &["python3", &raw, "stall", GW_V4, "8883", "30", "4"], "stall")?;
    let stall_log = lab.dir.join("stall.log");
    wait_for(Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&stall_log).unwrap_or_default().contains("holding"))
    })?;
    let t = std::time::Instant::now();
    publish(&sensor_ns, &sensor, "devices/sensor/a", "during-stall", &["-q", "1"])?;
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "a new client is not held up by stalled handshakes: {took:?}");

    // Oversized and malformed frames disconnect that client only.
    let ca = sensor.ca.display().to_string();
    let run_raw = |mode: &str, extra: &[&str]| -> Result<serde_json::Value> {
        let mut args = vec!["python3", raw.as_str(), mode, GW_V4, "8883", ca.as_str(), &sensor.user, &sensor.password];
        args.extend(extra);
        let out = output(Some(&sensor_ns), &args)?;
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("null").to_string();
        Ok(serde_json::from_str(&line).unwrap_or(serde_json::Value::Null))
    };
    assert_eq!(run_raw("oversize", &["8000"])?["state"], "closed", "a packet over max_packet_size disconnects");
    assert_eq!(run_raw("garbage", &[])?["state"], "closed", "a malformed length disconnects");
    assert_eq!(run_raw("pubrec", &[])?["pubrec"], "500400078700", "v5 PUBREC for packet 7: not authorized (0x87)");
    publish(&sensor_ns, &sensor, "devices/sensor/a", "after-abuse", &["-q", "1"])?;
    assert_eq!(wait_lines(&all, 2), vec!["devices/sensor/a during-stall", "devices/sensor/a after-abuse"]);

    wait_for(Duration::from_secs(15), || {
        Ok(std::fs::read_to_string(&stall_log).unwrap_or_default().contains("closed_by_server"))
    })?;
    let last = std::fs::read_to_string(&stall_log)?.lines().last().unwrap_or("").to_string();
    let v: serde_json::Value = serde_json::from_str(&last)?;
    assert_eq!(v["closed_by_server"], 30, "stalled handshakes are closed after the timeout: {v}");
    let st = moat.status()?;
    let n = |k: &str| st["mqtt"][k].as_u64().unwrap_or(0);
    assert_eq!(n("handshake_timeouts") + n("over_device_limit"), 30, "{}", st["mqtt"]);
    assert!(n("over_device_limit") > 0, "app may hold 16 connections (one is its subscriber): {}", st["mqtt"]);
    assert_eq!(count(&st["mqtt"]["devices"]["sensor"], "malformed"), 2, "{}", st["mqtt"]);
    Ok(())
}

fn paho_check(ns: &str, c: &Creds) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/mqtt_v5_check.py");
    let ca = c.ca.display().to_string();
    let out = output(Some(ns), &["python3", &script.display().to_string(), GW_V4, "8883", &ca, &c.user, &c.password])?;
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("null").to_string();
    Ok(serde_json::from_str(&line).unwrap_or(serde_json::Value::Null))
}

const LEGACY: &str = "02:77:00:00:00:04";
const OLD: &str = "02:77:00:00:00:05";

#[test]
fn plaintext_mqtt_is_upgraded_to_tls_or_never_leaves() -> Result<()> {
    use moat_tests::{cmd::sh, lab::INTERNET_V4, mqtt::start_cloud};
    let mut lab = Lab::new(&[LEGACY, OLD])?;
    let cloud = start_cloud(&mut lab)?;
    let cfg = lab_config(&format!(
        r#"
[mqtt]
[mqtt.upstreams.cloud]
host = "cloud.lab"
address = "{INTERNET_V4}"
ca_file = "{ca}"

[policies.legacy]
[policies.legacy.mqtt]
upstream = "cloud"

[policies.old]

[[devices]]
mac = "{LEGACY}"
name = "legacy"
policy = "legacy"

[[devices]]
mac = "{OLD}"
name = "old"
policy = "old"
"#,
        ca = cloud.ca.display()
    ));
    let moat = Moat::start(&lab, &cfg)?;
    let (legacy, old) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let pcap = lab.dir.join("wan.pcap").display().to_string();
    let gw = lab.gw.clone();
    lab.spawn(&gw, &["tcpdump", "-i", "wan0", "-U", "-n", "-w", &pcap, "tcp"], "tcpdump")?;
    std::thread::sleep(Duration::from_millis(500));

    // The legacy device speaks plaintext MQTT to "the cloud" on 1883: moat carries it over TLS.
    let pub_plain = |ns: &str, port: &str, msg: &str| {
        // A dropped CONNECT leaves the client waiting: 5 s is plenty for the rest.
        output(
            Some(ns),
            &[
                "timeout",
                "5",
                "mosquitto_pub",
                "-h",
                INTERNET_V4,
                "-p",
                port,
                "-t",
                "legacy/state",
                "-m",
                msg,
                "-q",
                "1",
            ],
        )
    };
    let out = pub_plain(&legacy, "1883", "hello-cloud")?;
    assert!(out.status.success(), "upgraded publish: {}", String::from_utf8_lossy(&out.stderr));
    let cloud_log = cloud.log.clone();
    wait_for(Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&cloud_log).unwrap_or_default().contains("legacy/state hello-cloud"))
    })?;
    // The other device's plaintext MQTT is dropped, on the standard port and off it.
    assert!(!pub_plain(&old, "1883", "leak-1883")?.status.success(), "no upgrade for old: dropped");
    assert!(!pub_plain(&old, "1884", "leak-1884")?.status.success(), "plaintext MQTT on any port is dropped");
    std::thread::sleep(Duration::from_millis(500));
    let cloud_text = std::fs::read_to_string(&cloud.log)?;
    assert!(!cloud_text.contains("leak"), "the cloud broker never sees old's messages: {cloud_text}");

    // On the WAN link: TLS to 8883 only, no MQTT in clear.
    let _ = output(Some(&gw), &["pkill", "-INT", "tcpdump"]);
    std::thread::sleep(Duration::from_millis(500));
    let dump = sh(&gw, &format!("tcpdump -r {pcap} -n -A 2>/dev/null"))?;
    assert!(dump.contains(".8883:") || dump.contains(".8883 "), "the session went to the cloud's TLS port");
    for clear in ["hello-cloud", "leak-", "MQTT"] {
        assert!(!dump.contains(clear), "{clear:?} crossed the WAN link in clear");
    }
    let s = counters(&moat, "legacy")?;
    assert_eq!(count(&s, "upgraded_sessions"), 1, "{s}");
    let rules = moat_tests::cmd::run(Some(&gw), &["nft", "list", "chain", "inet", "moat", "forward"])?;
    let dropped: u64 = rules
        .lines()
        .find(|l| l.contains("plaintext mqtt leaving the LAN"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped >= 2, "old's CONNECTs were dropped by the forward rule: {rules}");
    Ok(())
}

#[test]
fn plaintext_listener_wills_and_connection_rate() -> Result<()> {
    let mut lab = Lab::new(&[SENSOR, APP])?;
    let cfg = config("plaintext_port = 1883")
        .replace("connections_per_minute = 600", "connections_per_minute = 5")
        .replace("subscribe = [\"devices/%u/cmd/#\"]", "subscribe = [\"devices/%u/cmd/#\"]\nplaintext = true");
    let moat = Moat::start(&lab, &cfg)?;
    let (sensor_ns, app_ns) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let (sensor, app) = (credentials(&moat, "sensor")?, credentials(&moat, "app")?);
    let all = subscribe(&mut lab, &app_ns, &app, &["devices/#"], &["-q", "1"], "app-sub")?;

    // sensor's policy allows the plaintext listener; app's does not reach it.
    let plain = ["mosquitto_pub", "-h", GW_V4, "-p", "1883", "-u", "sensor", "-P", &sensor.password];
    let mut args = plain.to_vec();
    args.extend(["-t", "devices/sensor/plain", "-m", "clear", "-q", "1"]);
    let out = output(Some(&sensor_ns), &args)?;
    assert!(out.status.success(), "plaintext listener for sensor: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!moat_tests::lab::connects(&app_ns, GW_V4, 1883)?, "app's policy has no plaintext access");

    // A will is published when its device vanishes.
    let will = ["--will-topic", "devices/sensor/status", "--will-payload", "offline", "--will-qos", "1"];
    let pid = {
        let mut a: Vec<&str> = vec!["mosquitto_sub", "-h", GW_V4, "-p", "8883", "--cafile"];
        let ca = sensor.ca.display().to_string();
        a.extend([ca.as_str(), "-u", "sensor", "-P", &sensor.password, "-t", "devices/sensor/cmd/#", "-k", "5"]);
        a.extend(will);
        lab.spawn(&sensor_ns, &a, "sensor-will")?
    };
    std::thread::sleep(Duration::from_millis(800));
    moat_tests::cmd::run(None, &["kill", "-9", &pid.to_string()])?;
    assert_eq!(
        wait_lines(&all, 2),
        vec!["devices/sensor/plain clear", "devices/sensor/status offline"],
        "plaintext publish, then the will"
    );

    // 5 connections a minute per device: app has used one; the sixth is refused.
    let mut refused = 0;
    for i in 0..6 {
        if let Err(e) = publish(&app_ns, &app, "devices/sensor/cmd/n", &format!("{i}"), &[]) {
            assert!(e.to_string().contains("unavailable"), "rate limit is a CONNACK refusal: {e}");
            refused += 1;
        }
    }
    // (a token comes back every 12 s: a slow run may get one more through)
    assert!((1..=2).contains(&refused), "1 + 4 connections allowed, then refusals: {refused}");
    assert_eq!(count(&counters(&moat, "app")?, "rate_limited"), refused);
    Ok(())
}

#[test]
fn client_certificates_are_tied_to_the_device() -> Result<()> {
    let lab = Lab::new(&[SENSOR, APP])?;
    let moat = Moat::start(&lab, &config("client_certificates = true"))?;
    let (sensor_ns, app_ns) = (lab.devices[0].ns.clone(), lab.devices[1].ns.clone());
    let dir = lab.dir.join("certs");
    std::fs::create_dir_all(&dir)?;
    let bin = moat_tests::moat::binary()?.display().to_string();
    let cfg = moat.config.display().to_string();
    let d = dir.display().to_string();
    moat_tests::cmd::run(None, &[&bin, "mqtt", "credentials", "sensor", "--config", &cfg, "--certificate", &d])?;
    let (cert, key) = (format!("{d}/sensor.pem"), format!("{d}/sensor.key"));
    let key_mode = std::fs::metadata(&key)?.permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777, 0o600, "client key is private");
    let ca = lab.dir.join("state/mqtt/ca.pem").display().to_string();
    let pub_with = |ns: &str, extra: &[&str]| {
        let mut a =
            vec!["mosquitto_pub", "-h", GW_V4, "-p", "8883", "--cafile", &ca, "-t", "devices/sensor/x", "-m", "m"];
        a.extend(extra);
        output(Some(ns), &a)
    };
    let ok = pub_with(&sensor_ns, &["--cert", &cert, "--key", &key, "-u", "sensor"])?;
    assert!(ok.status.success(), "sensor with its certificate: {}", String::from_utf8_lossy(&ok.stderr));
    assert!(!pub_with(&sensor_ns, &["-u", "sensor", "-P", "x"])?.status.success(), "no certificate: no TLS session");
    let stolen = pub_with(&app_ns, &["--cert", &cert, "--key", &key, "-u", "app"])?;
    assert!(!stolen.status.success(), "sensor's certificate from app's MAC is refused");
    assert!(
        String::from_utf8_lossy(&stolen.stderr).contains("not authorised"),
        "{}",
        String::from_utf8_lossy(&stolen.stderr)
    );
    Ok(())
}
