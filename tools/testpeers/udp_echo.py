#!/usr/bin/env python3
"""udp_echo.py: UDP echo server and counting client (stdlib only).

  udp_echo.py server --bind IP --port P --timeout S
      echoes every datagram back to its sender for S seconds (or until
      SIGTERM/SIGINT), then prints `echoed=<n>`.
  udp_echo.py client --to IP:P --count N --size B --timeout S [--interval T]
      sends N numbered datagrams of B bytes (>= 12; header: magic, run id,
      sequence number), waits for the echoes until all came back or S seconds
      passed, prints `sent=N received=M` (M counts distinct sequence numbers
      of this run). Exit 0 if M == N, else 1.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

MAGIC = 0x57454654  # "WEFT"


def server(a) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"udp_echo: listening {a.bind}:{a.port}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + a.timeout
    n = 0
    while not stop:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            r, _, _ = select.select([s], [], [], min(left, 0.5))
        except InterruptedError:
            continue
        if r:
            data, peer = s.recvfrom(65535)
            try:
                s.sendto(data, peer)
                n += 1
            except OSError:
                pass
    s.close()
    print(f"echoed={n}", flush=True)
    return 0


def client(a) -> int:
    host, _, port = a.to.rpartition(":")
    if not host or not port.isdigit():
        print("udp_echo: --to must be IP:PORT", file=sys.stderr)
        return 2
    size = max(12, a.size)
    run_id = os.getpid() & 0xFFFFFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    dest = (host, int(port))
    deadline = time.monotonic() + a.timeout
    got = set()
    sent = 0

    def drain():
        while True:
            try:
                data = s.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) >= 12:
                m, rid, seq = struct.unpack("!III", data[:12])
                if m == MAGIC and rid == run_id and seq < a.count:
                    got.add(seq)

    pad = bytes((i & 0xFF) for i in range(size - 12))
    for seq in range(a.count):
        if time.monotonic() >= deadline:
            break
        try:
            s.sendto(struct.pack("!III", MAGIC, run_id, seq) + pad, dest)
            sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        drain()
        if a.interval > 0:
            time.sleep(a.interval)
    while len(got) < sent:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        select.select([s], [], [], min(left, 0.2))
        drain()
    s.close()
    print(f"sent={sent} received={len(got)}", flush=True)
    return 0 if sent == a.count and len(got) == sent else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    sp = sub.add_parser("server", help="echo datagrams")
    sp.add_argument("--bind", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--timeout", type=float, default=30.0)
    cp = sub.add_parser("client", help="send numbered datagrams and count echoes")
    cp.add_argument("--to", required=True)
    cp.add_argument("--count", type=int, default=10)
    cp.add_argument("--size", type=int, default=64)
    cp.add_argument("--timeout", type=float, default=10.0)
    cp.add_argument("--interval", type=float, default=0.001, help="seconds between sends (default 0.001)")
    a = ap.parse_args()
    return server(a) if a.role == "server" else client(a)


if __name__ == "__main__":
    sys.exit(main())
