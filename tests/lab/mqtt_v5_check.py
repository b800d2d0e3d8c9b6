#!/usr/bin/env python3
"""An MQTT 5 client (paho-mqtt) against moat's TLS front: prints, as one JSON
line, the reason codes the broker gave, so the test can check them exactly.

Usage: mqtt_v5_check.py HOST PORT CAFILE USER PASSWORD

As USER it subscribes to devices/USER/cmd/# (QoS 2), devices/USER/cmd/+ (QoS 1,
overlapping) and devices/# (wider than its permissions), publishes QoS 2 to devices/USER/cmd/x (allowed, and
received back on its own subscription), then QoS 1 and QoS 2 to
devices/other/x (denied).
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main():
    host, port, ca, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    out = {"connect": None, "suback": None, "pub": {}, "received": []}
    done = {k: threading.Event() for k in ("connect", "suback", "received")}
    acks = {}

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-paho", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=ca)

    def on_connect(client, userdata, flags, rc, props):
        out["connect"] = rc.value
        done["connect"].set()

    def on_subscribe(client, userdata, mid, rcs, props):
        out["suback"] = [r.value for r in rcs]
        done["suback"].set()

    by_mid = {}

    def on_publish(client, userdata, mid, rc, props):
        by_mid[mid] = rc.value
        if len(by_mid) == 3:
            done["pubs"].set()

    def on_message(client, userdata, msg):
        out["received"].append([msg.topic, msg.qos, msg.payload.decode()])
        done["received"].set()

    c.on_connect, c.on_subscribe, c.on_publish, c.on_message = on_connect, on_subscribe, on_publish, on_message
    done["pubs"] = threading.Event()
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        if not done["connect"].wait(10) or out["connect"] != 0:
            return
        c.subscribe([(f"devices/{user}/cmd/#", 2), (f"devices/{user}/cmd/+", 1), ("devices/#", 1)])
        done["suback"].wait(10)
        for name, topic, qos in (("allowed_q2", f"devices/{user}/cmd/x", 2),
                                 ("denied_q1", "devices/other/x", 1),
                                 ("denied_q2", "devices/other/x", 2)):
            info = c.publish(topic, b"v5-" + name.encode(), qos=qos)
            acks[info.mid] = name
        done["pubs"].wait(10)
        done["received"].wait(5)
        out["pub"] = {acks.get(mid, str(mid)): rc for mid, rc in by_mid.items()}
    finally:
        print(json.dumps(out), flush=True)
        c.loop_stop()
        c.disconnect()


if __name__ == "__main__":
    main()
