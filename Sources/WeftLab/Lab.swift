import Foundation
import Glibc
import WeftLinux

/// A lab that exists: built by `up`, removed by `down` (or `tearDown`).
public final class Lab: @unchecked Sendable {
    /// Where labs keep their state: /run/weft-lab/P (registry, subnet.env files, logs).
    public static let defaultStateRoot = "/run/weft-lab"

    public let plan: LabPlan
    public let stateRoot: String
    /// `stateRoot/P`: registry, subnet.env files, logs.
    public var stateDirectory: String { Self.stateDirectory(root: stateRoot, prefix: plan.prefix) }
    /// The forwarder of each node (`weft run`, wireguard-go or nebula), in node order; none in
    /// the kernel's modes.
    public private(set) var forwarders: [ChildProcess] = []
    private let log: (String) -> Void

    private init(plan: LabPlan, stateRoot: String, log: @escaping (String) -> Void) {
        self.plan = plan
        self.stateRoot = stateRoot
        self.log = log
    }

    public static func stateDirectory(root: String, prefix: String) -> String { "\(root)/\(prefix)" }

    /// Why this machine cannot build a lab, or nil: privileges, TUN support, the mode's programs.
    public static func missingPrivileges(for mode: LabMode) -> String? {
        if geteuid() != 0 { return "must be run as root (it creates network namespaces)" }
        if mode.usesTUN && access("/dev/net/tun", R_OK | W_OK) != 0 { return "/dev/net/tun is missing: \(mode) mode needs TUN support" }
        if let missing = mode.missingSupport { return "\(mode) mode: \(missing)" }
        return nil
    }

    /// Builds the lab; in weft mode writes each node's subnet.env and (unless the plan says
    /// no forwarders) starts `weft` (`weftBinary`) run in every node, in its own session so it
    /// outlives this process; then waits until every pod answers a ping from every other pod (at
    /// most `pingTimeout` seconds), except in weft mode without forwarders, where nothing
    /// carries pod traffic yet. Refuses if any `P-*` namespace exists. On any failure, or a
    /// signal, removes everything it created and throws.
    public static func up(_ plan: LabPlan, weftBinary: String, stateRoot: String = defaultStateRoot,
                          pingTimeout: Double = 30, log: @escaping (String) -> Void) throws(LabError) -> Lab {
        if let missing = missingPrivileges(for: plan.mode) { throw LabError(missing) }
        let existing = Namespaces.lab(plan.prefix)
        guard existing.isEmpty else {
            throw LabError("namespaces with prefix '\(plan.prefix)-' already exist (\(existing.joined(separator: " "))); run: weft lab down --prefix \(plan.prefix)")
        }
        let lab = Lab(plan: plan, stateRoot: stateRoot, log: log)
        do {
            try lab.build(weftBinary: weftBinary)
            if plan.mode != .weft || plan.startsForwarders { try lab.waitForPods(timeout: pingTimeout) }
        } catch {
            if error.signal == nil { lab.showLogs() }
            lab.tearDown()
            throw error
        }
        return lab
    }

    private func build(weftBinary: String) throws(LabError) {
        // A directory left by a lab whose namespaces are gone is stale.
        try? FileManager.default.removeItem(atPath: stateDirectory)
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            try "mode=\(plan.mode)\nnodes=\(plan.nodes.count)\nbridge=\(plan.bridged)\npod-mtu=\(plan.podMTU)\nforwarders=\(plan.mode == .weft && plan.startsForwarders)\n"
                .write(toFile: "\(stateDirectory)/lab", atomically: true, encoding: .utf8)
        } catch {
            throw LabError("cannot write the lab's state in \(stateDirectory): \(error)")
        }
        try run(plan.steps)
        switch plan.mode {
        case .vxlan, .route:
            return
        case .weft:
            for node in plan.nodes {
                try LabPlan.writeSubnetEnvironment(for: node, to: subnetFile(node))
            }
            guard plan.startsForwarders else { return }
            try startForwarders(weftBinary: weftBinary)
        case .wireguardGo, .nebula:
            try run(plan.credentialSteps(stateDirectory: stateDirectory))
            if plan.mode == .nebula {
                for node in plan.nodes {
                    let path = LabPlan.nebulaConfigFile(for: node, stateDirectory: stateDirectory)
                    do {
                        try Files.replace(path, with: Array(plan.nebulaConfig(for: node, stateDirectory: stateDirectory).utf8), mode: 0o600)
                    } catch {
                        throw LabError("cannot write \(path): \(error)")
                    }
                }
            }
            try startForwarders(weftBinary: weftBinary)
            for node in plan.nodes { try waitForInterface(plan.tunnelInterface(node), in: node) }
            if plan.mode == .wireguardGo {
                let publicKeys = try plan.nodes.map { (node) throws(LabError) -> String in
                    let path = LabPlan.wireGuardPublicKeyFile(for: node, stateDirectory: stateDirectory)
                    guard let key = try? String(contentsOfFile: path, encoding: .utf8) else { throw LabError("cannot read \(path)") }
                    return key.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                try run(plan.tunnelSteps(stateDirectory: stateDirectory, publicKeys: publicKeys))
            }
        }
    }

    /// Runs each command to completion, in order; the first that fails stops the build.
    private func run(_ steps: [LabStep]) throws(LabError) {
        for step in steps {
            let result = try Subprocess.run(step.arguments, timeout: 15)
            guard result.succeeded else { throw LabError("`\(step)` failed: \(result)") }
        }
    }

