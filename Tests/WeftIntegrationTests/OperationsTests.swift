import Foundation
import Testing
import WeftCore
import WeftTestSupport

extension NamespaceTests {
/// What an operator sees of running nodes: `weft status`, and /healthz, /readyz and /metrics
/// scraped over HTTP from inside the node's namespace, while traffic and garbage flow.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces, Comment(rawValue: Environment.missingForNamespaces ?? "")))
struct OperationsTests {
    /// GET over loopback TCP inside `node`'s namespace with Python's own HTTP client, so the
    /// server is checked by a client that is not Weft's: "STATUS\nBODY".
    func httpGet(_ lab: Lab, _ node: String, _ path: String) throws -> (status: Int, body: String) {
        let script = """
            import sys, urllib.request, urllib.error
            try:
                r = urllib.request.urlopen("http://127.0.0.1:8081\(path)", timeout=5); print(r.status); print(r.read().decode())
            except urllib.error.HTTPError as e:
                print(e.code); print(e.read().decode())
            """
        let result = try lab.exec(node, ["python3", "-c", script], timeout: 20)
        let lines = result.output.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        return (Int(lines.first ?? "") ?? -1, lines.count > 1 ? String(lines[1]).trimmingCharacters(in: .whitespacesAndNewlines) : "")
    }

