#!/usr/bin/env python3
"""The lab's "internet" servers: real TCP listeners, dual-stack, one thread each.

Port 80 answers HTTP; every other port sends a telnet-style login banner.
Each accepted connection is logged as `accept <port> <peer-ip>` (flushed), so
tests can count what actually reached the internet.
Usage: servers.py LOGFILE PORT [PORT ...]
"""
import socket
import sys
import threading

LOG_LOCK = threading.Lock()


def log(fh, line):
    with LOG_LOCK:
        fh.write(line + "\n")
        fh.flush()


def handle(conn, port):
    try:
        conn.settimeout(5)
        if port == 80:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 9\r\n\r\nmoat-lab\n")
        else:
            conn.sendall(b"\xff\xfd\x18login: ")
    except OSError:
        pass
    finally:
        conn.close()


def listen(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    return s


def serve(s, port, fh):
    while True:
        conn, peer = s.accept()
        ip = peer[0].removeprefix("::ffff:")
        log(fh, f"accept {port} {ip}")
        threading.Thread(target=handle, args=(conn, port), daemon=True).start()


def main():
    fh = open(sys.argv[1], "a", encoding="ascii")
    ports = [int(p) for p in sys.argv[2:]]
    socks = [(listen(p), p) for p in ports]  # bound before "ready" is logged
    threads = [threading.Thread(target=serve, args=(s, p, fh), daemon=True) for s, p in socks]
    for t in threads:
        t.start()
    log(fh, "ready")
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
