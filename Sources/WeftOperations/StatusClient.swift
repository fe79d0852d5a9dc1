import NIOCore
import NIOHTTP1
import NIOPosix

/// `weft status`'s side of the status socket: one GET, the status code and the whole body.
public enum StatusClient {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    static let bodyLimit = 16 << 20

    /// Connects to the Unix socket at `socketPath` and GETs `path`. The exchange is bounded by
    /// `deadline`: a node that accepts but never answers is an error, not a hang.
    public static func get(_ path: String, socketPath: String, deadline: TimeAmount = .seconds(5)) async throws -> Response {
        typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(deadline)
            .connect(unixDomainSocketPath: socketPath) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        let timeout = connection.channel.eventLoop.scheduleTask(in: deadline) { connection.channel.close(promise: nil) }
        defer { timeout.cancel() }
        return try await connection.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "localhost")
            // One write: the server answers a GET as soon as its head is parsed and then closes,
            // so an `.end` written separately could find the channel closed already.
            try await outbound.write(contentsOf: [.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)), .end(nil)])
            var status: Int?
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let head):
                    status = Int(head.status.code)
                case .body(var buffer):
                    guard body.count + buffer.readableBytes <= bodyLimit else { throw StatusClientError("the response is larger than \(bodyLimit) bytes") }
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                case .end:
                    guard let status else { throw StatusClientError("a response without a status line") }
                    return Response(status: status, body: body)
                }
            }
            throw StatusClientError("the connection closed before the response ended (no answer within \(deadline.nanoseconds / 1_000_000_000) s?)")
        }
    }
}

struct StatusClientError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