    /// The value of one sample line of /metrics, e.g. `weft_peers` or
    /// `weft_dropped_packets_total{direction="udp_to_tun",reason="too-short"}`.
    func sample(_ metrics: String, _ name: String) -> Double? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test("status, health, readiness and metrics of two leasing nodes follow the traffic and the garbage", arguments: Lab.Registry.available)
    func scrapedDuringTraffic(registry: Lab.Registry) throws {
        let lab = try Lab(nodes: 2)
        if registry == .etcd { _ = try lab.startEtcd() }
        let weftA = try lab.startWeft("nodeA", try lab.registryArguments(node: 1, registry: registry) + ["--healthz-port", "8081"])
        let weftB = try lab.startWeft("nodeB", try lab.registryArguments(node: 2, registry: registry) + ["--healthz-port", "8081"])
        #expect(lab.waitForLog(weftA, containing: "serving /healthz, /readyz, /metrics and /status on unix:/run/weft/status-netns-", seconds: 5), "\(weftA.errorOutput)")
        #expect(lab.waitForLog(weftA, containing: "peers changed: 1 route(s)", seconds: 5), "\(weftA.errorOutput)")

        let health = try httpGet(lab, "nodeB", "/healthz")
        #expect(health.status == 200, "\(health)")
        let ready = try httpGet(lab, "nodeB", "/readyz")
        #expect(ready.status == 200 && ready.body == "ready", "\(ready)")

        let before = try httpGet(lab, "nodeA", "/metrics").body
        let ping = try lab.ping(from: "podA", "10.244.2.2", count: 5, extra: ["-i", "0.2"])
        #expect(ping.status == 0, "\(ping)")
        let after = try httpGet(lab, "nodeA", "/metrics").body
        let sent = #"weft_forwarded_packets_total{direction="tun_to_udp"}"#, received = #"weft_forwarded_packets_total{direction="udp_to_tun"}"#
        #expect((sample(after, sent) ?? 0) - (sample(before, sent) ?? 0) >= 5, "\(after)")
        #expect((sample(after, received) ?? 0) - (sample(before, received) ?? 0) >= 5, "\(after)")
        #expect(sample(after, "weft_peers") == 1)
        #expect(sample(after, "weft_ready") == 1)
        #expect(sample(after, #"weft_registry_reachable{registry="\#(registry)"}"#) == 1, "\(after)")
        #expect((sample(after, #"weft_lease_expiry_time_seconds{subnet="10.244.1.0/24"}"#) ?? 0) > Date().timeIntervalSince1970 + 23 * 3600, "\(after)")

        // Garbage from node A's own address (a known peer): 7 datagrams too short to hold an
        // IPv4 header and 4 that hold no IPv4 packet, each counted by its reason on node B.
        let garbage = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.18.0.1", 0))
            for _ in range(7): s.sendto(b"hello", ("198.18.0.2", 8285))
            for _ in range(4): s.sendto(b"\\x60" + bytes(39), ("198.18.0.2", 8285))
            """
        #expect(try lab.exec("nodeA", ["python3", "-c", garbage]).status == 0)
        usleep(300_000)
        let metricsB = try httpGet(lab, "nodeB", "/metrics").body
        #expect(sample(metricsB, #"weft_dropped_packets_total{direction="udp_to_tun",reason="too-short"}"#) == 7, "\(metricsB)")
        #expect(sample(metricsB, #"weft_dropped_packets_total{direction="udp_to_tun",reason="ipv6"}"#) == 4, "\(metricsB)")

        // weft status in node B's namespace finds node B by itself, and agrees with /metrics.
        let status = try lab.exec("nodeB", [Environment.weftBinary, "status"])
        #expect(status.status == 0, "\(status)")
        let lines = status.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("node 10.244.2.0/24 in 10.244.0.0/16 on flannel0, 2 worker(s), up ") == true, "\(status)")
        #expect(lines.first?.hasSuffix(": ready") == true, "\(status)")
        #expect(lines.contains { $0.hasPrefix("lease 10.244.2.0/24 expires in 23h ") || $0.hasPrefix("lease 10.244.2.0/24 expires in 1d ") }, "\(status)")
        #expect(lines.contains("registry \(registry): reachable, 0 failed request(s) since start"), "\(status)")
        #expect(lines.contains("peers 1: 10.244.1.0/24 via 198.18.0.1"), "\(status)")
        #expect(lines.contains("drops: udp→tun ipv6 4, udp→tun too-short 7"), "\(status)")
        let json = try lab.exec("nodeB", [Environment.weftBinary, "status", "--json"])
        #expect(json.output.contains(#""too-short" : 7"#), "\(json)")

        let stoppedA = weftA.stop()
        #expect(stoppedA.status == 0, "\(stoppedA)")
        // A stopped node leaves no socket, so weft status says plainly that nothing runs there.
        let gone = try lab.exec("nodeA", [Environment.weftBinary, "status"])
        #expect(gone.status == 1 && gone.errorOutput.contains("no weft runs here"), "\(gone)")
        _ = weftB
    }

    @Test("a node waiting for its registry is healthy but not ready, says why, and stops cleanly on SIGTERM")
    func notReadyWhileWaiting() throws {
        let lab = try Lab(nodes: 2)
        // No etcd at all: the node waits at start, with its endpoints already listening.
        let socket = "\(lab.stateDirectory)/status-a.sock"
        let weft = try lab.spawn("nodeA", [Environment.weftBinary] + (try lab.registryArguments(node: 1, registry: .etcd))
                                     + ["--healthz-port", "8081", "--status-socket", socket])
        #expect(lab.waitForLog(weft, containing: "reading the net config:", seconds: 10), "\(weft.errorOutput)")
        #expect(try httpGet(lab, "nodeA", "/healthz").status == 200)
        let ready = try httpGet(lab, "nodeA", "/readyz")
        #expect(ready.status == 503 && ready.body.contains("weft is starting"), "\(ready)")
        let status = try lab.exec("nodeA", [Environment.weftBinary, "status", "--status-socket", socket])
        #expect(status.status == 1 && status.errorOutput.contains("answered 503: not ready: weft is starting"), "\(status)")
        weft.signal(SIGTERM)
        let stopped = weft.wait(seconds: 10)
        #expect(stopped.status == 0 && stopped.output.contains("weft: stopped by SIGTERM before forwarding"), "\(stopped)")
        #expect(access(socket, F_OK) != 0, "the status socket is removed")
    }

    @Test("SIGTERM during the last steps of a start (a slow iptables) stops it before forwarding, giving back its rules and its new lease")
    func signalDuringLastStartSteps() throws {
        let lab = try Lab(nodes: 2)
        // flannel0 is up before the FORWARD rules go in; with each iptables call slowed down,
        // a SIGTERM sent as soon as flannel0 is up lands while the start is still running.
        let weft = try lab.startWeft("nodeA", try lab.registryArguments(node: 1), environment: [try Self.slowIPTablesPath(lab)])
        let stopped = weft.stop()
        #expect(stopped.status == 0 && stopped.output.contains("weft: stopped by SIGTERM before forwarding"), "\(stopped)")
        #expect(stopped.errorOutput.contains("SIGTERM received while starting"), "the signal came during the start: \(stopped.errorOutput)")
        #expect(!stopped.errorOutput.contains("forwarding 10.244.1.0/24 on"), "\(stopped.errorOutput)")
        if let acquired = stopped.errorOutput.firstMatch(of: /acquired lease (10\.244\.\d+\.0\/24)/) {
            #expect(stopped.errorOutput.contains("released lease \(acquired.1)"), "\(stopped.errorOutput)")
        }
        #expect(try lab.fileRegistryLeaseCount() == 0, "no lease is left for a node that never forwarded")
        #expect(try lab.exec("nodeA", ["ip", "link", "show", "flannel0"]).status != 0, "flannel0 is removed")
        let rules = try lab.exec("nodeA", ["iptables", "-S"])
        #expect(!rules.output.contains("FLANNEL-FWD"), "the FORWARD rules are removed: \(rules)")
    }

    @Test("a second SIGTERM during the stop (timeout(1) sends one to the process and one to its group) does not cut the stop short")
    func secondSignalDuringStop() throws {
        let lab = try Lab(nodes: 2)
        // The stop removes the FORWARD rules with slowed iptables calls: the second signal
        // lands while they are going.
        let weft = try lab.startWeft("nodeA", try lab.registryArguments(node: 1), environment: [try Self.slowIPTablesPath(lab)])
        #expect(lab.waitForLog(weft, containing: "forwarding 10.244.1.0/24", seconds: 15), "\(weft.errorOutput)")
        weft.signal(SIGTERM)
        #expect(lab.waitForLog(weft, containing: "SIGTERM received: stopping", seconds: 5), "\(weft.errorOutput)")
        weft.signal(SIGTERM)
        let stopped = weft.wait(seconds: 15)
        #expect(stopped.status == 0 && stopped.output.contains("weft: stopped;"), "\(stopped)")
        let rules = try lab.exec("nodeA", ["iptables", "-S"])
        #expect(!rules.output.contains("FLANNEL-FWD"), "the FORWARD rules are removed: \(rules)")
    }

    /// PATH=… with an `iptables` first on it that sleeps 0.3 s before each call, to hold a start
    /// or a stop in its firewall steps.
    private static func slowIPTablesPath(_ lab: Lab) throws -> String {
        let tools = "\(lab.stateDirectory)/slow-tools"
        try FileManager.default.createDirectory(atPath: tools, withIntermediateDirectories: true)
        let iptables = try #require(findInPath("iptables"), "iptables is installed")
        try "#!/bin/sh\nsleep 0.3\nexec \(iptables) \"$@\"\n".write(toFile: "\(tools)/iptables", atomically: true, encoding: .utf8)
        chmod("\(tools)/iptables", 0o755)
        return "PATH=\(tools):" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
    }
}
}
