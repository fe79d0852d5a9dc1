/// Why a packet was dropped. Counted per direction.
public enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    case tooShort, ipv6, notIPv4, badHeaderLength, badTotalLength, badChecksum, truncated,
         ttlExpired, noRoute, tooBig, unknownPeer, spoofedSource, notLocalDestination,
         badOffload, sendFailed, tunWriteFailed, tunQueueFull

    /// Kebab-case name used in logs and metrics, e.g. "no-route".
    public var description: String {
        switch self {
        case .tooShort: "too-short"
        case .ipv6: "ipv6"
        case .notIPv4: "not-ipv4"
        case .badHeaderLength: "bad-header-length"
        case .badTotalLength: "bad-total-length"
        case .badChecksum: "bad-checksum"
        case .truncated: "truncated"
        case .ttlExpired: "ttl-expired"
        case .noRoute: "no-route"
        case .tooBig: "too-big"
        case .unknownPeer: "unknown-peer"
        case .spoofedSource: "spoofed-source"
        case .notLocalDestination: "not-local-destination"
        case .badOffload: "bad-offload"
        case .sendFailed: "send-failed"
        case .tunWriteFailed: "tun-write-failed"
        // Counted by the kernel, not by Weft: packets for flannel0 that arrived while the
        // queue's ring (txqueuelen deep) was full, i.e. a sender faster than Weft (see
        // `TunDevice.kernelDrops`).
        case .tunQueueFull: "tun-queue-full"
        }
    }
}

/// Which way a packet travels through the forwarder.
public enum Direction: Int, CaseIterable, Sendable, CustomStringConvertible {
    case tunToUDP, udpToTun

    /// "tun→udp" or "udp→tun".
    public var description: String {
        switch self {
        case .tunToUDP: "tun→udp"
        case .udpToTun: "udp→tun"
        }
    }

    /// The label in metrics and in `weft status --json`: "tun_to_udp" or "udp_to_tun".
    public var metricName: String {
        switch self {
        case .tunToUDP: "tun_to_udp"
        case .udpToTun: "udp_to_tun"
        }
    }
}
