import Dispatch
import Foundation
import Glibc
import Logging
import Synchronization
import WeftCore
import WeftDataPath
import WeftEtcd
import WeftFirewall
import WeftLinux
import WeftOperations
import WeftRegistry

/// Everything `weft run` needs after parsing, with defaults applied.
struct RunSettings {
    /// Names or addresses, tried in order before `ifaceRegex`.
    var iface: [String] = []
    var ifaceRegex: [String] = []
    var leases: LeaseSource
    /// nil: 8285 with static peers, the net config's Backend.Port with a registry.
    var port: UInt16?
    var publicIP: IPv4Address?
    var tunName: String
    var workers: Int
    var checkPeerAddress: Bool
    var offloads: Bool
    var logLevel: Logger.Level
    /// systemd's $NOTIFY_SOCKET (a `Type=notify` unit): told READY=1 and STOPPING=1.
    var notifier: SystemdNotifier?
    /// Where /healthz, /readyz, /metrics and /status are served (the status socket, and
    /// flanneld's --healthz-port when set).
    var operations: [OperationsListener] = []
    var traffic = TrafficSettings()
}

/// flanneld's --ip-masq, --ip-masq-fully-random-disable, --iptables-forward-rules and
/// --iptables-resync.
struct TrafficSettings {
    var masquerade = false
    var fullyRandom = true
    var forward = true
    var resyncSeconds = 5
}

/// Where this node's subnet and its peers come from.
enum LeaseSource {
    /// Given on the command line (`--network`, `--subnet`, `--peer`, `--peers-file`).
    case fixed(StaticPeers)
    /// Leased from a registry, as flanneld does.
    case registry(RegistrySettings)
}

/// A registry and flanneld's lease options.
struct RegistrySettings {
    enum Store {
        case directory(String)
        case etcd(endpoints: [String], username: String?, password: String?, tls: EtcdTLS)
    }
    var store: Store
    var prefix: String
    var subnetFile: String
    var renewMargin: Double
    /// Written as the net config when the registry has none.
    var initialNetwork: IPv4Prefix?
}

/// The subnet this node serves and the peers it starts with.
private struct Assignment {
    var network: IPv4Prefix
    var subnet: IPv4Prefix
    var port: UInt16
    var peers: [Route]
    var leases: (manager: LeaseManager, lease: SubnetLease, wasCreated: Bool, subnetFile: String)?
    /// The net config's EnableNFTables: the rules go through nft instead of iptables.
    var enableNFTables = false
}

/// A running node: its devices, its forwarder, its lease and the signals that steer it.
final class Node: @unchecked Sendable {
    enum Outcome { case signalled, leaseLost, failed(String) }

    private let settings: RunSettings
    private let assignment: Assignment
    private let logger: Logger
    /// flannel0's queues and the socket group: one of each per worker.
    private let tunQueues: [TunDevice]
    private let sockets: [UDPSocket]
    private let routes: RouteTableStore
    private let forwarder: Forwarder
    /// Signalled by SIGINT/SIGTERM, a lost lease and a data-path failure.
    private let stopRequest: DispatchSemaphore
    private let failure: Failure
    private let leaseLost = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private var signals: SignalWatch?
    private var maintenance: Task<Void, Never>?
    private var trafficLog: Task<Void, Never>?
    private let packetFilter: PacketFilter?
    private var filterResync: Task<Void, Never>?
    private let operations: OperationsServer?
    private let startedAt = Date().timeIntervalSince1970

    /// The first data-path failure, kept for the exit message.
    final class Failure: Sendable {
        let message = Mutex<String?>(nil)
    }

    /// What the operations server shows: nothing until the node exists, since the server
    /// listens before the lease is taken (a busy status socket fails the start early).
    final class StatusBoard: Sendable {
        let node = Mutex<Node?>(nil)
        func status() -> NodeStatus? { node.withLock { $0 }?.status() }
    }

