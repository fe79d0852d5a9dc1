#!/usr/bin/env python3
"""flannel_peer.py: an independent flannel `udp` backend peer (Python 3 stdlib only).

Implements flannel's udp wire format (one IPv4 packet per UDP datagram, port
8285, no header) and its TTL rule (decrement, incremental checksum update),
without any Weft code, so that Weft can be tested against it:

  * opens /dev/net/tun (TUNSETIFF, IFF_TUN|IFF_NO_PI), names it --tun
    (default flannel0), gives it <subnet network>/32, MTU 1472, up, and adds
    the route <network> dev <tun>;
  * binds UDP <iface-ip>:<port> (default 8285): source port = destination port;
  * TUN -> UDP: the inner IPv4 packet is sent as the whole UDP payload to
    <peer ip>:<port> of the peer whose subnet holds the destination;
  * UDP -> TUN: each datagram's payload is written to the TUN as is
    (flannel checks nothing about the sender);
  * both directions decrement the inner TTL by one with flannel's exact
    checksum patch (bytes 10-11 read as little-endian u16 c; c += 2 if
    c >= 0xFFFE else 1; mod 2^16; written back little-endian). Packets whose
    TTL is <= 1 on arrival are dropped.

Runs for --duration seconds (default 60) or until SIGTERM/SIGINT, then prints
its counters on one line and exits 0. Closing the TUN removes it and its route.
Must run as root inside the node's network namespace, e.g.
  tools/lab exec --prefix P nodeB -- timeout 70 tools/testpeers/flannel_peer.py \\
      --iface-ip 198.18.0.2 --subnet 10.244.2.0/24 --network 10.244.0.0/16 \\
      --peer 10.244.1.0/24=198.18.0.1
"""
import argparse
import errno
import fcntl
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def patch_ttl(pkt: bytearray) -> bool:
    """Decrement the TTL of an IPv4 packet in place, flannel style.

    Returns False (drop) when the packet is too short or its TTL is <= 1."""
    if len(pkt) < 20:
        return False
    ttl = pkt[8]
    if ttl <= 1:
        return False
    pkt[8] = ttl - 1
    c = pkt[10] | (pkt[11] << 8)  # little-endian u16, as flannel's C code on amd64
    c = (c + (2 if c >= 0xFFFE else 1)) & 0xFFFF
    pkt[10] = c & 0xFF
    pkt[11] = c >> 8
    return True


def parse_peer(text: str):
    try:
        net, ip = text.split("=", 1)
        return ipaddress.IPv4Network(net, strict=True), str(ipaddress.IPv4Address(ip))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad --peer '{text}': {e} (want SUBNET=IP)")


def run(cmd):
    subprocess.run(cmd, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--iface-ip", required=True, help="underlay IPv4 to bind (e.g. 198.18.0.2)")
    ap.add_argument("--subnet", required=True, type=ipaddress.IPv4Network, help="own subnet (e.g. 10.244.2.0/24)")
    ap.add_argument("--network", required=True, type=ipaddress.IPv4Network, help="overlay network (e.g. 10.244.0.0/16)")
    ap.add_argument("--peer", action="append", type=parse_peer, default=[], metavar="SUBNET=IP",
                    help="remote subnet and its underlay IP; repeatable")
    ap.add_argument("--port", type=int, default=8285, help="UDP port, both ends (default 8285)")
    ap.add_argument("--tun", default="flannel0", help="TUN device name (default flannel0)")
    ap.add_argument("--mtu", type=int, default=1472, help="TUN MTU (default 1472)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    args = ap.parse_args()

    peers = sorted(args.peer, key=lambda p: p[0].prefixlen, reverse=True)

    tun = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH22x", args.tun.encode(), IFF_TUN | IFF_NO_PI)
    ifr = fcntl.ioctl(tun, TUNSETIFF, ifr)
    name = ifr[:16].rstrip(b"\0").decode()
    os.set_blocking(tun, False)

    run(["ip", "addr", "add", f"{args.subnet.network_address}/32", "dev", name])
    run(["ip", "link", "set", "dev", name, "mtu", str(args.mtu), "up"])
    run(["ip", "route", "replace", str(args.network), "dev", name])

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.iface_ip, args.port))
    sock.setblocking(False)

    c = dict(tun_rx=0, udp_tx=0, udp_rx=0, tun_tx=0, drop_ttl=0, drop_short=0,
             drop_noroute=0, drop_notv4=0, send_err=0, write_err=0)
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"flannel_peer: ready tun={name} bind={args.iface_ip}:{args.port} subnet={args.subnet} "
          f"network={args.network} peers={','.join(f'{n}={ip}' for n, ip in peers)}", flush=True)

    deadline = time.monotonic() + args.duration
    while not stop:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            r, _, _ = select.select([tun, sock], [], [], min(left, 0.5))
        except InterruptedError:
            continue
        if tun in r:
            for _ in range(256):  # bounded burst per wake-up
                try:
                    pkt = bytearray(os.read(tun, 65535))
                except BlockingIOError:
                    break
                c["tun_rx"] += 1
                if len(pkt) < 20:
                    c["drop_short"] += 1
                    continue
                if pkt[0] >> 4 != 4:
                    c["drop_notv4"] += 1
                    continue
                dst = ipaddress.IPv4Address(bytes(pkt[16:20]))
                hop = next((ip for net, ip in peers if dst in net), None)
                if hop is None:
                    c["drop_noroute"] += 1
                    continue
                if not patch_ttl(pkt):
                    c["drop_ttl"] += 1
                    continue
                try:
                    sock.sendto(pkt, (hop, args.port))
                    c["udp_tx"] += 1
                except OSError:
                    c["send_err"] += 1
        if sock in r:
            for _ in range(256):
                try:
                    data, _src = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                c["udp_rx"] += 1
                pkt = bytearray(data)
                if len(pkt) < 20:
                    c["drop_short"] += 1
                    continue
                if not patch_ttl(pkt):
                    c["drop_ttl"] += 1
                    continue
                try:
                    os.write(tun, pkt)
                    c["tun_tx"] += 1
                except OSError:
                    c["write_err"] += 1

    sock.close()
    os.close(tun)
    print("flannel_peer: " + " ".join(f"{k}={v}" for k, v in c.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
