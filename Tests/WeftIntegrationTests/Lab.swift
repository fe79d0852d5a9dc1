import Foundation
import Testing
import WeftCapture
import WeftCore
import WeftLab
import WeftLinux
import WeftRegistry
import WeftTestSupport

/// Where the repository, the `weft` binary and the tools are, and whether this machine can
/// run namespace tests at all.
enum Environment {
    static let repository: URL = {
        if let path = ProcessInfo.processInfo.environment["WEFT_REPO"] { return URL(fileURLWithPath: path) }
        // Tests/WeftIntegrationTests/Lab.swift → repository root
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }()

    static let weftBinary: String = {
        if let path = ProcessInfo.processInfo.environment["WEFT_BINARY"] { return path }
        return repository.appendingPathComponent(".build/debug/weft").path
    }()

    static func tool(_ name: String) -> String { repository.appendingPathComponent("tools/\(name)").path }
    static func testPeer(_ name: String) -> String { repository.appendingPathComponent("tools/testpeers/\(name)").path }

    /// Why namespace tests cannot run here, or nil when they can.
    static let missingForNamespaces: String? = {
        if geteuid() != 0 { return "not root: network namespace tests skipped (run tools/test as root)" }
        if access("/dev/net/tun", R_OK | W_OK) != 0 { return "no /dev/net/tun: network namespace tests skipped" }
        for command in ["ip", "python3", "ping", "tcpdump", "timeout"] where findInPath(command) == nil {
            return "\(command) not found on PATH: run tools/prereqs first"
        }
        if access(weftBinary, X_OK) != 0 { return "no weft binary at \(weftBinary): run swift build first (or set WEFT_BINARY)" }
        return nil
    }()

    static var canRunNamespaces: Bool { missingForNamespaces == nil }

}

/// Every test that builds a namespace lab, one at a time: two labs with forwarders, iperf-like
/// streams and an etcd at once would share two cores and make timings meaningless.
@Suite(.serialized) struct NamespaceTests {}

/// Commands in the background: the test-support Subprocess (own process group, bounded waits),
/// not WeftLab's runner of the same name.
typealias BackgroundProcess = WeftTestSupport.Subprocess

/// The namespace lab of `weft lab` (pod A, node A, node B, pod B; more nodes on a bridge),
/// built in-process by WeftLab in weft mode without forwarders, so that each test starts its own
/// `weft run` with its own flags; deleted when the test ends, also when it fails.
final class Lab: @unchecked Sendable {
    let prefix: String
    private let lab: WeftLab.Lab
    private var background: [BackgroundProcess] = []

    static let podA = IPv4Address(10, 244, 1, 2)
    static let podB = IPv4Address(10, 244, 2, 2)
    static let nodeAUnderlay = IPv4Address(198, 18, 0, 1)
    static let nodeBUnderlay = IPv4Address(198, 18, 0, 2)

    /// `weft run` arguments for each node, peers pointing at each other.
    static func weftArguments(node: String, offload: Bool = true) -> [String] {
        let own = node == "nodeA" ? "10.244.1.0/24" : "10.244.2.0/24"
        let peer = node == "nodeA" ? "10.244.2.0/24=198.18.0.2" : "10.244.1.0/24=198.18.0.1"
        return ["run", "--iface", "ul0", "--network", "10.244.0.0/16", "--subnet", own, "--peer", peer, "--workers", "2"]
            + (offload ? [] : ["--no-offload"])
    }

    /// Node names in lab order: nodeA, nodeB, …; pod i is 10.244.i.2 behind node i.
    let nodes: [String]

    /// `nodes` > 2 puts the nodes on a bridge (weft lab up --nodes).
    init(podMTU: Int? = nil, nodes: Int = 2) throws {
        // Short and unique per test so parallel runs never collide; "wt" lets tools/test sweep leftovers.
        prefix = "wt" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let plan = try LabPlan(prefix: prefix, mode: .weft, nodeCount: nodes, podMTU: podMTU, forwarders: false)
        self.nodes = plan.nodes.map(\.nodeName)
        // Lab.up removes whatever it built when it fails; nothing is left to clean up here.
        lab = try WeftLab.Lab.up(plan, weftBinary: Environment.weftBinary, log: { _ in })
    }

    deinit {
        for process in background where process.isRunning { process.stop(seconds: 5) }
        lab.tearDown()
        try? FileManager.default.removeItem(atPath: FileManager.default.temporaryDirectory.appendingPathComponent("weft-\(prefix)").path)
    }

    func namespace(_ node: String) -> String { "\(prefix)-\(node)" }