    private init(settings: RunSettings, assignment: Assignment, logger: Logger, tunQueues: [TunDevice], sockets: [UDPSocket], routes: RouteTableStore, forwarder: Forwarder, stopRequest: DispatchSemaphore, failure: Failure, operations: OperationsServer?, packetFilter: PacketFilter?) {
        self.settings = settings
        self.assignment = assignment
        self.logger = logger
        self.tunQueues = tunQueues
        self.sockets = sockets
        self.routes = routes
        self.forwarder = forwarder
        self.stopRequest = stopRequest
        self.failure = failure
        self.operations = operations
        self.packetFilter = packetFilter
    }

    /// The underlay interface and the address to bind, by flanneld's rules (`UnderlayRequest`).
    static func underlayInterface(_ settings: RunSettings, logger: Logger) throws -> (NetworkInterface, IPv4Address) {
        let available: [NetworkInterface]
        do {
            available = try NetworkInterface.allNames().compactMap { try? NetworkInterface.named($0) }
        } catch {
            throw RunError("cannot list the network interfaces: \(error)")
        }
        let request = UnderlayRequest(interfaces: settings.iface, patterns: settings.ifaceRegex, publicIP: settings.publicIP)
        let choice: UnderlayChoice
        do {
            choice = try request.choose(from: available, defaultRouteInterface: { try? NetworkInterface.defaultRouteInterfaceName() }) { pattern, text in
                (try? Regex(pattern)).map { text.contains($0) } ?? false
            }
        } catch {
            throw RunError("\(error)")
        }
        for line in choice.passedOver { logger.info("\(line); trying the next") }
        return (choice.interface, choice.bindAddress)
    }

    /// Resolves the underlay, gets the subnet, binds the socket, creates flannel0 and starts
    /// forwarding (and, with a registry, renewing the lease and following the peers).
    ///
    /// Whatever can fail on this machine (the port, the TUN, privileges) is tried before a lease
    /// is taken, and a lease this start created is released if a later step still fails, so a
    /// node that never forwarded does not linger on the others as a peer for the lease's TTL.
    /// The socket and the TUN clean themselves up when released (flannel0 goes with its address
    /// and route).
    ///
    /// The operations endpoints listen first, so /healthz answers (and /readyz says "starting")
    /// while the node waits for its registry, and a second weft in the same namespace is
    /// refused before it touches anything.
    static func start(_ settings: RunSettings, logger: Logger) async throws -> Node {
        // Everything below needs it; said first, and plainly, instead of as whichever step fails.
        if Capabilities.isEffective(Capabilities.netAdmin) == false {
            throw RunError("cannot create TUN \(settings.tunName): operation not permitted without CAP_NET_ADMIN (weft run needs root or CAP_NET_ADMIN)")
        }
        let (underlay, bindAddress) = try underlayInterface(settings, logger: logger)
        let board = StatusBoard()
        var operations: OperationsServer?
        if !settings.operations.isEmpty {
            do {
                operations = try await OperationsServer.start(settings.operations) { board.status() }
            } catch {
                throw RunError("\(error)")
            }
        }
        do {
            let node = try await startForwarding(settings, underlay: underlay, bindAddress: bindAddress, operations: operations, logger: logger)
            board.node.withLock { $0 = node }
            if let operations { logger.info("serving /healthz, /readyz, /metrics and /status on \(operations.listeners.map(\.description).joined(separator: " and "))") }
            return node
        } catch {
            await operations?.stop()
            throw error
        }
    }