    private func startForwarders(weftBinary: String) throws(LabError) {
        for node in plan.nodes {
            guard let arguments = plan.forwarderArguments(weft: weftBinary, node: node, stateDirectory: stateDirectory) else { continue }
            forwarders.append(try Subprocess.spawnDetached(arguments, logFile: logFile(node)))
        }
    }

    /// Waits (at most 10 s) until the forwarder in `node` has created `interface`.
    private func waitForInterface(_ interface: String, in node: LabNode) throws(LabError) {
        let deadline = MonotonicClock.seconds() + 10
        while true {
            try checkForwarders()
            if try Subprocess.run(["ip", "-n", plan.namespace(node.nodeName), "link", "show", interface], timeout: 5).succeeded { return }
            if MonotonicClock.seconds() > deadline {
                throw LabError("\(plan.mode) in \(plan.namespace(node.nodeName)) did not create \(interface) within 10 s")
            }
            try pause(0.05)
        }
    }

    public func logFile(_ node: LabNode) -> String { "\(stateDirectory)/\(plan.mode)-\(node.nodeName).log" }

    /// Node `node`'s subnet.env in weft mode, written by `up`.
    public func subnetFile(_ node: LabNode) -> String { LabPlan.subnetFile(for: node, stateDirectory: stateDirectory) }

    /// Pings every pod from every other pod until each pair answered once; fails when a
    /// forwarder ends or after `timeout` seconds.
    public func waitForPods(timeout: Double) throws(LabError) {
        let deadline = MonotonicClock.seconds() + timeout
        for from in plan.nodes {
            for to in plan.nodes where to != from {
                while true {
                    try checkForwarders()
                    let ping = try Subprocess.run(["ip", "netns", "exec", plan.namespace(from.podName), "ping", "-n", "-q", "-c", "1", "-W", "1", to.podAddress], timeout: 5)
                    if ping.succeeded { break }
                    if MonotonicClock.seconds() > deadline {
                        throw LabError("\(plan.namespace(from.podName)) got no answer from \(to.podAddress) within \(Int(timeout)) s")
                    }
                    try pause(0.05)
                }
            }
        }
    }

    /// Fails if a forwarder has ended.
    public func checkForwarders() throws(LabError) {
        for (node, forwarder) in zip(plan.nodes, forwarders) {
            if let status = forwarder.poll() {
                throw LabError("\(plan.mode == .weft ? "weft run" : plan.mode.rawValue) in \(plan.namespace(node.nodeName)) ended (status \(status)); see its log above")
            }
        }
    }

    /// The last lines of each forwarder's log, on stderr's behalf.
    public func showLogs(lines: Int = 12) {
        for node in plan.nodes {
            guard let text = try? String(contentsOfFile: logFile(node), encoding: .utf8), !text.isEmpty else { continue }
            log("--- last lines of \(logFile(node))")
            log(text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n"))
        }
    }

    /// CPU seconds (user + system) the forwarders have used so far.
    public func forwarderCPUSeconds() -> Double {
        forwarders.reduce(0) { $0 + (ProcessStatus.cpuSeconds($1.pid) ?? 0) }
    }

    /// Removes the lab: every process in its namespaces, the namespaces, the state directory.
    public func tearDown() {
        Self.down(prefix: plan.prefix, stateRoot: stateRoot)
        for forwarder in forwarders { _ = forwarder.wait(seconds: 0.5) }
    }

    /// Kills every process in `P-*` namespaces (SIGTERM, then SIGKILL), deletes them and the
    /// state directories of P and of `P-*` (compare's labs). Returns the namespaces removed.
    @discardableResult
    public static func down(prefix: String, stateRoot: String = defaultStateRoot) -> [String] {
        let names = Namespaces.lab(prefix)
        Namespaces.remove(names)
        let fileManager = FileManager.default
        let states = ((try? fileManager.contentsOfDirectory(atPath: stateRoot)) ?? []).filter { $0 == prefix || $0.hasPrefix(prefix + "-") }
        for state in states { try? fileManager.removeItem(atPath: "\(stateRoot)/\(state)") }
        return names
    }

    /// Namespaces, links, addresses, routes and processes of the lab `P`.
    public static func status(prefix: String, stateRoot: String = defaultStateRoot) throws(LabError) -> String {
        let names = Namespaces.lab(prefix)
        guard !names.isEmpty else { return "lab: no namespaces with prefix '\(prefix)-'" }
        var lines: [String] = []
        let stateFile = "\(stateDirectory(root: stateRoot, prefix: prefix))/lab"
        if let state = try? String(contentsOfFile: stateFile, encoding: .utf8) {
            lines.append("lab \(prefix): " + state.split(separator: "\n").joined(separator: " "))
        }
        let known = LabPlan.displayOrder.map { "\(prefix)-\($0)" }.filter(names.contains)
        for name in known + names.filter({ !known.contains($0) }) {
            lines.append("== \(name)")
            for (label, arguments) in [("link ", ["-br", "link", "show"]), ("addr ", ["-br", "-4", "addr", "show"]), ("route", ["-4", "route", "show"])] {
                let result = try Subprocess.run(["ip", "-n", name] + arguments, timeout: 10)
                for line in result.output.split(separator: "\n") { lines.append("  \(label) \(line)") }
            }
            for pid in Namespaces.processes(in: [name]) {
                lines.append("  proc  \(pid) \(ProcessStatus.commandLine(pid))")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The absolute path of the running executable.
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return buffer.withUnsafeBufferPointer { String(decoding: $0.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }
}
