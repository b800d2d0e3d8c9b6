#!/usr/bin/env python3
"""Sends UDP datagrams with a forged IPv4 source address.
Usage: spoof_udp.py SRC DST DPORT"""
import socket
import struct
import sys

src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
payload = b"spoofed"
udp = struct.pack("!HHHH", 40123, dport, 8 + len(payload), 0) + payload
total = 20 + len(udp)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    s.sendto(ip + udp, (dst, 0))
