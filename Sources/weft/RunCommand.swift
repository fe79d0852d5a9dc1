import ArgumentParser
import Dispatch
import Glibc
import Logging
import Synchronization
import WeftCore
import WeftDataPath
import WeftEtcd
import WeftLinux
import WeftOperations
import WeftRegistry

/// `weft run`: this node's forwarder, with its peers given on the command line or in a file.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Forward this node's overlay traffic to its peers.",
        discussion: """
            Sets the node up as flanneld's udp backend does: a TUN device (flannel0) with the \
            subnet's network address as a /32, MTU = underlay MTU - 28, a route for the whole \
            overlay network through it, and one UDP socket bound to the underlay interface's \
            address and port. Then it carries packets until SIGINT or SIGTERM, removes what it \
            created, prints a one-line counter summary and exits 0.

            The subnet and the peers come from one of two places:
              - a registry, as flanneld does (without --subnet): etcd (--etcd-endpoints), with \
            flanneld's keys and values, or the embedded file registry in --subnet-dir, shared by \
            every node that can reach the directory. The node leases a \
            subnet (its own again after a restart), writes --subnet-file for the CNI plugin, \
            renews the lease and follows the other nodes' leases while traffic flows. The net \
            config (flannel's JSON) is read from <prefix>/config; --network writes one if \
            there is none.
              - the command line (with --subnet): --peer and --peers-file (re-read on SIGHUP).

            Flags that flanneld also has keep flanneld's names and can be set from the \
            environment as FLANNELD_<NAME>: FLANNELD_IFACE, FLANNELD_PUBLIC_IP, \
            FLANNELD_SUBNET_FILE, FLANNELD_SUBNET_LEASE_RENEW_MARGIN, FLANNELD_ETCD_ENDPOINTS, \
            FLANNELD_ETCD_PREFIX, FLANNELD_ETCD_USERNAME, FLANNELD_ETCD_PASSWORD, \
            FLANNELD_ETCD_CAFILE, FLANNELD_ETCD_CERTFILE, FLANNELD_ETCD_KEYFILE, \
            FLANNELD_HEALTHZ_IP, FLANNELD_HEALTHZ_PORT, FLANNELD_IP_MASQ, \
            FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE, FLANNELD_IPTABLES_FORWARD_RULES, \
            FLANNELD_IPTABLES_RESYNC. \
            flanneld's own spellings work too (-etcd-endpoints=URL, -iface eth0, =false, =0), \
            and a binary named flanneld runs weft run. flanneld flags that Weft does not \
            implement are accepted with a note when off or at flanneld's default \
            (--kube-subnet-mgr=false, -v=N), else refused.

            Like flanneld, it accepts the cluster network in FORWARD (--no-iptables-forward-rules \
            turns that off) and with --ip-masq masquerades pod traffic leaving it, through \
            iptables, or nft when the net config has "EnableNFTables": true; the rules are \
            re-checked every --iptables-resync seconds and removed on a clean stop.

            While it runs, 'weft status' prints its counters, peers and lease, and \
            --healthz-port serves /healthz (the process runs), /readyz (forwarding, with an \
            unexpired lease) and /metrics (Prometheus text) over HTTP.

            Examples:
              weft run --iface eth0 --etcd-endpoints http://198.18.0.1:2379
              weft run --iface ul0 --subnet-dir /var/lib/weft/registry --network 10.244.0.0/16
              weft run --iface ul0 --network 10.244.0.0/16 --subnet 10.244.1.0/24 \\
                       --peer 10.244.2.0/24=198.18.0.2
            """
    )

    @Option(help: ArgumentHelp(
        "Underlay interface to bind to, by name or by one of its IPv4 addresses; repeat to try several in order, then --iface-regex (flanneld's rule; env FLANNELD_IFACE, one entry). Default: the interface holding --public-ip if given, else the interface of the default route.",
        valueName: "name|address"))
    var iface: [String] = []

    @Option(name: .customLong("iface-regex"), help: ArgumentHelp(
        "When no --iface entry is usable: pick the underlay by regular expression, matched against each interface's IPv4 addresses first, then its name (flanneld's rule; repeat to try several in order; env FLANNELD_IFACE_REGEX, one pattern).",
        valueName: "regex"))
    var ifaceRegex: [String] = []

    @Option(help: ArgumentHelp(
        "The overlay network, flannel's Network (e.g. 10.244.0.0/16). With a registry: the net config to write when it has none.",
        valueName: "cidr"), transform: IPv4Prefix.parseArgument)
    var network: IPv4Prefix?

    @Option(help: ArgumentHelp("This node's subnet, inside --network (e.g. 10.244.1.0/24): static mode, no registry.", valueName: "cidr"),
            transform: IPv4Prefix.parseArgument)
    var subnet: IPv4Prefix?

    @Option(name: .customLong("peer"), help: ArgumentHelp(
        "Static mode: a peer node, its subnet and public IP. Repeat for each peer.", valueName: "subnet=ip"))
    var peers: [String] = []

    @Option(help: ArgumentHelp(
        "Static mode: a file of peers, one subnet=ip per line (# comments allowed), added to --peer and re-read on SIGHUP while traffic flows.",
        valueName: "path"))
    var peersFile: String?

    @Option(help: ArgumentHelp(
        "The embedded file registry: a directory shared by the nodes (created if missing).",
        valueName: "path"))
    var subnetDir = "/var/lib/weft/registry"

    @Option(help: ArgumentHelp(
        "etcd v3 members to lease from instead of the file registry, comma-separated (env FLANNELD_ETCD_ENDPOINTS), e.g. http://198.18.0.1:2379. Keys and values are flanneld's, so Weft and flanneld nodes see each other.",
        valueName: "urls"))
    var etcdEndpoints: String?

    @Option(help: ArgumentHelp("Key prefix of the net config and the leases (env FLANNELD_ETCD_PREFIX). Default: /coreos.com/network", valueName: "prefix"))
    var etcdPrefix: String?

    @Option(help: ArgumentHelp("etcd user, with --etcd-password (env FLANNELD_ETCD_USERNAME).", valueName: "name"))
    var etcdUsername: String?

    @Option(help: ArgumentHelp("etcd password (env FLANNELD_ETCD_PASSWORD).", valueName: "password"))
    var etcdPassword: String?

    @Option(help: ArgumentHelp(
        "PEM CA certificates that sign etcd's server certificate, for https:// endpoints (env FLANNELD_ETCD_CAFILE). Default: the system trust store.",
        valueName: "path"))
    var etcdCafile: String?

    @Option(help: ArgumentHelp(
        "PEM client certificate for etcd's --client-cert-auth, with --etcd-keyfile (env FLANNELD_ETCD_CERTFILE).",
        valueName: "path"))
    var etcdCertfile: String?

    @Option(help: ArgumentHelp("PEM private key of --etcd-certfile, unencrypted (env FLANNELD_ETCD_KEYFILE).", valueName: "path"))
    var etcdKeyfile: String?

    @Option(help: ArgumentHelp(
        "Where to write FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and FLANNEL_IPMASQ for the CNI plugin (env FLANNELD_SUBNET_FILE). Default: /run/flannel/subnet.env",
        valueName: "path"))
    var subnetFile: String?

    @Option(help: ArgumentHelp(
        "Renew the 24 h lease this many minutes before it expires, 1 to 1439 (env FLANNELD_SUBNET_LEASE_RENEW_MARGIN). Default: 60",
        valueName: "minutes"))
    var subnetLeaseRenewMargin: Int?

    @Option(help: "UDP port of every node, flannel's Backend.Port. Default: 8285, or the net config's with a registry.")
    var port: UInt16?

    @Option(name: .customLong("public-ip"), help: ArgumentHelp(
        "The address peers reach this node at (env FLANNELD_PUBLIC_IP). Default: the interface's address. Set it behind NAT.",
        valueName: "ip"))
    var publicIP: IPv4Address?

    @Option(help: ArgumentHelp("Name of the TUN device.", valueName: "name"))
    var tunName = "flannel0"

    @Option(help: "Lanes: threads that each forward both ways on one flannel0 queue and one UDP socket (1: the single-queue flannel0 flanneld makes). Default: the number of cores.")
    var workers: Int?

    @Flag(help: "Accept datagrams from any address (NAT between nodes). The inner source must still belong to a peer's subnet.")
    var skipPeerAddressCheck = false

    @Flag(help: "Move one packet per system call: no TUN segmentation offload, no UDP GSO/GRO. The wire format is the same either way.")
    var noOffload = false

    @Flag(help: "Masquerade pod traffic that leaves the cluster network, never pod-to-pod traffic (flanneld's rules; env FLANNELD_IP_MASQ). Written as FLANNEL_IPMASQ=true to --subnet-file.")
    var ipMasq = false

    @Flag(help: "Masquerade without --random-fully (env FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE).")
    var ipMasqFullyRandomDisable = false

    @Flag(inversion: .prefixedNo, help: "Accept the cluster network in FORWARD, for hosts whose FORWARD policy is DROP (flanneld's default; env FLANNELD_IPTABLES_FORWARD_RULES).")
    var iptablesForwardRules = true

    @Option(help: ArgumentHelp(
        "Seconds between checks that the masquerade and forward rules are still in place; missing ones are put back (env FLANNELD_IPTABLES_RESYNC). Default: 5",
        valueName: "seconds"))
    var iptablesResync: Int?

    @Option(help: ArgumentHelp(
        "Serve /healthz, /readyz and /metrics over HTTP on this port (flanneld's flag; env FLANNELD_HEALTHZ_PORT). 0: off.",
        valueName: "port"))
    var healthzPort: Int?

    @Option(help: ArgumentHelp(
        "Address for --healthz-port (env FLANNELD_HEALTHZ_IP). Default: 127.0.0.1, loopback only (flanneld's default is 0.0.0.0; give it to let kubelet probe the node's address).",
        valueName: "ip"))
    var healthzIP: String?

    @Option(help: ArgumentHelp(
        "Unix socket that 'weft status' reads (it also answers /healthz, /readyz and /metrics), or 'none'. Default: \(StatusSocket.directory)/status-netns-<id>.sock, one per network namespace.",
        valueName: "path"))
    var statusSocket: String?

    @Option(help: "How much to log on stderr. debug adds a line about the traffic every 10 s while it flows.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try settings()
    }

    func run() async throws {
        let settings = try settings()
        LoggingSystem.bootstrap { _ in LogLineHandler(level: settings.logLevel) }
        let logger = Logger(label: "weft")
        // A start can wait a long time (for etcd, for the net config); SIGINT or SIGTERM then
        // cancels it, so the status socket and a lease just created are cleaned up, instead
        // of the default action killing the process with both left behind.
        let starting = Task { try await Node.start(settings, logger: logger) }
        let startSignals: SignalWatch
        do {
            startSignals = try SignalWatch([SIGINT, SIGTERM]) { number in
                logger.info("\(SignalWatch.name(number)) received while starting: stopping")
                starting.cancel()
            }
        } catch {
            starting.cancel()
            throw RunError("cannot watch for signals: \(error)")
        }
        let node: Node
        do {
            node = try await starting.value
            // The node watches the signals itself from here on.
            startSignals.cancel()
        } catch {
            startSignals.cancel()
            if let number = startSignals.received {
                print("weft: stopped by \(SignalWatch.name(number)) before forwarding")
                return
            }
            throw error
        }
        // The node, and with it its signal watch, lives until the summary is out.
        defer { withExtendedLifetime(node) {} }
        // A signal after the start's last check for cancellation (Node.finishStart) has been
        // taken by this watch, not the node's, and would be lost: the node would forward until
        // SIGKILL. Stop now instead.
        let outcome: Node.Outcome
        if let number = startSignals.received {
            logger.info("stopping for the \(SignalWatch.name(number)) received while starting")
            outcome = .signalled
        } else {
            outcome = await node.waitForStop()
        }
        let summary = await node.shutDown()
        if case .leaseLost = outcome {
            logger.notice("our lease was deleted from the registry: stopping, as flanneld does")
        }
        print("weft: stopped; \(summary.summaryLine)")
        if case .failed(let message) = outcome {
            throw RunError(message)
        }
    }

    private func settings() throws -> RunSettings {
        let environment = Environment()
        var publicAddress = publicIP
        if publicAddress == nil, let text = environment["FLANNELD_PUBLIC_IP"] {
            guard let address = IPv4Address(text) else {
                throw ValidationError("FLANNELD_PUBLIC_IP '\(text)' is not an IPv4 address")
            }
            publicAddress = address
        }
        if let workers, !(1...256).contains(workers) {
            throw ValidationError("--workers must be between 1 and 256, not \(workers)")
        }
        if port == 0 { throw ValidationError("--port must not be 0: peers address each other at it") }
        guard (1...15).contains(tunName.utf8.count) else {
            throw ValidationError("--tun-name must be 1 to 15 characters")
        }
        let patterns = ifaceRegex.isEmpty ? environment["FLANNELD_IFACE_REGEX"].map { [$0] } ?? [] : ifaceRegex
        for pattern in patterns {
            do { _ = try Regex(pattern) } catch {
                throw ValidationError("--iface-regex '\(pattern)' is not a valid regular expression: \(error)")
            }
        }
        return RunSettings(
            iface: iface.isEmpty ? environment["FLANNELD_IFACE"].map { [$0] } ?? [] : iface,
            ifaceRegex: patterns,
            leases: try leaseSource(network: network, environment: environment),
            port: port,
            publicIP: publicAddress,
            tunName: tunName,
            workers: workers ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))),
            checkPeerAddress: !skipPeerAddressCheck,
            offloads: !noOffload,
            logLevel: logLevel,
            notifier: try systemdNotifier(environment: environment),
            operations: try operationsListeners(environment: environment),
            traffic: try trafficSettings(environment: environment)
        )
    }

    /// The masquerade and forward rules to keep, from the flags or flanneld's variables.
    private func trafficSettings(environment: Environment) throws -> TrafficSettings {
        func boolean(_ flag: Bool, _ name: String, default defaultValue: Bool) throws -> Bool {
            // A flag given on the command line wins over the environment, as in flanneld.
            if flag != defaultValue { return flag }
            guard let text = environment[name] else { return defaultValue }
            guard let value = FlanneldFlags.goBool(Substring(text)) else {
                throw ValidationError("\(name) '\(text)' is not a boolean (true, false, 1, 0, t, f)")
            }
            return value
        }
        let resyncText = iptablesResync.map(String.init) ?? environment["FLANNELD_IPTABLES_RESYNC"] ?? "5"
        guard let resync = Int(resyncText), (1...3600).contains(resync) else {
            throw ValidationError("--iptables-resync must be 1 to 3600 seconds, not \(resyncText)")
        }
        return TrafficSettings(
            masquerade: try boolean(ipMasq, "FLANNELD_IP_MASQ", default: false),
            fullyRandom: !(try boolean(ipMasqFullyRandomDisable, "FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE", default: false)),
            forward: try boolean(iptablesForwardRules, "FLANNELD_IPTABLES_FORWARD_RULES", default: true),
            resyncSeconds: resync)
    }

    /// The status socket, and flanneld's health port when one is set.
    private func operationsListeners(environment: Environment) throws -> [OperationsListener] {
        var listeners: [OperationsListener] = []
        let socket = statusSocket ?? StatusSocket.defaultPath
        if socket != "none" {
            guard !socket.isEmpty else { throw ValidationError("--status-socket is empty; 'none' turns it off") }
            listeners.append(.unix(path: socket))
        }
        let portText = healthzPort.map(String.init) ?? environment["FLANNELD_HEALTHZ_PORT"] ?? "0"
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ValidationError("--healthz-port must be 0 (off) to 65535, not \(portText)")
        }
        let host = healthzIP ?? environment["FLANNELD_HEALTHZ_IP"] ?? "127.0.0.1"
        guard IPv4Address(host) != nil || host.contains(":") else {
            throw ValidationError("--healthz-ip '\(host)' is not an IP address")
        }
        if port != 0 { listeners.append(.tcp(host: host, port: port)) }
        return listeners
    }

    private func systemdNotifier(environment: Environment) throws -> SystemdNotifier? {
        do {
            return try SystemdNotifier(notifySocket: environment["NOTIFY_SOCKET"])
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// Static peers with --subnet; otherwise a registry.
    private func leaseSource(network: IPv4Prefix?, environment: Environment) throws -> LeaseSource {
        guard let subnet else {
            if !peers.isEmpty || peersFile != nil {
                throw ValidationError("--peer and --peers-file need --subnet; without it the peers come from the registry")
            }
            let marginText = subnetLeaseRenewMargin.map(String.init) ?? environment["FLANNELD_SUBNET_LEASE_RENEW_MARGIN"] ?? "60"
            guard let margin = Int(marginText), (1...1439).contains(margin) else {
                throw ValidationError("--subnet-lease-renew-margin must be 1 to 1439 minutes, not \(marginText)")
            }
            var store = RegistrySettings.Store.directory(subnetDir)
            if let endpoints = etcdEndpoints ?? environment["FLANNELD_ETCD_ENDPOINTS"] {
                let list = endpoints.split(separator: ",").map { String($0).trimmed }.filter { !$0.isEmpty }
                guard !list.isEmpty else { throw ValidationError("--etcd-endpoints is empty") }
                for endpoint in list where !endpoint.hasPrefix("http://") && !endpoint.hasPrefix("https://") {
                    throw ValidationError("--etcd-endpoints: '\(endpoint)' must be an http:// or https:// URL")
                }
                let username = etcdUsername ?? environment["FLANNELD_ETCD_USERNAME"]
                let password = etcdPassword ?? environment["FLANNELD_ETCD_PASSWORD"]
                if (username == nil) != (password == nil) {
                    throw ValidationError("--etcd-username and --etcd-password go together")
                }
                let nonEmpty = { (value: String?) in value.flatMap { $0.isEmpty ? nil : $0 } }
                let tls = EtcdTLS(
                    caFile: nonEmpty(etcdCafile ?? environment["FLANNELD_ETCD_CAFILE"]),
                    certificateFile: nonEmpty(etcdCertfile ?? environment["FLANNELD_ETCD_CERTFILE"]),
                    keyFile: nonEmpty(etcdKeyfile ?? environment["FLANNELD_ETCD_KEYFILE"]))
                if (tls.certificateFile == nil) != (tls.keyFile == nil) {
                    throw ValidationError("--etcd-certfile and --etcd-keyfile go together")
                }
                store = .etcd(endpoints: list, username: username, password: password, tls: tls)
            }
            return .registry(RegistrySettings(
                store: store,
                prefix: etcdPrefix ?? environment["FLANNELD_ETCD_PREFIX"] ?? "/coreos.com/network",
                subnetFile: subnetFile ?? environment["FLANNELD_SUBNET_FILE"] ?? SubnetEnvironmentFile.defaultPath,
                renewMargin: Double(margin) * 60,
                initialNetwork: network))
        }
        guard let network else {
            throw ValidationError("--subnet needs --network (static mode), or leave both to the registry")
        }
        guard network.contains(subnet), subnet.length > network.length else {
            throw ValidationError("--subnet \(subnet) must be a smaller network inside --network \(network)")
        }
        let staticPeers = StaticPeers(network: network, subnet: subnet,
                                      flagPeers: try peers.map { try PeerSpecification.parse($0, source: "--peer") },
                                      peersFile: peersFile)
        _ = try staticPeers.load()  // a bad file or a conflict is a usage error, reported before start
        return .fixed(staticPeers)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// A failure after start-up, reported as one line.
struct RunError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The process environment, read once.
struct Environment {
    private let values: [String: String]
    init() {
        var values: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                values[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        self.values = values
    }
    /// Given variables instead of the process's (for tests).
    init(_ values: [String: String]) {
        self.values = values
    }
    /// Set and not empty.
    subscript(name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }
}
