import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftLinux

/// Where the operations endpoints listen.
public enum OperationsListener: Sendable, CustomStringConvertible {
    /// flanneld's --healthz-ip/--healthz-port: for kubelet probes and Prometheus.
    case tcp(host: String, port: Int)
    /// The node's status socket, for `weft status` (and `curl --unix-socket`).
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

/// A failure to listen, with the address in the message.
public struct OperationsError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The HTTP/1.1 server behind /healthz, /readyz, /metrics and /status, on SwiftNIO.
///
/// Every request asks `status` for a fresh `NodeStatus`, so what is served is never older than
/// the request, and the server keeps no state of the node's. One response per connection
/// (`Connection: close`): probes and scrapes come seconds apart, and it keeps the handler simple.
public final class OperationsServer: Sendable {
    /// nil while the node is still starting (the server listens before the lease is taken).
    public typealias StatusProvider = @Sendable () -> NodeStatus?

    private let channels: [any Channel]
    private let socketPaths: [String]
    public let listeners: [OperationsListener]

    private init(channels: [any Channel], socketPaths: [String], listeners: [OperationsListener]) {
        self.channels = channels
        self.socketPaths = socketPaths
        self.listeners = listeners
    }

    /// Binds every listener or none: a failure closes what was bound already.
    ///
    /// A Unix socket path that a live server answers on is refused (another node runs with it);
    /// one left behind by a killed node is replaced.
    public static func start(_ listeners: [OperationsListener], status: @escaping StatusProvider) async throws -> OperationsServer {
        var channels: [any Channel] = []
        var socketPaths: [String] = []
        do {
            for listener in listeners {
                let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                            try channel.pipeline.syncOperations.addHandler(OperationsHandler(status: status))
                        }
                    }
                switch listener {
                case .tcp(let host, let port):
                    do {
                        channels.append(try await bootstrap.bind(host: host, port: port).get())
                    } catch {
                        throw OperationsError("cannot listen on \(listener): \(error)")
                    }
                case .unix(let path):
                    try removeStaleSocket(path)
                    do {
                        channels.append(try await bootstrap.bind(unixDomainSocketPath: path).get())
                    } catch {
                        throw OperationsError("cannot listen on \(listener): \(error)")
                    }
                    socketPaths.append(path)
                    // The status names peers and addresses: readable by root and the socket's group.
                    chmod(path, 0o660)
                }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            for path in socketPaths { unlink(path) }
            throw error
        }
        return OperationsServer(channels: channels, socketPaths: socketPaths, listeners: listeners)
    }

    /// Closes the listeners and removes the Unix socket files.
    public func stop() async {
        for channel in channels { try? await channel.close() }
        for path in socketPaths { unlink(path) }
    }

    /// The directory is created; a socket file nobody answers on is removed; one that answers
    /// belongs to a running node, and binding over it would steal its `weft status`.
    private static func removeStaleSocket(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o755])
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw OperationsError("cannot listen on unix:\(path): it exists and is not a socket")
        }
        if UnixSocketProbe.accepts(path) {
            throw OperationsError("cannot listen on unix:\(path): another weft answers there (is one already running in this network namespace? --status-socket picks another path)")
        }
        unlink(path)
    }
}

/// Answers one request per connection from a fresh status.
private final class OperationsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let status: OperationsServer.StatusProvider
    private var request: HTTPRequestHead?

    init(status: @escaping OperationsServer.StatusProvider) {
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let response = Self.respond(to: head, status: status)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: String(response.body.count))
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]
    }

    /// The routes.
    static func respond(to head: HTTPRequestHead, status provider: OperationsServer.StatusProvider) -> Response {
        let text = "text/plain; charset=utf-8"
        guard head.method == .GET || head.method == .HEAD else {
            return Response(status: .methodNotAllowed, contentType: text, body: Array("only GET and HEAD\n".utf8))
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let now = Date().timeIntervalSince1970
        switch path {
        case "/healthz":
            // flanneld's answer: the process runs and serves. A failed data path ends the process.
            return Response(status: .ok, contentType: text, body: Array("weft is running\n".utf8))
        case "/readyz", "/metrics", "/status":
            break
        default:
            return Response(status: .notFound, contentType: text, body: Array("no such endpoint: /healthz, /readyz, /metrics and /status exist\n".utf8))
        }
        guard let status = provider() else {
            return Response(status: .serviceUnavailable, contentType: text, body: Array("not ready: weft is starting (waiting for the registry or a lease)\n".utf8))
        }
        switch path {
        case "/readyz":
            if let reason = status.notReadyReason(now: now) {
                return Response(status: .serviceUnavailable, contentType: text, body: Array("not ready: \(reason)\n".utf8))
            }
            return Response(status: .ok, contentType: text, body: Array("ready\n".utf8))
        case "/metrics":
            return Response(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                            body: MetricsExposition.text(status, now: now))
        default:
            do {
                return Response(status: .ok, contentType: "application/json", body: try status.jsonBytes())
            } catch {
                return Response(status: .internalServerError, contentType: text, body: Array("cannot encode the status: \(error)\n".utf8))
            }
        }
    }
}
