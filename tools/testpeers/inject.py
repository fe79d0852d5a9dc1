#!/usr/bin/env python3
"""inject.py: send crafted flannel-udp datagrams for negative tests (stdlib only).

  inject.py --from-ip A [--from-port N] --to 198.18.0.1:8285 \\
            --kind garbage|spoofed|valid --count N [--inner-src X --inner-dst Y]

Kinds:
  garbage  cycles through malformed payloads: random bytes (>= 20, not IPv4),
           short (1..19 bytes), bad IPv4 header checksum, wrong total length
           (tot_len larger than the datagram), IPv6-version packet, bad IHL (< 5)
  valid    a well-formed inner IPv4 ICMP echo request (correct IP and ICMP
           checksums), TTL 64, --inner-src -> --inner-dst
           (defaults 10.244.2.2 -> 10.244.1.2)
  spoofed  the same well-formed packet, with a source that belongs to no
           peer by default (10.244.99.9 -> 10.244.1.2); pick any with --inner-*

The socket binds --from-ip:--from-port (port 0 = any), so --from-ip must exist
in the namespace it runs in. Prints one line: kind, count sent, per-kind counts.
"""
import argparse
import ipaddress
import os
import random
import socket
import struct
import sys
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp_echo(src: str, dst: str, ident: int, seq: int, ttl: int = 64, payload_len: int = 56) -> bytes:
    payload = bytes((i & 0xFF) for i in range(payload_len))
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    total = 20 + len(icmp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, (ident + seq) & 0xFFFF, 0x4000, ttl, 1, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + icmp


GARBAGE_KINDS = ["random", "short", "badcsum", "badlen", "ipv6", "badihl"]


def garbage(kind: str, i: int, src: str, dst: str, rng: random.Random) -> bytes:
    if kind == "random":
        b = bytearray(rng.randbytes(rng.randint(20, 200)))
        b[0] = (b[0] & 0x0F) | (rng.choice([0, 1, 2, 3, 5, 7, 8, 15]) << 4)  # never version 4
        return bytes(b)
    if kind == "short":
        return rng.randbytes(1 + i % 19)
    pkt = bytearray(icmp_echo(src, dst, 0x4A4A, i))
    if kind == "badcsum":
        pkt[10] ^= 0x5A
        return bytes(pkt)
    if kind == "badlen":
        struct.pack_into("!H", pkt, 2, len(pkt) + 100)  # claims more than is there
        struct.pack_into("!H", pkt, 10, 0)
        struct.pack_into("!H", pkt, 10, csum(bytes(pkt[:20])))
        return bytes(pkt)
    if kind == "badihl":
        pkt[0] = 0x43
        struct.pack_into("!H", pkt, 10, 0)
        struct.pack_into("!H", pkt, 10, csum(bytes(pkt[:20])))
        return bytes(pkt)
    if kind == "ipv6":
        payload = rng.randbytes(16)
        return (struct.pack("!IHBB", 6 << 28, len(payload), 59, 64)
                + socket.inet_pton(socket.AF_INET6, "fd00::1")
                + socket.inet_pton(socket.AF_INET6, "fd00::2") + payload)
    raise ValueError(kind)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-ip", required=True, help="local IPv4 to bind (must exist here)")
    ap.add_argument("--from-port", type=int, default=0, help="local port (default 0 = any)")
    ap.add_argument("--to", required=True, help="destination IP:PORT, e.g. 198.18.0.1:8285")
    ap.add_argument("--kind", required=True, choices=["garbage", "spoofed", "valid"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--inner-src", default=None)
    ap.add_argument("--inner-dst", default="10.244.1.2")
    ap.add_argument("--interval", type=float, default=0.001, help="seconds between datagrams (default 0.001)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed for garbage (default 1)")
    args = ap.parse_args()

    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--to must be IP:PORT")
    if args.count < 0 or args.count > 1_000_000:
        ap.error("--count out of range")
    src = args.inner_src or ("10.244.99.9" if args.kind == "spoofed" else "10.244.2.2")
    dst = args.inner_dst
    rng = random.Random(args.seed)

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.from_ip, args.from_port))
    per = {}
    sent = 0
    for i in range(args.count):
        if args.kind == "garbage":
            k = GARBAGE_KINDS[i % len(GARBAGE_KINDS)]
            data = garbage(k, i, src, dst, rng)
        else:
            k = args.kind
            data = icmp_echo(src, dst, os.getpid() & 0xFFFF, i + 1)
        s.sendto(data, (host, int(port)))
        per[k] = per.get(k, 0) + 1
        sent += 1
        if args.interval > 0:
            time.sleep(args.interval)
    lport = s.getsockname()[1]
    s.close()
    print(f"inject: kind={args.kind} sent={sent} from={args.from_ip}:{lport} to={host}:{port} "
          f"inner={src}->{dst} " + " ".join(f"{k}={v}" for k, v in per.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
