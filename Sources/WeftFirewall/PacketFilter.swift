import Glibc
import Synchronization
import WeftLinux

/// A failure to read or change the host's packet filter, with the command and its stderr.
public struct PacketFilterError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Installs, re-checks and removes a node's `TrafficRules` with the host's own tools, as
/// flanneld does (go-iptables and knftables run the iptables and nft commands too): the rules
/// are then what `iptables -S` and `nft list ruleset` show, and whatever else manages the
/// firewall sees ordinary rules.
public final class PacketFilter: Sendable {
    public enum Tool: String, Sendable, CustomStringConvertible {
        case iptables
        case nftables

        var command: String { self == .iptables ? "iptables" : "nft" }
        public var description: String { rawValue }
    }

    public let tool: Tool
    public let rules: TrafficRules
    private let executable: String
    /// Seconds one command may take: iptables waits that long for the xtables lock.
    static let commandTimeout = 10.0

    /// Finds the tool on PATH (and in /usr/sbin and /sbin, where Debian puts both).
    public init(tool: Tool, rules: TrafficRules) throws(PacketFilterError) {
        guard let path = Self.find(tool.command) else {
            throw PacketFilterError("\(tool.command) not found (Debian: apt-get install \(tool == .iptables ? "iptables" : "nftables"))")
        }
        self.tool = tool
        self.rules = rules
        self.executable = path
    }

    private static func find(_ command: String) -> String? {
        let path = (getenv("PATH").map { String(cString: $0) } ?? "") + ":/usr/sbin:/sbin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(command)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Installs whatever of the rules is missing or out of order. True when something had to be
    /// (re)installed, false when everything was in place.
    @discardableResult
    public func ensure() throws(PacketFilterError) -> Bool {
        switch tool {
        case .iptables: try ensureIPTables()
        case .nftables: try ensureNFTables()
        }
    }

    /// Removes the rules and flanneld's chains (or table). Rules that are already gone are fine.
    public func remove() throws(PacketFilterError) {
        switch tool {
        case .iptables:
            for chain in rules.iptablesChains {
                // Delete every copy of the jump (a crashed run and a restart can leave two).
                for _ in 0..<8 {
                    guard try run(["-w", "5", "-t", chain.table, "-D", chain.parent] + chain.jump).succeeded else { break }
                }
                _ = try run(["-w", "5", "-t", chain.table, "-F", chain.name])
                _ = try run(["-w", "5", "-t", chain.table, "-X", chain.name])
            }
        case .nftables:
            let result = try run(["delete", "table", "ip", TrafficRules.nftablesTable])
            if !result.succeeded && !result.errorOutput.contains("No such file or directory") {
                throw PacketFilterError("nft delete table ip \(TrafficRules.nftablesTable): \(result)")
            }
        }
    }

    private func ensureIPTables() throws(PacketFilterError) -> Bool {
        var changed = false
        for chain in rules.iptablesChains {
            let listing = try run(["-w", "5", "-t", chain.table, "-S", chain.name])
            if !listing.succeeded {
                try required(["-w", "5", "-t", chain.table, "-N", chain.name])
            }
            // Order matters (the RETURNs come before the MASQUERADEs), so anything missing or
            // extra rebuilds the chain; -C alone cannot see order, the count closes that gap.
            let present = listing.output.split(separator: "\n").filter { $0.hasPrefix("-A \(chain.name) ") }.count
            var intact = listing.succeeded && present == chain.rules.count
            if intact {
                for rule in chain.rules where try !run(["-w", "5", "-t", rule.table, "-C", rule.chain] + rule.specification).succeeded {
                    intact = false
                    break
                }
            }
            if !intact {
                try required(["-w", "5", "-t", chain.table, "-F", chain.name])
                for rule in chain.rules {
                    try required(["-w", "5", "-t", rule.table, "-A", rule.chain] + rule.specification)
                }
                changed = true
            }
            if try !run(["-w", "5", "-t", chain.table, "-C", chain.parent] + chain.jump).succeeded {
                // First, as flanneld does, so other rules in the built-in chain cannot pre-empt ours.
                try required(["-w", "5", "-t", chain.table, "-I", chain.parent, "1"] + chain.jump)
                changed = true
            }
        }
        return changed
    }

    /// nft's own listing of the table right after Weft installed it; a later listing that
    /// differs means someone changed or removed it.
    private let installedListing = Mutex<String?>(nil)

    private func ensureNFTables() throws(PacketFilterError) -> Bool {
        let listing = try run(["list", "table", "ip", TrafficRules.nftablesTable])
        if listing.succeeded, let installed = installedListing.withLock({ $0 }), installed == listing.output {
            return false
        }
        let script = rules.nftablesScript
        var template = Array("/tmp/weft-nft-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw PacketFilterError("cannot write the nft script: \(SystemError(errno: errno, operation: "mkstemp"))") }
        let path = String(cString: template)
        defer { unlink(path) }
        do {
            try Files.writeAll(fd, Array(script.utf8), path: path)
            Files.close(fd)
        } catch {
            Files.close(fd)
            throw PacketFilterError("cannot write the nft script \(path): \(error)")
        }
        try required(["-f", path])
        let installed = try run(["list", "table", "ip", TrafficRules.nftablesTable])
        installedListing.withLock { $0 = installed.succeeded ? installed.output : nil }
        return true
    }

    private func run(_ arguments: [String]) throws(PacketFilterError) -> CommandResult {
        let result: CommandResult?
        do {
            result = try ChildProcess.run([executable] + arguments, timeout: Self.commandTimeout)
        } catch {
            throw PacketFilterError("cannot run \(executable): \(error)")
        }
        guard let result else { throw PacketFilterError("\(tool.command) \(arguments.joined(separator: " ")) was stopped") }
        return result
    }

    private func required(_ arguments: [String]) throws(PacketFilterError) {
        let result = try run(arguments)
        guard result.succeeded else {
            throw PacketFilterError("\(tool.command) \(arguments.joined(separator: " ")): \(result)")
        }
    }
}