    private static func startForwarding(
        _ settings: RunSettings, underlay: NetworkInterface, bindAddress: IPv4Address, operations: OperationsServer?, logger: Logger
    ) async throws -> Node {
        let ifaceName = underlay.name
        let pathMTU = OverlayDevice.pathMTU(underlayMTU: underlay.mtu)
        guard pathMTU >= 576 else {
            throw RunError("interface \(ifaceName) has MTU \(underlay.mtu); the overlay needs at least 604")
        }
        let publicIP = settings.publicIP ?? bindAddress
        let source = try await prepare(settings, publicIP: publicIP, logger: logger)
        let port = source.port

        // Bound to the interface's address, never 0.0.0.0 (flannel #398), so datagrams leave with
        // source port = destination port. One socket and one TUN queue per worker, so every
        // worker sends and receives (see Forwarder).
        let sockets: [UDPSocket]
        do {
            sockets = try UDPSocket.openGroup(bindTo: bindAddress, port: port, count: settings.workers)
        } catch {
            throw RunError("cannot bind UDP \(bindAddress):\(port): \(error)\(error.errno == EADDRINUSE ? " (is another weft or flanneld running on this node?)" : "")")
        }
        // Weft makes flannel0 and takes it away on exit: one that is already there would keep
        // its address and a dead route after Weft stops, or belong to a forwarder still running.
        if let existing = TunDevice.existingDevice(named: settings.tunName) {
            throw RunError("cannot create TUN \(settings.tunName): it already exists, \(existing); remove it with 'ip link delete \(settings.tunName)' if nothing uses it, or choose another name with --tun-name")
        }
        let tunQueues: [TunDevice]
        do {
            tunQueues = try TunDevice.openQueues(name: settings.tunName, offloads: settings.offloads, count: settings.workers)
        } catch {
            throw RunError("cannot create TUN \(settings.tunName): \(error) (\(tunOpenHint(error, name: settings.tunName)))")
        }
        var offload = Offload.off
        if settings.offloads {
            do {
                for socket in sockets { try socket.enableGRO() }
                offload = UDPSocket.supportsGSO ? .superPacketsAndSegmentedSends : .superPackets
            } catch {
                throw RunError("cannot enable UDP GRO on \(bindAddress):\(port): \(error) (try --no-offload)")
            }
        }
        let assignment = try await source.assign(logger: logger)
        do {
            return try finishStart(settings, assignment: assignment, logger: logger, tunQueues: tunQueues, sockets: sockets,
                                   offload: offload, underlayMTU: underlay.mtu, pathMTU: pathMTU, operations: operations,
                                   description: "via \(ifaceName) \(bindAddress):\(port); public ip \(publicIP)")
        } catch {
            if let leases = assignment.leases, leases.wasCreated {
                do {
                    try await leases.manager.release(leases.lease)
                } catch {
                    logger.error("could not release lease \(leases.lease.subnet) after the failed start: \(error)")
                }
            }
            throw error
        }
    }

    /// The steps after the lease: flannel0's address and route, the threads, subnet.env, signals.
    private static func finishStart(
        _ settings: RunSettings, assignment: Assignment, logger: Logger, tunQueues: [TunDevice], sockets: [UDPSocket],
        offload: Offload, underlayMTU: Int, pathMTU: Int, operations: OperationsServer?, description: String
    ) throws -> Node {
        // SIGINT or SIGTERM while starting cancels the start (RunCommand). These steps do not
        // look at cancellation themselves, so it is checked before them and after the rules, the
        // slow one (iptables may wait for the xtables lock): a node told to stop then gives its
        // new lease back and never says READY=1.
        try Task.checkCancellation()
        let tun = tunQueues[0]
        do {
            try OverlayDevice.configure(tun, network: assignment.network, subnet: assignment.subnet, underlayMTU: underlayMTU)
        } catch {
            throw RunError("cannot set up TUN \(tun.name): \(error)")
        }
        let routes = RouteTableStore(RouteTable(assignment.peers))
        let policy = ForwardingPolicy(localSubnet: assignment.subnet, pathMTU: pathMTU, checkPeerAddress: settings.checkPeerAddress)
        let failure = Failure()
        let stopRequest = DispatchSemaphore(value: 0)
        let forwarder: Forwarder
        do {
            forwarder = try Forwarder(
                lanes: zip(tunQueues, sockets).map { DataPathLane(tunnel: $0, transport: $1) }, routes: routes,
                configuration: ForwarderConfiguration(policy: policy, port: assignment.port, offload: offload)
            ) { message in
                failure.message.withLock { if $0 == nil { $0 = message } }
                stopRequest.signal()
            }
        } catch {
            throw RunError("cannot start the data path: \(error)")
        }
        let packetFilter = try installTrafficRules(settings.traffic, assignment: assignment, logger: logger)
        if Task.isCancelled {
            try? packetFilter?.remove()
            throw CancellationError()
        }
        if let leases = assignment.leases {
            do {
                // flanneld writes subnet.env once the backend is up, for the CNI plugin, which
                // masquerades at the bridge itself unless FLANNEL_IPMASQ says the node does.
                try SubnetEnvironmentFile.write(to: leases.subnetFile, network: assignment.network, subnet: assignment.subnet, mtu: pathMTU,
                                                ipMasquerade: packetFilter?.rules.masquerade ?? false)
            } catch {
                try? packetFilter?.remove()
                throw RunError("cannot write \(leases.subnetFile): \(error)")
            }
        }
        let node = Node(settings: settings, assignment: assignment, logger: logger, tunQueues: tunQueues, sockets: sockets, routes: routes, forwarder: forwarder, stopRequest: stopRequest, failure: failure, operations: operations, packetFilter: packetFilter)
        do { try node.installSignalHandlers() } catch { throw RunError("cannot watch for signals: \(error)") }
        forwarder.start()
        node.startLeaseMaintenance()
        node.startTrafficLog()
        node.startFilterResync()
        node.notifySystemd("READY=1\nSTATUS=forwarding \(assignment.subnet) on \(tun.name)")
        logger.info("forwarding \(assignment.subnet) on \(tun.name) (mtu \(pathMTU)) \(description); \(assignment.peers.count) peer(s), \(settings.workers) worker(s), offloads \(offload)\(offload.usesSuperPackets && tun.acceptsUDPSuperPackets ? " and UDP super-packets to \(tun.name)" : "")")
        return node
    }

