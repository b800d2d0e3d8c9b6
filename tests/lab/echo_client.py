#!/usr/bin/env python3
"""Holds one TCP connection to an echo server and does a round trip every
0.1 s for SECONDS, logging the time of each successful one to LOGFILE. Tests
use it to see whether an established connection survives ruleset changes.
Usage: echo_client.py HOST PORT SECONDS LOGFILE
"""
import socket
import sys
import time


def main():
    host, port, seconds, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    end = time.time() + seconds
    with open(log, "a", encoding="ascii") as fh, socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(1)
        while time.time() < end:
            try:
                s.sendall(b"x\n")
                if s.recv(16):
                    fh.write(f"{time.time():.3f}\n")
                    fh.flush()
            except OSError as e:
                fh.write(f"error {e}\n")
                fh.flush()
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