    /// A directory for this lab's file registry and subnet.env files, removed with the lab.
    lazy var stateDirectory: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-\(prefix)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// Where the lab's nodes lease their subnets.
    enum Registry: String, CaseIterable, Sendable, CustomStringConvertible {
        /// The embedded file registry in the lab's state directory, shared by the nodes.
        case file
        /// A real etcd (Debian's etcd-server) in node A's namespace, at `Lab.etcdEndpoint`.
        case etcd

        var description: String { rawValue }

        /// The kinds this machine can run: etcd only where its binary is installed.
        static var available: [Registry] { findInPath("etcd") == nil ? [.file] : [.file, .etcd] }
    }

    static let etcdEndpoint = "http://198.18.0.1:2379"

    /// `weft run` for node i (1-based) leasing from `registry`. The pods are wired for
    /// 10.244.i.0/24, so the node's subnet.env names that subnet as its previous one, which a
    /// node takes again when it is free (flanneld's restart rule). The first node writes the net
    /// config (--network) if the registry has none.
    func registryArguments(node index: Int, registry: Registry = .file, writeSubnetFile: Bool = true) throws -> [String] {
        let subnetFile = "\(stateDirectory)/subnet-\(index).env"
        if writeSubnetFile {
            try LabPlan.writeSubnetEnvironment(for: LabNode(index: index), to: subnetFile)
        }
        let store = registry == .file ? ["--subnet-dir", "\(stateDirectory)/registry"] : ["--etcd-endpoints", Self.etcdEndpoint]
        return ["run", "--iface", "ul0", "--network", "10.244.0.0/16", "--subnet-file", subnetFile, "--workers", "2"] + store
    }

    /// Starts etcd inside node A's namespace (so every node reaches it over the underlay) and
    /// waits until it is healthy; the lab's teardown kills it.
    func startEtcd() throws -> BackgroundProcess {
        let etcd = try spawn("nodeA", [
            "etcd", "--name", "weft-test", "--data-dir", "\(stateDirectory)/etcd",
            "--listen-client-urls", Self.etcdEndpoint, "--advertise-client-urls", Self.etcdEndpoint,
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "weft-test=http://127.0.0.1:2380",
        ])
        let health = try etcdkv(["health", "--wait", "15"])
        guard health.status == 0 else { throw LabError("etcd did not become healthy: \(health)\n\(etcd.errorOutput)") }
        return etcd
    }

    /// flannel's net config for the lab's network, written into the lab's etcd as flanneld's
    /// operators do before any node starts.
    func putEtcdNetConfig() throws {
        try etcdkv(["put", "/coreos.com/network/config", #"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#])
    }

    /// tools/testpeers/etcdkv.py against the lab's etcd: flanneld's view of the keys.
    @discardableResult
    func etcdkv(_ arguments: [String]) throws -> CommandResult {
        try exec("nodeA", ["python3", Environment.testPeer("etcdkv.py"), "--endpoint", Self.etcdEndpoint] + arguments, timeout: 30)
    }

    /// Runs a command inside one of the lab's namespaces.
    @discardableResult
    func exec(_ node: String, _ arguments: [String], timeout: Double = 60) throws -> CommandResult {
        try run(["timeout", String(Int(timeout)), "ip", "netns", "exec", namespace(node)] + arguments, timeout: timeout + 5)
    }

    /// Starts a command inside a namespace and keeps it running until stopped or the lab ends.
    func spawn(_ node: String, _ arguments: [String]) throws -> BackgroundProcess {
        let process = try BackgroundProcess(["ip", "netns", "exec", namespace(node)] + arguments)
        background.append(process)
        return process
    }

    /// Starts `weft` in a node and waits until its TUN is up. `environment` entries are
    /// NAME=value assignments for it.
    func startWeft(_ node: String, _ arguments: [String], environment: [String] = []) throws -> BackgroundProcess {
        let weft = try spawn(node, ["env"] + environment + [Environment.weftBinary] + arguments)
        try waitForLink("flannel0", in: node, process: weft)
        return weft
    }

    func waitForLink(_ name: String, in node: String, process: BackgroundProcess, seconds: Double = 15) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if !process.isRunning {
                throw LabError("process in \(node) exited early: \(process.wait(seconds: 1))")
            }
            if try exec(node, ["ip", "link", "show", name, "up"], timeout: 5).output.contains(name) { return }
            usleep(100_000)
        }
        throw LabError("\(name) did not come up in \(node) within \(seconds) s; stderr: \(process.errorOutput)")
    }

