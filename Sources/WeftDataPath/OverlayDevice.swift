import Glibc
import WeftCore
import WeftLinux

/// flannel0 as flanneld's udp backend sets it up (its `initTun`/`configureIface`: the subnet's
/// network address as a /32, MTU underlay − 28, a route for the whole overlay), through rtnetlink.
public enum OverlayDevice {
    /// flannel's `encapOverhead`: the outer IPv4 and UDP headers.
    public static let encapsulationOverhead = 28

    /// Packets each flannel0 queue holds for its lane (txqueuelen; the kernel's default is 500).
    /// A TUN cannot push back on a sending pod: the driver drops what does not fit its queue.
    /// When a lane is briefly off its core (two shared vCPUs: a UDP flood of 64-byte packets
    /// lost 15 % with 500, 4 % with 1000 and 0.5 % with 2000 in one `weft bench` run each), a
    /// deeper queue absorbs it: 2048 full-size packets are ~3 MB and ~20 ms at 100 kpps. (TCP
    /// super-packets are bounded by the sending socket's window, not by the queue; TCP filled
    /// no queue of 500 in the lab.)
    public static let queueLength = 2048

    /// The largest inner packet over an underlay of `underlayMTU`: flannel's MTU − 28, capped
    /// at what one UDP datagram carries.
    public static func pathMTU(underlayMTU: Int) -> Int {
        min(underlayMTU - encapsulationOverhead, ForwardingPolicy.largestPathMTU)
    }

    /// Gives a TUN opened with `TunDevice.open` its `<subnet network>/32`, MTU
    /// `pathMTU(underlayMTU:)`, `queueLength`, brings it up and routes the whole overlay `network` to it, as
    /// flanneld does. Closing the device removes all of it.
    ///
    /// With offloads (the TUN opened with them) it hands over TCP super-packets and takes them
    /// back (virtio-net header, TSO); this is invisible on the wire, where every datagram still
    /// carries one packet.
    public static func configure(_ tun: TunDevice, network: IPv4Prefix, subnet: IPv4Prefix, underlayMTU: Int) throws {
        // The pod network is IPv4 only: without IPv6 on flannel0 the kernel sends it no router
        // solicitations or MLD reports, which would only be dropped and counted as `ipv6`. A
        // kernel without IPv6 has no such setting, and nothing to turn off.
        do {
            try Sysctl.set("net/ipv6/conf/\(tun.name)/disable_ipv6", to: "1")
        } catch {
            if error.errno != ENOENT { throw error }
        }
        let netlink = try RouteNetlink()
        defer { netlink.close() }
        let index = tun.interfaceIndex
        // /32, not the network prefix: flannel's PR #941 (the zeroth subnet looked like broadcast).
        try netlink.addAddress(subnet.network, prefixLength: 32, interfaceIndex: index)
        try netlink.setLink(index: index, up: true, mtu: pathMTU(underlayMTU: underlayMTU), transmitQueueLength: queueLength)
        try netlink.addRoute(network, interfaceIndex: index)
        // The ICMP errors Weft writes into the TUN come from the TUN's own address; without
        // accept_local the kernel drops them as martians, which made flannel's net-unreachable errors
        // undeliverable.
        try Sysctl.set("net/ipv4/conf/\(tun.name)/accept_local", to: "1")
    }
}