    /// flanneld's masquerade and FORWARD rules, installed now; nil when neither is wanted.
    /// Masquerading that cannot be set up fails the start (pods would leave with addresses the
    /// outside cannot answer); forward rules that cannot are a warning, since most hosts
    /// forward without them.
    private static func installTrafficRules(_ traffic: TrafficSettings, assignment: Assignment, logger: Logger) throws -> PacketFilter? {
        let rules = TrafficRules(network: assignment.network, subnet: assignment.subnet, masquerade: traffic.masquerade,
                                 fullyRandom: traffic.fullyRandom, forward: traffic.forward)
        guard !rules.isEmpty else { return nil }
        let tool: PacketFilter.Tool = assignment.enableNFTables ? .nftables : .iptables
        var filter: PacketFilter?
        do {
            let created = try PacketFilter(tool: tool, rules: rules)
            filter = created
            try created.ensure()
            logger.info("\(describe(rules)) with \(tool), re-checked every \(traffic.resyncSeconds) s")
            return created
        } catch {
            // Half-installed rules would outlive this start.
            try? filter?.remove()
            if rules.masquerade {
                throw RunError("cannot set up masquerading (--ip-masq): \(error)")
            }
            logger.warning("no FORWARD rules for \(rules.network) (--iptables-forward-rules): \(error); forwarding relies on the host's FORWARD policy")
            return nil
        }
    }

    /// "masquerading traffic leaving 10.244.0.0/16 and accepting it in FORWARD".
    private static func describe(_ rules: TrafficRules) -> String {
        var parts: [String] = []
        if rules.masquerade { parts.append("masquerading traffic leaving \(rules.network)") }
        if rules.forward { parts.append("accepting \(rules.network) in FORWARD") }
        return parts.joined(separator: " and ")
    }

    /// What a failed TUNSETIFF most likely means, for the error line.
    private static func tunOpenHint(_ error: SystemError, name: String) -> String {
        switch error.errno {
        case EPERM, EACCES:
            "weft run needs root or CAP_NET_ADMIN"
        case ENOENT, ENODEV, ENXIO:
            "this kernel or container has no /dev/net/tun"
        case EINVAL, EBUSY:
            "a device named \(name) exists and is not a TUN Weft can open (see ip -d link show \(name); --tun-name picks another name)"
        default:
            "weft run needs root or CAP_NET_ADMIN and /dev/net/tun"
        }
    }

