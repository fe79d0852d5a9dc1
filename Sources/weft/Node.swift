import Dispatch
import Glibc
import Logging
import Synchronization
import WeftCore
import WeftDataPath
import WeftLinux

/// Everything `weft run` needs after parsing, with defaults applied.
struct RunSettings {
    var iface: String?
    var network: IPv4Prefix
    var subnet: IPv4Prefix
    var staticPeers: [Route]
    var peersFile: String?
    var port: UInt16
    var publicIP: IPv4Address?
    var tunName: String
    var workers: Int
    var checkPeerAddress: Bool
    var offloads: Bool
    var logLevel: Logger.Level
}

/// A running node: its devices, its forwarder and the signals that steer it.
final class Node: @unchecked Sendable {
    enum Outcome { case signalled, failed(String) }

    private let settings: RunSettings
    private let logger: Logger
    private let tun: TunDevice
    private let socket: UDPSocket
    private let routes: RouteTableStore
    private let forwarder: Forwarder
    /// Signalled by SIGINT/SIGTERM and by a data-path failure.
    private let stopRequest: DispatchSemaphore
    private let failure: Failure
    private var signalSources: [DispatchSourceSignal] = []
    private let signalQueue = DispatchQueue(label: "weft.signals")

    /// The first data-path failure, kept for the exit message.
    final class Failure: Sendable {
        let message = Mutex<String?>(nil)
    }

    private init(settings: RunSettings, logger: Logger, tun: TunDevice, socket: UDPSocket, routes: RouteTableStore, forwarder: Forwarder, stopRequest: DispatchSemaphore, failure: Failure) {
        self.stopRequest = stopRequest
        self.failure = failure
        self.settings = settings
        self.logger = logger
        self.tun = tun
        self.socket = socket
        self.routes = routes
        self.forwarder = forwarder
    }

    /// Resolves the underlay, binds the socket, creates flannel0 and starts forwarding.
    static func start(_ settings: RunSettings, logger: Logger) throws -> Node {
        let ifaceName: String
        do {
            ifaceName = try settings.iface ?? NetworkInterface.defaultRouteInterfaceName()
        } catch {
            throw RunError("no --iface given and no default route to take it from: \(error)")
        }
        let underlay: NetworkInterface
        do {
            underlay = try NetworkInterface.named(ifaceName)
        } catch {
            throw RunError("interface \(ifaceName): \(error)")
        }
        guard let bindAddress = underlay.firstIPv4Address else {
            throw RunError("interface \(ifaceName) has no IPv4 address to bind to")
        }
        let pathMTU = underlay.mtu - OverlayDevice.encapsulationOverhead
        guard pathMTU >= 576 else {
            throw RunError("interface \(ifaceName) has MTU \(underlay.mtu); the overlay needs at least 604")
        }
        // Bound to the interface's address, never 0.0.0.0 (flannel #398), so datagrams leave with
        // source port = destination port.
        let socket: UDPSocket
        do {
            socket = try UDPSocket(bindTo: bindAddress, port: settings.port)
        } catch {
            throw RunError("cannot bind UDP \(bindAddress):\(settings.port): \(error)")
        }
        let tun: TunDevice
        do {
            tun = try OverlayDevice.create(name: settings.tunName, network: settings.network, subnet: settings.subnet, underlayMTU: underlay.mtu, offloads: settings.offloads)
        } catch {
            socket.close()
            throw RunError("cannot set up TUN \(settings.tunName): \(error) (weft run needs root or CAP_NET_ADMIN and /dev/net/tun)")
        }
        var segmentationOffload = false
        if settings.offloads {
            do {
                try socket.enableGRO()
                segmentationOffload = UDPSocket.supportsGSO
            } catch {
                tun.close()
                socket.close()
                throw RunError("cannot enable UDP GRO on \(bindAddress):\(settings.port): \(error) (try --no-offload)")
            }
        }
        let routes = RouteTableStore(RouteTable(settings.staticPeers))
        let policy = ForwardingPolicy(localSubnet: settings.subnet, pathMTU: pathMTU, checkPeerAddress: settings.checkPeerAddress)
        let failure = Failure()
        let stopRequest = DispatchSemaphore(value: 0)
        let forwarder: Forwarder
        do {
            forwarder = try Forwarder(
                tunnel: tun, transport: socket, routes: routes,
                configuration: ForwarderConfiguration(
                    policy: policy, port: settings.port, workers: settings.workers,
                    offloads: settings.offloads, segmentationOffload: segmentationOffload)
            ) { message in
                failure.message.withLock { if $0 == nil { $0 = message } }
                stopRequest.signal()
            }
        } catch {
            tun.close()
            socket.close()
            throw RunError("cannot start the data path: \(error)")
        }
        let node = Node(settings: settings, logger: logger, tun: tun, socket: socket, routes: routes, forwarder: forwarder, stopRequest: stopRequest, failure: failure)
        node.installSignalHandlers()
        forwarder.start()
        logger.info("forwarding \(settings.subnet) on \(tun.name) (mtu \(pathMTU)) via \(ifaceName) \(bindAddress):\(settings.port); public ip \(settings.publicIP ?? bindAddress); \(settings.staticPeers.count) peer(s), \(settings.workers) worker(s), offloads \(settings.offloads ? (segmentationOffload ? "TSO+GSO+GRO" : "TSO+GRO") : "off")")
        for route in routes.current.routes {
            logger.debug("route \(route.subnet) via \(route.nextHop):\(settings.port)")
        }
        return node
    }

    private func installSignalHandlers() {
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number, SIG_IGN)  // DispatchSource handles them; the default action would kill us
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler { [self] in
                if number == SIGHUP { reloadPeers() } else { stopRequest.signal() }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// SIGHUP: re-reads the peers file and swaps in a new route table while traffic flows.
    private func reloadPeers() {
        guard let path = settings.peersFile else {
            logger.notice("SIGHUP ignored: no --peers-file to re-read")
            return
        }
        do {
            var peers = try PeerSpecification.load(path)
            peers = settings.staticPeers.filter { fixed in !peers.contains { $0.subnet == fixed.subnet } } + peers
            try PeerSpecification.check(peers, network: settings.network, ownSubnet: settings.subnet)
            routes.replace(with: RouteTable(peers))
            logger.info("peers reloaded from \(path): \(routes.current.count) route(s)")
        } catch {
            logger.error("peers file \(path) not reloaded, keeping the current routes: \(error)")
        }
    }

    /// Blocks until SIGINT/SIGTERM or a data-path failure.
    func waitForStop() -> Outcome {
        stopRequest.wait()
        if let message = failure.message.withLock({ $0 }) { return .failed(message) }
        return .signalled
    }

    /// Stops the threads, removes flannel0 (and with it its address and route), closes the socket.
    func shutDown() -> CounterSnapshot {
        for source in signalSources { source.cancel() }
        forwarder.stop()
        tun.close()
        socket.close()
        return forwarder.counters.snapshot()
    }
}