    /// A stand-in for systemd's notify socket in `node`: a datagram socket at a path of the
    /// lab's that prints the first two messages it gets, each on one line with " | " for the
    /// newlines ("READY=1 | STATUS=…"). Returns once the socket exists.
    func startNotifyListener(in node: String) throws -> (socket: String, listener: BackgroundProcess) {
        let socket = "\(stateDirectory)/notify-\(node)"
        let listener = try spawn(node, ["python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(sys.argv[1])
            s.settimeout(30)
            for _ in range(2):
                print(s.recv(512).decode().replace("\\n", " | "), flush=True)
            """, socket])
        _ = waitFor(5) { access(socket, F_OK) == 0 }
        return (socket, listener)
    }

    /// Waits up to `seconds` for `text` in a background command's stderr (its log); whether it came.
    func waitForLog(_ process: BackgroundProcess, containing text: String, seconds: Double) -> Bool {
        waitFor(seconds) { process.errorOutput.contains(text) }
    }

    /// Waits until `process` has printed `text` on stdout; false if it has not after `seconds`.
    func waitForOutput(_ process: BackgroundProcess, containing text: String, seconds: Double) -> Bool {
        waitFor(seconds) { process.output.contains(text) }
    }

    private func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    /// Pings from a namespace; returns ping's output.
    func ping(from node: String, _ address: String, count: Int = 3, extra: [String] = []) throws -> CommandResult {
        try exec(node, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "2"] + extra + [address], timeout: Double(count) * 3 + 10)
    }
}

/// Reads `weft`'s closing summary line ("... drops: udp→tun unknown-peer 5, ...") and returns the
/// count for one direction and reason.
func dropCount(in summary: String, direction: Direction, reason: DropReason) -> Int {
    guard let line = summary.split(separator: "\n").last(where: { $0.contains("stopped") }) else { return 0 }
    let words = line.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
    var currentDirection: String?
    for (index, word) in words.enumerated() {
        if word == Direction.tunToUDP.description || word == Direction.udpToTun.description { currentDirection = word }
        if word == reason.description, currentDirection == direction.description, index + 1 < words.count {
            return Int(words[index + 1]) ?? 0
        }
    }
    return 0
}

/// An in-process libpcap capture of the flannel-udp traffic on one node's interface (opened
/// inside the lab's namespace), written to an outer and an inner pcap. A failed check keeps both
/// files under `directory` and names them in the failure; otherwise they are removed.
final class WireCapture {
    /// $WEFT_TEST_CAPTURES, or /tmp/weft-test-captures.
    static let directory = ProcessInfo.processInfo.environment["WEFT_TEST_CAPTURES"] ?? "/tmp/weft-test-captures"

    let outerFile: String
    let innerFile: String
    private let folder: String
    private let capture: BackgroundCapture

    /// Captures until `count` packets or `seconds`, whichever comes first.
    init(_ lab: Lab, node: String, interface: String = "ul0", filter: String? = nil, name: String, count: Int? = nil, seconds: Double = 10) throws {
        folder = "\(Self.directory)/\(name)-\(lab.prefix)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        outerFile = "\(folder)/\(node)-\(interface).pcap"
        innerFile = "\(folder)/\(node)-\(interface)-inner.pcap"
        capture = try BackgroundCapture(interface: interface, filter: filter, namespace: NetworkNamespace.path(named: lab.namespace(node)),
                                        count: count, duration: seconds, writeOuter: outerFile, writeInner: innerFile)
    }

    /// Ends the capture now (within 100 ms).
    func stop() { capture.stop() }

    /// Waits for the capture to end, then runs `checks`: every message it returns fails the test.
    @discardableResult
    func finish(sourceLocation: SourceLocation = #_sourceLocation, _ checks: ([Frame]) -> [String]) throws -> [Frame] {
        let frames = try capture.wait()
        let failures = checks(frames)
        if failures.isEmpty {
            try? FileManager.default.removeItem(atPath: folder)
        }
        for failure in failures {
            Issue.record("\(failure); \(frames.count) frames kept in \(outerFile) and \(innerFile)", sourceLocation: sourceLocation)
        }
        return frames
    }
}

extension Lab {
    /// How many leases the lab's file registry (`registryArguments(registry: .file)`) holds.
    func fileRegistryLeaseCount() throws -> Int {
        let registry = FileRegistry(directory: "\(stateDirectory)/registry")
        return try blocking { try await registry.list(prefix: "/coreos.com/network/subnets/").0.count }
    }
}

/// Runs registry work (async) from a synchronous test and returns what it returned.
func blocking<Value: Sendable>(_ operation: @escaping @Sendable () async throws -> Value) throws -> Value {
    let done = DispatchSemaphore(value: 0)
    let outcome = LockedOutcome<Value>()
    Task.detached {
        do { outcome.set(.success(try await operation())) } catch { outcome.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    return try outcome.result!.get()
}

private final class LockedOutcome<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Result<Value, any Error>?
    func set(_ result: Result<Value, any Error>) { lock.withLock { stored = result } }
    var result: Result<Value, any Error>? { lock.withLock { stored } }
}