    /// Where the subnet will come from, with the port known: the net config is read (or
    /// written) already, but no lease is taken yet.
    private enum PreparedSource {
        case fixed(StaticPeers, port: UInt16)
        case registry(LeaseManager, NetworkConfig, subnetFile: String)

        var port: UInt16 {
            switch self {
            case .fixed(_, let port): port
            case .registry(_, let config, _): config.port
            }
        }

        /// The subnet and first peers: from the command line, or a lease taken now.
        func assign(logger: Logger) async throws -> Assignment {
            switch self {
            case .fixed(let peers, let port):
                return Assignment(network: peers.network, subnet: peers.subnet, port: port, peers: try peers.load(), leases: nil)
            case .registry(let manager, let config, let subnetFile):
                let acquired: LeaseManager.Acquisition, peers: [Route]
                do {
                    acquired = try await manager.waitingForRegistry("taking a lease") {
                        try await manager.acquire(config: config)
                    }
                    // The lease maintenance lists the peers again as it starts, and waits out an
                    // outage without a lease hanging on a start that cannot finish.
                    let leases = (try? await manager.listLeases().0) ?? []
                    peers = leases
                        .filter { $0.subnet != acquired.lease.subnet }
                        .map { Route(subnet: $0.subnet, nextHop: $0.publicIP) }
                } catch {
                    throw RunError("\(error)")
                }
                return Assignment(network: config.network, subnet: acquired.lease.subnet, port: config.port, peers: peers,
                                  leases: (manager, acquired.lease, acquired.wasCreated, subnetFile), enableNFTables: config.enableNFTables)
            }
        }
    }

    /// Opens the registry and reads its net config (writing one from `--network` when there is
    /// none), and checks `--port` against it.
    private static func prepare(_ settings: RunSettings, publicIP: IPv4Address, logger: Logger) async throws -> PreparedSource {
        switch settings.leases {
        case .fixed(let peers):
            return .fixed(peers, port: settings.port ?? NetworkConfig.defaultUDPPort)
        case .registry(let registrySettings):
            let registry: any SubnetRegistry
            let skippedEntries = SkippedEntries { message in logger.warning("\(message)") }
            switch registrySettings.store {
            case .directory(let path):
                let files = FileRegistry(directory: path, onUnreadableEntry: skippedEntries.record)
                do {
                    try files.prepare()
                } catch {
                    throw RunError("subnet registry \(path): \(error)")
                }
                registry = files
            case .etcd(let endpoints, let username, let password, let tls):
                do {
                    registry = try EtcdRegistry(endpoints: endpoints, username: username, password: password, tls: tls)
                } catch {
                    throw RunError("\(error)")
                }
            }
            let manager = LeaseManager(
                registry: registry,
                configuration: LeaseManagerConfiguration(
                    prefix: registrySettings.prefix, publicIP: publicIP, renewMargin: registrySettings.renewMargin,
                    previousSubnet: SubnetEnvironmentFile.previousSubnet(at: registrySettings.subnetFile)),
                skippedEntries: skippedEntries,
                log: { message in logger.info("\(message)") })
            let config: NetworkConfig
            let initial = registrySettings.initialNetwork.map { NetworkConfig.initialValue(network: $0, port: settings.port) }
            do {
                config = try await manager.waitingForRegistry("reading the net config") {
                    try await manager.loadConfig(creatingIfMissing: initial)
                }
            } catch {
                throw RunError("\(error)")
            }
            if let port = settings.port, port != config.port {
                throw RunError("--port \(port) differs from the net config's Backend.Port \(config.port): every node must use the same port")
            }
            return .registry(manager, config, subnetFile: registrySettings.subnetFile)
        }
    }

