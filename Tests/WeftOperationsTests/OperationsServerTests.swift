import Foundation
import Glibc
import Synchronization
import Testing
import WeftCore
import WeftOperations
import WeftTestSupport

/// The operations endpoints over a real Unix socket, as `weft status` and curl reach them.
@Suite struct OperationsServerTests {
    static func status(forwarding: Bool = true, leaseExpiresAt: Double? = nil) -> NodeStatus {
        let snapshot = CounterSnapshot(
            packets: [.tunToUDP: 1200, .udpToTun: 1190], bytes: [.tunToUDP: 1_500_000, .udpToTun: 1_420_000],
            drops: [.udpToTun: [.unknownPeer: 5, .badChecksum: 2]], icmpSent: 3)
        return NodeStatus(
            network: "10.244.0.0/16", subnet: "10.244.1.0/24", tunName: "flannel0", workers: 2, startedAt: 1_796_000_000,
            forwarding: forwarding, lease: leaseExpiresAt.map { .init(subnet: "10.244.1.0/24", expiresAt: $0) },
            registry: leaseExpiresAt.map { _ in .init(kind: "etcd", reachable: false, failedRequests: 7, skippedEntries: 2) },
            peers: [.init(subnet: "10.244.2.0/24", publicIP: "198.18.0.2")], traffic: .init(snapshot))
    }

    /// A generous deadline: the suite runs in parallel with tests that keep both cores busy, and
    /// the concurrency pool may get to the response seconds late.
    func get(_ path: String, socketPath: String) async throws -> StatusClient.Response {
        try await StatusClient.get(path, socketPath: socketPath, deadline: .seconds(60))
    }

    /// Holds what the server reports; tests change it between requests.
    final class Board: Sendable {
        let current = Mutex<NodeStatus?>(nil)
    }

    func withServer(_ board: Board, _ body: (String) async throws -> Void) async throws {
        let directory = try makeTemporaryDirectory("weft-operations")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/run/status.sock"
        let server = try await OperationsServer.start([.unix(path: path)]) { board.current.withLock { $0 } }
        do {
            try await body(path)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
        #expect(access(path, F_OK) != 0, "stop removes the socket file")
    }

    @Test("healthz answers from the start; readyz, metrics and status wait for the node")
    func startingNode() async throws {
        try await withServer(Board()) { path in
            let health = try await get("/healthz", socketPath: path)
            #expect(health.status == 200)
            for endpoint in ["/readyz", "/metrics", "/status"] {
                let response = try await get(endpoint, socketPath: path)
                #expect(response.status == 503, "\(endpoint)")
                #expect(String(decoding: response.body, as: UTF8.self).contains("starting"), "\(endpoint)")
            }
            #expect(try await get("/nope", socketPath: path).status == 404)
        }
    }

    @Test("readyz follows the data path and the lease's expiry")
    func readiness() async throws {
        let board = Board()
        try await withServer(board) { path in
            let now = Date().timeIntervalSince1970
            board.current.withLock { $0 = Self.status(leaseExpiresAt: now + 3600) }
            #expect(try await get("/readyz", socketPath: path).status == 200)
            board.current.withLock { $0 = Self.status(leaseExpiresAt: now - 5) }
            let expired = try await get("/readyz", socketPath: path)
            #expect(expired.status == 503)
            #expect(String(decoding: expired.body, as: UTF8.self).hasPrefix("not ready: lease 10.244.1.0/24 expired"))
            board.current.withLock { $0 = Self.status(forwarding: false) }
            let stopped = try await get("/readyz", socketPath: path)
            #expect(String(decoding: stopped.body, as: UTF8.self) == "not ready: the data path is not running\n")
        }
    }

    @Test("/status is the node's status as JSON, read back unchanged")
    func statusJSON() async throws {
        let board = Board()
        let expected = Self.status(leaseExpiresAt: 1_796_086_400)
        board.current.withLock { $0 = expected }
        try await withServer(board) { path in
            let response = try await get("/status", socketPath: path)
            #expect(response.status == 200)
            #expect(try NodeStatus.decode(response.body) == expected)
        }
    }

    @Test("/metrics carries every counter by direction and reason, in Prometheus text")
    func metrics() async throws {
        let board = Board()
        board.current.withLock { $0 = Self.status(leaseExpiresAt: 1_796_086_400) }
        try await withServer(board) { path in
            let response = try await get("/metrics", socketPath: path)
            #expect(response.status == 200)
            let samples = Set(String(decoding: response.body, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
            let expected: Set<String> = [
                #"weft_forwarded_packets_total{direction="tun_to_udp"} 1200"#,
                #"weft_forwarded_packets_total{direction="udp_to_tun"} 1190"#,
                #"weft_forwarded_bytes_total{direction="tun_to_udp"} 1500000"#,
                #"weft_forwarded_bytes_total{direction="udp_to_tun"} 1420000"#,
                #"weft_dropped_packets_total{direction="udp_to_tun",reason="unknown-peer"} 5"#,
                #"weft_dropped_packets_total{direction="udp_to_tun",reason="bad-checksum"} 2"#,
                "weft_icmp_sent_total 3",
                "weft_peers 1.0",
                "weft_workers 2.0",
                "weft_forwarding 1.0",
                "weft_ready 0.0",
                "weft_start_time_seconds 1796000000.0",
                #"weft_lease_expiry_time_seconds{subnet="10.244.1.0/24"} 1796086400.0"#,
                #"weft_registry_reachable{registry="etcd"} 0.0"#,
                #"weft_registry_failed_requests_total{registry="etcd"} 7"#,
                #"weft_registry_skipped_entries_total{registry="etcd"} 2"#,
            ]
            #expect(samples == expected)
        }
    }

    @Test("a socket left by a killed node is replaced; one a live node answers on is refused")
    func socketOwnership() async throws {
        let board = Board()
        try await withServer(board) { path in
            await #expect(throws: OperationsError.self) {
                _ = try await OperationsServer.start([.unix(path: path)]) { nil }
            }
            let health = try await get("/healthz", socketPath: path)
            #expect(health.status == 200, "the first node keeps its socket")
        }
        let directory = try makeTemporaryDirectory("weft-operations-stale")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stale = directory + "/status.sock"
        // A bound socket whose owner is gone: the file stays, nobody accepts.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in stale.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        close(fd)
        let server = try await OperationsServer.start([.unix(path: stale)]) { nil }
        #expect(try await get("/healthz", socketPath: stale).status == 200)
        await server.stop()
    }

    @Test("a path that is not a socket is never removed")
    func notASocket() async throws {
        let directory = try makeTemporaryDirectory("weft-operations-file")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/status.sock"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        await #expect(throws: OperationsError.self) {
            _ = try await OperationsServer.start([.unix(path: path)]) { nil }
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }
}
