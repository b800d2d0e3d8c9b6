#!/usr/bin/env python3
"""Raw MQTT over TLS, byte by byte, for what real clients will not send.

Usage:
  mqtt_raw.py pubrec   HOST PORT CA USER PASS       v5 QoS 2 PUBLISH outside the ACL; prints the PUBREC (hex)
  mqtt_raw.py oversize HOST PORT CA USER PASS SIZE  v3.1.1 PUBLISH of SIZE bytes; prints closed/open
  mqtt_raw.py garbage  HOST PORT CA USER PASS       v3.1.1 then a malformed length; prints closed/open
  mqtt_raw.py stall    HOST PORT N SECONDS          N TCP connections that start a TLS handshake and stop;
                                                    prints {"opened": N, "closed_by_server": K} after SECONDS
Output is one JSON line.
"""
import json
import socket
import ssl
import sys
import time


def mqtt_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(version, client, user, password):
    flags = 0xC2  # username, password, clean session
    var = mqtt_str("MQTT") + bytes([version, flags]) + (60).to_bytes(2, "big")
    if version == 5:
        var += b"\x00"
    return packet(0x10, var + mqtt_str(client) + mqtt_str(user) + mqtt_str(password))


def tls_conn(host, port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((host, port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=host)


def read_frame(s):
    head = s.recv(1)
    if not head:
        return None
    n, shift = 0, 0
    while True:
        b = s.recv(1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return head + varint(n) + body


def closed_by_server(s, wait=5.0):
    s.settimeout(wait)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ssl.SSLError, ConnectionError):
        return True
    except socket.timeout:
        return False


def login(args, version):
    host, port, ca, user, password = args[0], int(args[1]), args[2], args[3], args[4]
    s = tls_conn(host, port, ca)
    s.sendall(connect(version, f"{user}-raw", user, password))
    ack = read_frame(s)
    if not ack or ack[0] != 0x20 or ack[3] != 0:
        raise SystemExit(json.dumps({"error": "connect refused", "connack": ack.hex() if ack else None}))
    return s, user


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "pubrec":
        s, _ = login(args, 5)
        body = mqtt_str("devices/other/x") + (7).to_bytes(2, "big") + b"\x00" + b"raw"
        s.sendall(packet(0x34, body))
        print(json.dumps({"pubrec": read_frame(s).hex()}))
    elif mode == "oversize":
        s, user = login(args, 4)
        size = int(args[5])
        body = mqtt_str(f"devices/{user}/big") + b"x" * size
        try:
            s.sendall(packet(0x30, body))
        except (ssl.SSLError, ConnectionError):
            pass
        print(json.dumps({"state": "closed" if closed_by_server(s) else "open"}))
    elif mode == "garbage":
        s, _ = login(args, 4)
        s.sendall(b"\x30\xff\xff\xff\xff\x01")
        print(json.dumps({"state": "closed" if closed_by_server(s) else "open"}))
    elif mode == "stall":
        host, port, n, secs = args[0], int(args[1]), int(args[2]), float(args[3])
        socks = []
        for _ in range(n):
            c = socket.create_connection((host, port), timeout=5)
            c.sendall(b"\x16\x03\x01\x02\x00\x01")  # the first bytes of a ClientHello, then nothing
            socks.append(c)
        print(json.dumps({"phase": "holding", "opened": len(socks)}), flush=True)
        time.sleep(secs)
        closed = sum(1 for c in socks if closed_by_server(c, 0.2))
        print(json.dumps({"opened": len(socks), "closed_by_server": closed}), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
