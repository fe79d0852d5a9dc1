import ArgumentParser
import Foundation
import WeftCore
import WeftOperations

/// `weft status`: what the running node in this network namespace is doing.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running node's counters, peers and lease.",
        discussion: """
            Asks the 'weft run' of this network namespace through its status socket (see \
            'weft run --status-socket'). Counters are totals since it started. Exits 1 when no \
            node answers, 3 when one answers but is not ready (/readyz would say 503).

            The same socket answers plain HTTP: curl --unix-socket PATH http://weft/metrics

            Examples:
              weft status
              weft status --json
              ip netns exec nodeA weft status
            """
    )

    @Flag(help: "Print the status as JSON (the node's /status).")
    var json = false

    @Option(help: ArgumentHelp("The node's status socket. Default: this network namespace's.", valueName: "path"))
    var statusSocket: String?

    func run() async throws {
        let path = statusSocket ?? StatusSocket.defaultPath
        let hint = "is 'weft run' running in this network namespace? 'ip netns exec NAME weft status' asks a node in a namespace"
        guard FileManager.default.fileExists(atPath: path) else {
            throw RunError("no weft runs here: there is no status socket \(path) (\(hint))")
        }
        let response: StatusClient.Response
        do {
            response = try await StatusClient.get("/status", socketPath: path)
        } catch {
            throw RunError("no weft answers at \(path): \(error) (\(hint); a node killed with SIGKILL leaves its socket behind)")
        }
        guard response.status == 200 else {
            throw RunError("\(path) answered \(response.status): \(String(decoding: response.body, as: UTF8.self).trimmed)")
        }
        let status: NodeStatus
        do {
            status = try NodeStatus.decode(response.body)
        } catch {
            throw RunError("\(path) sent a status this weft cannot read (another version?): \(error)")
        }
        let now = Date().timeIntervalSince1970
        if json {
            printLine(String(decoding: response.body, as: UTF8.self).trimmed)
        } else {
            for line in Self.describe(status, now: now) { printLine(line) }
        }
        if status.notReadyReason(now: now) != nil { throw ExitCode(3) }
    }

    /// The human-readable form, one fact per line.
    static func describe(_ status: NodeStatus, now: Double) -> [String] {
        var lines: [String] = []
        let ready = status.notReadyReason(now: now).map { "not ready: \($0)" } ?? "ready"
        lines.append("node \(status.subnet) in \(status.network) on \(status.tunName), \(status.workers) worker(s), up \(duration(now - status.startedAt)): \(ready)")
        if let lease = status.lease {
            lines.append("lease \(lease.subnet) expires in \(duration(lease.expiresAt - now))")
        }
        if let registry = status.registry {
            lines.append("registry \(registry.kind): \(registry.reachable ? "reachable" : "unreachable"), \(registry.failedRequests) failed request(s) since start"
                         + (registry.skippedEntries > 0 ? ", \(registry.skippedEntries) skipped entry(ies): see the log" : ""))
        }
        lines.append("peers \(status.peers.count)" + (status.peers.isEmpty ? "" : ": " + status.peers.map { "\($0.subnet) via \($0.publicIP)" }.joined(separator: ", ")))
        let traffic = status.traffic
        for direction in Direction.allCases {
            lines.append("\(direction) \(traffic.packets[direction.metricName] ?? 0) packets, \(traffic.bytes[direction.metricName] ?? 0) bytes")
        }
        lines.append("icmp sent \(traffic.icmpSent)")
        let drops = Direction.allCases.flatMap { direction in
            (traffic.drops[direction.metricName] ?? [:]).sorted { $0.key < $1.key }.map { "\(direction) \($0.key) \($0.value)" }
        }
        lines.append("drops: " + (drops.isEmpty ? "none" : drops.joined(separator: ", ")))
        return lines
    }

    /// "3d 4h", "2h 5m", "4m 10s", "12s"; negative as "-12s".
    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        if total < 0 { return "-" + duration(Double(-total)) }
        let (days, hours, minutes, secs) = (total / 86400, total / 3600 % 24, total / 60 % 60, total % 60)
        if days > 0 { return "\(days)d \(hours)h" }
        if hours > 0 { return "\(hours)h \(minutes)m" }
        if minutes > 0 { return "\(minutes)m \(secs)s" }
        return "\(secs)s"
    }
}
