#!/usr/bin/env python3
"""The lab's "internet" servers: real TCP listeners, dual-stack, one thread each.

Port 80 answers HTTP; port 7 echoes (long-lived connections); a port given as `tls:PORT` answers HTTPS with the
certificate in CERTDIR (cert.pem, key.pem); every other port sends a
telnet-style negotiation and login banner. Each accepted connection is logged
as `accept <port> <peer-ip>` (flushed), so tests can count what actually
reached the internet.
Usage: servers.py LOGFILE CERTDIR PORT|tls:PORT [...]
"""
import os
import socket
import ssl
import sys
import threading

HTTP_REPLY = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 9\r\n\r\nmoat-lab\n")

LOG_LOCK = threading.Lock()


def log(fh, line):
    with LOG_LOCK:
        fh.write(line + "\n")
        fh.flush()


def handle(conn, port, tls):
    try:
        conn.settimeout(5)
        if port == 7:
            conn.settimeout(30)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)
        elif tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
            conn.recv(4096)
            conn.sendall(HTTP_REPLY)
        elif port == 80:
            conn.recv(4096)
            conn.sendall(HTTP_REPLY)
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


def serve(s, port, tls, fh):
    while True:
        conn, peer = s.accept()
        ip = peer[0].removeprefix("::ffff:")
        log(fh, f"accept {port} {ip}")
        threading.Thread(target=handle, args=(conn, port, tls), daemon=True).start()


def main():
    fh = open(sys.argv[1], "a", encoding="ascii")
    certdir = sys.argv[2]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
    specs = []
    for arg in sys.argv[3:]:
        is_tls = arg.startswith("tls:")
        specs.append((int(arg.removeprefix("tls:")), tls if is_tls else None))
    socks = [(listen(p), p, t) for p, t in specs]  # bound before "ready" is logged
    threads = [threading.Thread(target=serve, args=(s, p, t, fh), daemon=True) for s, p, t in socks]
    for t in threads:
        t.start()
    log(fh, "ready")
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
