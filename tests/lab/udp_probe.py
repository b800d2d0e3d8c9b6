#!/usr/bin/env python3
"""UDP probes for measuring when a verdict flips.
  udp_probe.py send HOST PORT SECONDS INTERVAL_MS   one datagram per interval
  udp_probe.py recv PORT LOGFILE SECONDS            logs arrival times (epoch s)
"""
import socket
import sys
import time


def send(host, port, seconds, interval_ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.time() + seconds
    seq = 0
    while time.time() < end:
        try:
            s.sendto(str(seq).encode(), (host, port))
        except OSError:
            pass
        seq += 1
        time.sleep(interval_ms / 1000.0)


def recv(port, log, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    end = time.time() + seconds
    with open(log, "w", encoding="ascii") as fh:
        fh.write("ready\n")
        fh.flush()
        while time.time() < end:
            try:
                s.recv(64)
                fh.write(f"{time.time():.6f}\n")
            except socket.timeout:
                pass
            fh.flush()


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        recv(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