    /// The data path's totals now, with the kernel's drops in front of the TUN in the same
    /// account as Weft's own. flannel0 is always Weft's own (an existing one is refused), so the
    /// kernel's count starts at 0.
    private func counters() -> CounterSnapshot {
        var snapshot = forwarder.counters.snapshot()
        if let kernelDrops = tunQueues[0].kernelDrops, kernelDrops > 0 {
            snapshot.drops[.tunToUDP, default: [:]][.tunQueueFull] = kernelDrops
        }
        return snapshot
    }

    /// What the operations endpoints serve, read now.
    func status() -> NodeStatus {
        var lease: NodeStatus.Lease?
        var registry: NodeStatus.Registry?
        if let leases = assignment.leases {
            let health = leases.manager.health
            lease = health.leaseExpiresAt.map { NodeStatus.Lease(subnet: "\(leases.lease.subnet)", expiresAt: $0) }
            let kind: String
            if case .registry(let registrySettings) = settings.leases, case .etcd = registrySettings.store { kind = "etcd" } else { kind = "file" }
            registry = NodeStatus.Registry(kind: kind, reachable: health.registryReachable, failedRequests: health.failedRequests,
                                           skippedEntries: leases.manager.skippedEntries.count)
        }
        let running = failure.message.withLock { $0 == nil } && !stopping.load(ordering: .acquiring)
        return NodeStatus(
            network: "\(assignment.network)", subnet: "\(assignment.subnet)", tunName: tunQueues[0].name, workers: tunQueues.count,
            startedAt: startedAt, forwarding: running, lease: lease, registry: registry,
            peers: routes.current.routes.map { NodeStatus.Peer(subnet: "\($0.subnet)", publicIP: "\($0.nextHop)") },
            traffic: NodeStatus.Traffic(counters()))
    }

    /// Seconds between two debug lines about traffic.
    static let trafficLogInterval = 10.0

