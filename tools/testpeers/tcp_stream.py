#!/usr/bin/env python3
"""tcp_stream.py: move a deterministic byte stream over TCP and hash both ends (stdlib only).

  tcp_stream.py server --bind IP --port P --timeout S
      accepts one connection, reads to EOF, closes, prints
      `bytes=<n> sha256=<hex>` of what it received.
  tcp_stream.py client --connect IP --port P --bytes N --seed K --timeout S
      connects (retrying until the deadline while the server is not up yet),
      sends N pseudo-random bytes generated from the seed, half-closes,
      waits for the server to close, prints `bytes=<n> sha256=<hex>` of what
      it sent.

The stream is 64 KiB blocks, block i = SHAKE-256("weft-tcp-stream:<seed>:<i>")
truncated to 65536 bytes; the last block is cut to size. Same seed and size,
same bytes. Everything is bounded by --timeout (whole run); exit 1 on timeout
or error (still printing what was counted so far), 0 otherwise.
"""
import argparse
import hashlib
import socket
import sys
import time

BLOCK = 65536


def block(seed: int, i: int) -> bytes:
    return hashlib.shake_256(f"weft-tcp-stream:{seed}:{i}".encode()).digest(BLOCK)


def server(a) -> int:
    deadline = time.monotonic() + a.timeout
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(1)
    print(f"tcp_stream: listening {a.bind}:{a.port}", file=sys.stderr, flush=True)
    h = hashlib.sha256()
    n = 0
    rc = 0
    try:
        ls.settimeout(max(0.01, deadline - time.monotonic()))
        conn, peer = ls.accept()
        with conn:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("deadline")
                conn.settimeout(left)
                data = conn.recv(1 << 20)
                if not data:
                    break
                h.update(data)
                n += len(data)
    except (OSError, TimeoutError) as e:
        print(f"tcp_stream: server error: {e!r}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        ls.close()
    print(f"bytes={n} sha256={h.hexdigest()}", flush=True)
    return rc


def client(a) -> int:
    deadline = time.monotonic() + a.timeout
    h = hashlib.sha256()
    n = 0
    rc = 0
    s = None
    try:
        for attempt in range(10_000):  # bounded; the deadline ends it sooner
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connect deadline")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(min(left, 2.0))
            try:
                s.connect((a.connect, a.port))
                break
            except (ConnectionRefusedError, socket.timeout, OSError):
                s.close()
                s = None
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if s is None:
            raise TimeoutError("could not connect")
        i = 0
        while n < a.bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("send deadline")
            s.settimeout(left)
            chunk = block(a.seed, i)[: a.bytes - n]
            s.sendall(chunk)
            h.update(chunk)
            n += len(chunk)
            i += 1
        s.shutdown(socket.SHUT_WR)
        while True:  # wait for the server's close: it has read everything
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("close deadline")
            s.settimeout(left)
            if not s.recv(4096):
                break
    except (OSError, TimeoutError) as e:
        print(f"tcp_stream: client error: {e!r}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        if s is not None:
            s.close()
    print(f"bytes={n} sha256={h.hexdigest()}", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    sp = sub.add_parser("server", help="receive one stream")
    sp.add_argument("--bind", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--timeout", type=float, default=30.0)
    cp = sub.add_parser("client", help="send one stream")
    cp.add_argument("--connect", required=True)
    cp.add_argument("--port", type=int, required=True)
    cp.add_argument("--bytes", type=int, required=True)
    cp.add_argument("--seed", type=int, default=1)
    cp.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    return server(a) if a.role == "server" else client(a)


if __name__ == "__main__":
    sys.exit(main())
