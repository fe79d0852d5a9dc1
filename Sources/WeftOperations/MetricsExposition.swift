import Prometheus

/// /metrics: a node's status in Prometheus' text format.
///
/// Rendered from a fresh `NodeStatus` on every scrape into a registry of its own, so the
/// counters are the data path's totals at that moment and nothing on the packet path ever
/// touches a metrics object.
public enum MetricsExposition {
    private static func name(_ metric: String, unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "weft", metricName: metric, unitName: unit, helpText: help)
    }

    static var forwardedPackets: MetricNameDescriptor { name("forwarded_packets", unit: "total", "Packets forwarded, by direction (tun_to_udp: from flannel0 to a peer).") }
    static var forwardedBytes: MetricNameDescriptor { name("forwarded_bytes", unit: "total", "Bytes of inner IPv4 packets forwarded, by direction.") }
    static var droppedPackets: MetricNameDescriptor {
        name("dropped_packets", unit: "total", "Packets dropped, by direction and reason (see the README's forwarding rules); a reason appears once it has counted one.")
    }
    static var icmpSent: MetricNameDescriptor { name("icmp_sent", unit: "total", "ICMP errors Weft generated (time exceeded, unreachable, fragmentation needed).") }
    static var peers: MetricNameDescriptor { name("peers", unit: "", "Peer subnets routed.") }
    static var workers: MetricNameDescriptor { name("workers", unit: "", "Data-path lanes (TUN queue and socket pairs).") }
    static var startTime: MetricNameDescriptor { name("start_time", unit: "seconds", "When forwarding started, in seconds since 1970.") }
    static var forwarding: MetricNameDescriptor { name("forwarding", unit: "", "1 while the data path runs.") }
    static var ready: MetricNameDescriptor { name("ready", unit: "", "1 when /readyz answers 200.") }
    static var leaseExpiry: MetricNameDescriptor { name("lease_expiry_time", unit: "seconds", "When this node's lease expires unless renewed, in seconds since 1970.") }
    static var registryReachable: MetricNameDescriptor {
        name("registry_reachable", unit: "", "1 while the subnet registry answers; 0 during an outage (forwarding goes on with the last routes).")
    }
    static var registryFailures: MetricNameDescriptor { name("registry_failed_requests", unit: "total", "Registry requests that failed (each retry of an outage counts).") }
    static var registrySkipped: MetricNameDescriptor {
        name("registry_skipped_entries", unit: "total", "Registry entries skipped as not valid leases, each time a listing or an event carried one (the log names each).")
    }

    public static func text(_ status: NodeStatus, now: Double) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        let traffic = status.traffic
        for direction in traffic.packets.keys.sorted() {
            registry.makeCounter(descriptor: forwardedPackets, labels: [("direction", direction)])
                .increment(by: Int64(traffic.packets[direction] ?? 0))
            registry.makeCounter(descriptor: forwardedBytes, labels: [("direction", direction)])
                .increment(by: Int64(traffic.bytes[direction] ?? 0))
        }
        for direction in traffic.drops.keys.sorted() {
            for (reason, count) in (traffic.drops[direction] ?? [:]).sorted(by: { $0.key < $1.key }) {
                registry.makeCounter(descriptor: droppedPackets, labels: [("direction", direction), ("reason", reason)])
                    .increment(by: Int64(count))
            }
        }
        registry.makeCounter(descriptor: icmpSent).increment(by: Int64(traffic.icmpSent))
        registry.makeGauge(descriptor: peers).set(to: Double(status.peers.count))
        registry.makeGauge(descriptor: workers).set(to: Double(status.workers))
        registry.makeGauge(descriptor: startTime).set(to: status.startedAt)
        registry.makeGauge(descriptor: forwarding).set(to: status.forwarding ? 1.0 : 0.0)
        registry.makeGauge(descriptor: ready).set(to: status.notReadyReason(now: now) == nil ? 1.0 : 0.0)
        if let lease = status.lease {
            registry.makeGauge(descriptor: leaseExpiry, labels: [("subnet", lease.subnet)]).set(to: lease.expiresAt)
        }
        if let registryStatus = status.registry {
            registry.makeGauge(descriptor: registryReachable, labels: [("registry", registryStatus.kind)])
                .set(to: registryStatus.reachable ? 1.0 : 0.0)
            registry.makeCounter(descriptor: registryFailures, labels: [("registry", registryStatus.kind)])
                .increment(by: Int64(registryStatus.failedRequests))
            registry.makeCounter(descriptor: registrySkipped, labels: [("registry", registryStatus.kind)])
                .increment(by: Int64(registryStatus.skippedEntries))
        }
        return registry.emitToBuffer()
    }
}