    /// With --log-level debug: one line every `trafficLogInterval` while traffic flows, what
    /// moved and what was dropped since the last line. Never per packet: a line per packet
    /// would cost more than forwarding it.
    private func startTrafficLog() {
        guard logger.logLevel <= .debug else { return }
        let logger = self.logger
        trafficLog = Task.detached { [self] in
            var previous = counters()
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(Node.trafficLogInterval)) } catch { return }
                let current = counters()
                if let line = current.changes(since: previous, seconds: Node.trafficLogInterval) {
                    logger.debug("traffic in the last \(Int(Node.trafficLogInterval)) s: \(line)")
                }
                previous = current
            }
        }
    }

    /// Puts back rules that something removed (a firewall reload, `iptables -F`), as
    /// flanneld's --iptables-resync does; a failing check is logged once until it works again.
    private func startFilterResync() {
        guard let packetFilter else { return }
        let logger = self.logger
        let seconds = settings.traffic.resyncSeconds
        filterResync = Task.detached {
            var failing = false
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(seconds)) } catch { return }
                // iptables may wait seconds for the xtables lock: on a Dispatch thread, never
                // on one of the concurrency pool's few, which the lease maintenance needs.
                let checked = await withCheckedContinuation { (done: CheckedContinuation<Result<Bool, PacketFilterError>, Never>) in
                    DispatchQueue.global().async { done.resume(returning: Result { () throws(PacketFilterError) in try packetFilter.ensure() }) }
                }
                do {
                    if try checked.get() {
                        logger.warning("\(packetFilter.tool) rules for \(packetFilter.rules.network) were missing or changed; put back")
                    }
                    if failing { logger.info("\(packetFilter.tool) rules checked again") }
                    failing = false
                } catch {
                    if !failing { logger.error("cannot check the \(packetFilter.tool) rules, retrying every \(seconds) s: \(error)") }
                    failing = true
                }
            }
        }
    }

    /// Renews the lease and follows the peers; a lost lease stops the node, as in flanneld.
    private func startLeaseMaintenance() {
        guard let leases = assignment.leases else { return }
        let routes = self.routes
        let logger = self.logger
        maintenance = Task.detached { [self] in
            let ending = await leases.manager.maintain(leases.lease) { peers in
                let previous = routes.current.routes
                routes.replace(with: RouteTable(peers))
                logger.info("peers changed: \(peers.count) route(s)\(Node.routeChanges(from: previous, to: peers))")
            }
            if ending == .leaseLost {
                leaseLost.store(true, ordering: .releasing)
                stopRequest.signal()
            }
        }
    }

    /// "; added 10.244.3.0/24 via 198.18.0.3; removed …": which peers a route change concerns.
    static func routeChanges(from previous: [Route], to current: [Route]) -> String {
        let before = Set(previous), after = Set(current)
        let added = current.filter { !before.contains($0) }
        let removed = previous.filter { !after.contains($0) }
        var text = ""
        if !added.isEmpty { text += "; added " + added.map { "\($0.subnet) via \($0.nextHop)" }.joined(separator: ", ") }
        if !removed.isEmpty { text += "; removed " + removed.map { "\($0.subnet) via \($0.nextHop)" }.joined(separator: ", ") }
        return text
    }

    /// Tells systemd (when it started us as `Type=notify`); a failure is logged, not fatal: the
    /// node forwards either way, and systemd reports the missing notification itself.
    private func notifySystemd(_ state: String) {
        guard let notifier = settings.notifier else { return }
        do {
            try notifier.notify(state)
        } catch {
            logger.warning("could not notify systemd at \(notifier.socketDescription): \(error)")
        }
    }

    private func installSignalHandlers() throws(SystemError) {
        signals = try SignalWatch([SIGINT, SIGTERM, SIGHUP]) { [self] number in
            if stopping.load(ordering: .acquiring) {
                logger.info("\(SignalWatch.name(number)) received while stopping: finishing the stop first")
            } else if number == SIGHUP {
                logger.info("SIGHUP received")
                reloadPeers()
            } else {
                logger.info("\(SignalWatch.name(number)) received: stopping")
                stopRequest.signal()
            }
        }
    }

    /// SIGHUP: re-reads the peers file and swaps in a new route table while traffic flows.
    private func reloadPeers() {
        guard case .fixed(let peers) = settings.leases, let path = peers.peersFile else {
            logger.notice("SIGHUP ignored: no --peers-file to re-read")
            return
        }
        do {
            let previous = routes.current.routes
            routes.replace(with: RouteTable(try peers.load()))
            logger.info("peers reloaded from \(path): \(routes.current.count) route(s)\(Self.routeChanges(from: previous, to: routes.current.routes))")
        } catch {
            logger.error("peers file \(path) not reloaded, keeping the current routes: \(error)")
        }
    }

    /// Returns after SIGINT/SIGTERM, a lost lease or a data-path failure.
    func waitForStop() async -> Outcome {
        // The semaphore is signalled from signal, registry and data-path threads; it is waited
        // for on a Dispatch thread, never on one of the concurrency pool's few threads.
        let stopRequest = self.stopRequest
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                stopRequest.wait()
                done.resume()
            }
        }
        if let message = failure.message.withLock({ $0 }) { return .failed(message) }
        if leaseLost.load(ordering: .acquiring) { return .leaseLost }
        return .signalled
    }

    /// Stops the threads, removes flannel0 (and with it its address and route), closes the
    /// socket. The lease stays in the registry, so a restarted node gets the same subnet.
    func shutDown() async -> CounterSnapshot {
        notifySystemd("STOPPING=1")
        stopping.store(true, ordering: .releasing)
        maintenance?.cancel()
        trafficLog?.cancel()
        filterResync?.cancel()
        await filterResync?.value
        if let packetFilter {
            do {
                try packetFilter.remove()
            } catch {
                logger.error("could not remove the \(packetFilter.tool) rules: \(error)")
            }
        }
        await operations?.stop()
        forwarder.stop()
        let summary = counters()
        for queue in tunQueues { queue.close() }
        for socket in sockets { socket.close() }
        // The signals stay watched for as long as the node lives (the watch goes with it), not
        // cancelled here: a second SIGTERM (timeout(1) sends one to the process and one to its
        // group; an impatient operator sends another) would otherwise get the default action in
        // the middle of the stop, and leave the rules and the status socket behind.
        return summary
    }
}
