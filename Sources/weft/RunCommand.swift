import ArgumentParser
import Dispatch
import Glibc
import Logging
import Synchronization
import WeftCore
import WeftDataPath
import WeftLinux

/// `weft run`: this node's forwarder, with its peers given on the command line or in a file.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Forward this node's overlay traffic to its peers (static peers).",
        discussion: """
            Sets the node up as flanneld's udp backend does: a TUN device (flannel0) with the \
            subnet's network address as a /32, MTU = underlay MTU - 28, a route for the whole \
            overlay network through it, and one UDP socket bound to the underlay interface's \
            address and --port. Then it carries packets until SIGINT or SIGTERM, removes what it \
            created, prints a one-line counter summary and exits 0.

            Flags that flanneld also has keep flanneld's names and can be set from the \
            environment: FLANNELD_IFACE, FLANNELD_PUBLIC_IP.

            Example (node A of two):
              weft run --iface ul0 --network 10.244.0.0/16 --subnet 10.244.1.0/24 \\
                       --peer 10.244.2.0/24=198.18.0.2
            """
    )

    @Option(help: ArgumentHelp(
        "Underlay interface to bind to (env FLANNELD_IFACE). Default: the interface of the default route.",
        valueName: "name"))
    var iface: String?

    @Option(help: ArgumentHelp("The overlay network, flannel's Network (e.g. 10.244.0.0/16).", valueName: "cidr"))
    var network: String

    @Option(help: ArgumentHelp("This node's subnet, inside --network (e.g. 10.244.1.0/24).", valueName: "cidr"))
    var subnet: String

    @Option(name: .customLong("peer"), help: ArgumentHelp(
        "A peer node: its subnet and public IP. Repeat for each peer.", valueName: "subnet=ip"))
    var peers: [String] = []

    @Option(help: ArgumentHelp(
        "A file of peers, one subnet=ip per line (# comments allowed), added to --peer and re-read on SIGHUP while traffic flows.",
        valueName: "path"))
    var peersFile: String?

    @Option(help: "UDP port of every node, flannel's Backend.Port.")
    var port: UInt16 = 8285

    @Option(name: .customLong("public-ip"), help: ArgumentHelp(
        "The address peers reach this node at (env FLANNELD_PUBLIC_IP). Default: the interface's address. Set it behind NAT.",
        valueName: "ip"))
    var publicIP: String?

    @Option(help: ArgumentHelp("Name of the TUN device.", valueName: "name"))
    var tunName = "flannel0"

    @Option(help: "Worker threads that route and send. Default: the number of cores.")
    var workers: Int?

    @Flag(help: "Accept datagrams from any address (NAT between nodes). The inner source must still belong to a peer's subnet.")
    var skipPeerAddressCheck = false

    @Flag(help: "Move one packet per system call: no TUN segmentation offload, no UDP GSO/GRO. The wire format is the same either way.")
    var noOffload = false

    @Option(help: "How much to log on stderr.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try settings()
    }

    func run() throws {
        let settings = try settings()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "weft")
        let node = try Node.start(settings, logger: logger)
        let outcome = node.waitForStop()
        let summary = node.shutDown()
        print("weft: stopped; \(summary.summaryLine)")
        if case .failed(let message) = outcome {
            throw RunError(message)
        }
    }

    private func settings() throws -> RunSettings {
        let environment = Environment()
        guard let network = IPv4Prefix(self.network) else {
            throw ValidationError("--network '\(self.network)' is not an IPv4 network in CIDR form (e.g. 10.244.0.0/16)")
        }
        guard let subnet = IPv4Prefix(self.subnet) else {
            throw ValidationError("--subnet '\(self.subnet)' is not an IPv4 network in CIDR form (e.g. 10.244.1.0/24)")
        }
        guard network.contains(subnet), subnet.length > network.length else {
            throw ValidationError("--subnet \(subnet) must be a smaller network inside --network \(network)")
        }
        var routes = try peers.map { try PeerSpecification.parse($0, source: "--peer") }
        if let peersFile {
            routes += try PeerSpecification.load(peersFile)
        }
        try PeerSpecification.check(routes, network: network, ownSubnet: subnet)
        let publicIPText = publicIP ?? environment["FLANNELD_PUBLIC_IP"]
        var publicAddress: IPv4Address?
        if let publicIPText {
            guard let address = IPv4Address(publicIPText) else {
                throw ValidationError("--public-ip '\(publicIPText)' is not an IPv4 address")
            }
            publicAddress = address
        }
        if let workers, !(1...256).contains(workers) {
            throw ValidationError("--workers must be between 1 and 256, not \(workers)")
        }
        guard port != 0 else { throw ValidationError("--port must not be 0: peers address each other at it") }
        guard (1...15).contains(tunName.utf8.count) else {
            throw ValidationError("--tun-name must be 1 to 15 characters")
        }
        return RunSettings(
            iface: iface ?? environment["FLANNELD_IFACE"],
            network: network,
            subnet: subnet,
            staticPeers: routes,
            peersFile: peersFile,
            port: port,
            publicIP: publicAddress,
            tunName: tunName,
            workers: workers ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))),
            checkPeerAddress: !skipPeerAddressCheck,
            offloads: !noOffload,
            logLevel: logLevel
        )
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
    /// Set and not empty.
    subscript(name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }
}
