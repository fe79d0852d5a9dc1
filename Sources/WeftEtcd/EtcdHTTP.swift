import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import WeftRegistry

/// One etcd client URL, parsed once: `http://` (plain) or `https://` (TLS through NIOSSL with
/// the registry's `EtcdTLS` context, attached by `EtcdRegistry.init`).
struct EtcdEndpoint: Sendable, CustomStringConvertible {
    var url: String
    var host: String
    var port: Int
    /// `https://`: the connection must be TLS, never plain.
    var secure = false
    /// The client TLS context for a secure endpoint; nil for `http://`.
    var tls: NIOSSLContext?

    var description: String { url }

    /// The host for SNI and certificate verification: nil for an IP address.
    var sniHostname: String? {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return nil }
        return host
    }

    static func parse(_ text: String) -> Result<EtcdEndpoint, EtcdTransportError> {
        var rest = Substring(text)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let secure = rest.hasPrefix("https://")
        guard secure || rest.hasPrefix("http://") else {
            return .failure(.init(endpoint: text, message: "not an http:// or https:// URL"))
        }
        rest = rest.dropFirst(secure ? "https://".count : "http://".count)
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            // IPv6 literal: [::1]:2379
            guard let close = rest.firstIndex(of: "]") else {
                return .failure(.init(endpoint: text, message: "unterminated IPv6 address"))
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                return .failure(.init(endpoint: text, message: "unexpected text after the address"))
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        // etcd's client port when none is given, as etcdctl assumes.
        var port = 2379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                return .failure(.init(endpoint: text, message: "bad port \"\(portText)\""))
            }
            port = value
        }
        guard !host.isEmpty, !host.contains("/") else {
            return .failure(.init(endpoint: text, message: "bad host"))
        }
        return .success(EtcdEndpoint(url: text, host: String(host), port: port, secure: secure))
    }
}

/// etcd could not be talked to at all: connect failure, timeout, or a connection cut before the
/// response ended. Only this kind of failure moves a request to the next endpoint; an HTTP error
/// from the gateway is etcd's answer and is not retried elsewhere.
struct EtcdTransportError: Error, CustomStringConvertible {
    var endpoint: String
    var message: String
    var description: String { "etcd at \(endpoint): \(message)" }
}

/// etcd answered with an error (a non-200 status and a gRPC-status body).
struct EtcdGatewayError: Error, CustomStringConvertible {
    var endpoint: String
    var status: Int
    var code: Int?
    var message: String
    var description: String {
        "etcd at \(endpoint) answered HTTP \(status)" + (code.map { " (gRPC code \($0))" } ?? "") + ": \(message)"
    }

    init(endpoint: String, status: Int, body: [UInt8]) {
        self.endpoint = endpoint
        self.status = status
        let decoded = try? JSONDecoder().decode(GatewayErrorBody.self, from: Data(body))
        code = decoded?.code
        message = decoded?.message ?? decoded?.error ?? String(decoding: body.prefix(200), as: UTF8.self)
    }
}

/// A minimal HTTP/1.1 client for the gateway, on SwiftNIO: one connection per request,
/// closed afterwards. flannel's request rate (a few per day plus one watch) makes pooling pointless,
/// and a fresh connection per request makes failover trivial.
enum EtcdHTTP {
    static let connectTimeout = TimeAmount.seconds(2)
    static let requestDeadline = TimeAmount.seconds(5)

    typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    static func connect(_ endpoint: EtcdEndpoint) async throws -> Connection {
        if endpoint.secure && endpoint.tls == nil {
            // Never fall back to plain text for an https:// endpoint.
            throw EtcdTransportError(endpoint: endpoint.url, message: "TLS is not set up for this https:// endpoint")
        }
        do {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(connectTimeout)
                // Half-open connections (a peer that vanished) would otherwise hang a watch forever.
                .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context = endpoint.tls {
                            // SNI and verification use the URL's host name; for an IP literal
                            // (no SNI allowed) NIOSSL verifies the peer's address against the
                            // certificate's IP SANs instead.
                            let handler = try NIOSSLClientHandler(context: context, serverHostname: endpoint.sniHostname)
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw EtcdTransportError(endpoint: endpoint.url, message: describe(error))
        }
    }

    /// Writes the request. A TLS handshake that fails (e.g. etcd's certificate does not verify)
    /// closes the channel, and a write racing it sees only "closed": the handshake's own error
    /// is then in `inbound`, and that is the one thrown.
    static func send(_ outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>,
                     inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>, endpoint: EtcdEndpoint,
                     path: String, body: [UInt8], token: String?) async throws {
        do {
            try await writeRequest(outbound, endpoint: endpoint, path: path, body: body, token: token)
        } catch {
            for try await _ in inbound {}
            throw error
        }
    }

    private static func writeRequest(_ outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, endpoint: EtcdEndpoint,
                                     path: String, body: [UInt8], token: String?) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        if let token { headers.add(name: "Authorization", value: token) }
        try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)))
        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
        try await outbound.write(.end(nil))
    }

    /// POSTs `body` to `path` and returns the status and the whole body. The whole exchange,
    /// connect included, is bounded by `requestDeadline` by closing the channel when it passes.
    static func post(_ endpoint: EtcdEndpoint, path: String, body: [UInt8], token: String?) async throws
        -> (status: Int, body: [UInt8])
    {
        let deadline = NIODeadline.now() + requestDeadline
        let connection = try await connect(endpoint)
        let timer = connection.channel.eventLoop.scheduleTask(deadline: deadline) {
            connection.channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await withTaskCancellationHandler {
                try await connection.executeThenClose { inbound, outbound in
                    try await send(outbound, inbound: inbound, endpoint: endpoint, path: path, body: body, token: token)
                    var status = 0
                    var collected: [UInt8] = []
                    for try await part in inbound {
                        switch part {
                        case .head(let head): status = Int(head.status.code)
                        case .body(let buffer): collected.append(contentsOf: buffer.readableBytesView)
                        case .end: return (status, collected)
                        }
                    }
                    throw EtcdTransportError(endpoint: endpoint.url, message: explainClosed("connection closed before the response ended", endpoint))
                }
            } onCancel: {
                connection.channel.close(promise: nil)
            }
        } catch {
            if NIODeadline.now() >= deadline {
                throw EtcdTransportError(endpoint: endpoint.url, message: "no response within 5 s")
            }
            if error is EtcdTransportError { throw error }
            throw EtcdTransportError(endpoint: endpoint.url, message: explainClosed(describe(error), endpoint))
        }
    }

    /// POSTs a streaming request and hands each newline-terminated body line to `onLine` until it
    /// returns false, the stream ends (returns normally) or the connection fails (throws
    /// EtcdTransportError). A non-200 status throws EtcdGatewayError. No deadline: a watch may be
    /// silent for hours (etcd sends nothing while no key changes); task cancellation closes the connection.
    ///
    /// A silent stream cannot tell an idle etcd from a frozen one (a stopped process, a hung
    /// host: the kernel still accepts connections and keeps them open). So every
    /// `probeInterval` `probe` asks the same member something cheap; when it does not answer
    /// (false), the stream is closed and throws EtcdTransportError saying so.
    static func stream(_ endpoint: EtcdEndpoint, path: String, body: [UInt8], token: String?,
                       probeInterval: Duration = .seconds(5), probe: (@Sendable () async -> Bool)? = nil,
                       onLine: ([UInt8]) async throws -> Bool) async throws
    {
        let connection = try await connect(endpoint)
        let channel = connection.channel
        let unanswered = ProbeVerdict()
        let watchdog = probe.map { probe in
            Task {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: probeInterval) } catch { return }
                    if await !probe() {
                        if Task.isCancelled { return }
                        unanswered.record()
                        channel.close(promise: nil)
                        return
                    }
                }
            }
        }
        defer { watchdog?.cancel() }
        let unansweredProbe = EtcdTransportError(
            endpoint: endpoint.url, message: "watch closed: etcd did not answer a request within \(requestDeadline.nanoseconds / 1_000_000_000) s")
        do {
            try await withTaskCancellationHandler {
                try await connection.executeThenClose { inbound, outbound in
                    try await send(outbound, inbound: inbound, endpoint: endpoint, path: path, body: body, token: token)
                    var status = 0
                    var pending: [UInt8] = []
                    var errorBody: [UInt8] = []
                    for try await part in inbound {
                        switch part {
                        case .head(let head):
                            status = Int(head.status.code)
                        case .body(let buffer):
                            if status != 200 {
                                errorBody.append(contentsOf: buffer.readableBytesView)
                                continue
                            }
                            // Messages are one per line; chunk boundaries mean nothing: one message may span
                            // chunks and one chunk may hold several.
                            pending.append(contentsOf: buffer.readableBytesView)
                            var start = 0
                            while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                                let line = Array(pending[start..<newline])
                                start = newline + 1
                                if line.isEmpty { continue }
                                if try await !onLine(line) { return }
                            }
                            pending.removeFirst(start)
                        case .end:
                            if status != 200 {
                                throw EtcdGatewayError(endpoint: endpoint.url, status: status, body: errorBody)
                            }
                            return
                        }
                    }
                    throw EtcdTransportError(endpoint: endpoint.url, message: "watch stream cut")
                }
            } onCancel: {
                connection.channel.close(promise: nil)
            }
        } catch let error as RegistryError {
            // Thrown by `onLine` (a compacted watch): the caller's verdict, not a transport failure.
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            if unanswered.recorded { throw unansweredProbe }
            if let error = error as? EtcdTransportError { throw error }
            if let error = error as? EtcdGatewayError { throw error }
            throw EtcdTransportError(endpoint: endpoint.url, message: explainClosed(describe(error), endpoint))
        }
        if unanswered.recorded { throw unansweredProbe }
    }

    /// A TLS 1.3 server that refuses the client's certificate, or wants one, says so in an alert
    /// that can arrive after the client has sent its request, so all the client may see is a
    /// closed connection: say what that most likely means on an https:// endpoint.
    static func explainClosed(_ message: String, _ endpoint: EtcdEndpoint) -> String {
        guard endpoint.secure, message.hasPrefix("connection closed") else { return message }
        return message + " (over TLS: etcd may have refused this client's certificate, or want one: --etcd-certfile, --etcd-keyfile)"
    }

    /// A short cause for logs, e.g. "connection refused" rather than NIO's nested error dump.
    static func describe(_ error: Error) -> String {
        if let error = error as? NIOSSLError {
            switch error {
            case .handshakeFailed(let ssl):
                return "TLS handshake failed: \(describe(ssl))"
            case .uncleanShutdown:
                return "TLS connection cut without close_notify"
            default:
                return "TLS error: \(error)"
            }
        }
        if let error = error as? BoringSSLError {
            return "TLS error: \(describe(error))"
        }
        if let error = error as? NIOSSLExtraError {
            return "TLS error: \(error)"
        }
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return describe(first.error) }
            if let dns = error.dnsAAAAError ?? error.dnsAError { return "cannot resolve \(error.host): \(dns)" }
            return "cannot connect to \(error.host):\(error.port)"
        }
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode)).lowercased()
        }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout: return "connect timed out after 2 s"
            case .ioOnClosedChannel, .alreadyClosed, .eof: return "connection closed"
            default: return "\(error)"
            }
        }
        return "\(error)"
    }

    /// BoringSSL's error stack as its reason codes (e.g. "CERTIFICATE_VERIFY_FAILED", not the
    /// packed number and source path), with what the common ones mean for etcd.
    static func describe(_ error: BoringSSLError) -> String {
        switch error {
        case .sslError(let stack), .unknownError(let stack):
            let reasons = stack.map { reason("\($0)") }
            guard !reasons.isEmpty else { return "\(error)" }
            let text = reasons.joined(separator: "; ")
            if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
                return "etcd's server certificate does not verify against the CA file (or the system trust store) or does not name the host (\(text))"
            }
            if reasons.contains(where: { $0.hasSuffix("ALERT_BAD_CERTIFICATE") || $0.hasSuffix("ALERT_CERTIFICATE_REQUIRED")
                || $0.hasSuffix("ALERT_UNKNOWN_CA") || $0.hasSuffix("ALERT_CERTIFICATE_UNKNOWN") }) {
                return "etcd refused this client's certificate, or wants one and none is set (\(text))"
            }
            return text
        default:
            return "\(error)"
        }
    }

    /// "Error: 2684… error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at
    /// /…/handshake.cc:320" → "CERTIFICATE_VERIFY_FAILED".
    static func reason(_ text: String) -> String {
        var reason = Substring(text)
        if let at = reason.range(of: " at ", options: .backwards) { reason = reason[..<at.lowerBound] }
        if let colon = reason.lastIndex(of: ":") { reason = reason[reason.index(after: colon)...] }
        return reason.isEmpty ? text : String(reason)
    }
}

/// Set by a stream's watchdog when its probe went unanswered, read after the stream ends.
private final class ProbeVerdict: Sendable {
    private let unanswered = Atomic<Bool>(false)
    func record() { unanswered.store(true, ordering: .releasing) }
    var recorded: Bool { unanswered.load(ordering: .acquiring) }
}
