import Glibc
import WeftLinux

/// A failure of `weft bench`, as one line for the user ("cannot connect to 10.0.0.2:5301:
/// Connection refused (errno 111)").
public struct BenchError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One line of the control protocol: a verb and `key=value` fields separated by single spaces,
/// e.g. `hello version=1 mode=udp size=64 streams=1 duration=10 warmup=1`. An `error` line
/// carries free text after the verb instead of fields.
///
/// The exchange (client C, server S), like iperf3's, on the TCP connection to the server port:
/// ```
/// C: hello version=1 mode=udp|tcp|latency size=B streams=N duration=S warmup=S
/// S: ok test=ID                     (or: error TEXT, and the server closes)
/// tcp:  C opens N more connections to the port, each sending `stream test=ID index=I`;
///       S: ready                    (all N attached)
///       C: measure                  (warm-up over: S notes its byte count and time)
/// C: done sent=N seconds=S          (udp: datagrams handed to the kernel, measured seconds;
///                                    tcp, latency: fields unused)
/// S: result received=N duplicates=N reordered=N stale=N         (udp)
///    result bytes=N seconds=S                                  (tcp)
///    result echoed=N                                           (latency)
/// ```
/// Every wait on either side is bounded; a closed connection ends the test on both sides.
public struct ControlMessage: Equatable, Sendable, CustomStringConvertible {
    public var verb: String
    public var fields: [(String, String)]
    /// For `error`: the text after the verb.
    public var text: String

    public static let protocolVersion = 1
    /// Longest line either side accepts, newline excluded.
    public static let maxLineLength = 1024

    public init(_ verb: String, _ fields: [(String, String)] = []) {
        self.verb = verb
        self.fields = fields
        text = ""
    }

    public static func error(_ text: String) -> ControlMessage {
        var message = ControlMessage("error")
        message.text = text.replacingNewlines()
        return message
    }

    public subscript(key: String) -> String? {
        fields.first(where: { $0.0 == key })?.1
    }

    public func integer(_ key: String) -> UInt64? { self[key].flatMap { UInt64($0) } }
    public func number(_ key: String) -> Double? {
        self[key].flatMap { Double($0) }.flatMap { $0.isFinite ? $0 : nil }
    }

    /// The line, without its newline.
    public var description: String {
        if verb == "error" { return "error " + text }
        return ([verb] + fields.map { "\($0.0)=\($0.1)" }).joined(separator: " ")
    }

    /// Parses one line (without its newline); nil when it is empty or a field has no `=`.
    public init?(line: String) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = words.first else { return nil }
        verb = String(first)
        fields = []
        text = ""
        if verb == "error" {
            text = words.dropFirst().joined(separator: " ")
            return
        }
        for word in words.dropFirst() {
            guard let equals = word.firstIndex(of: "="), equals != word.startIndex else { return nil }
            fields.append((String(word[..<equals]), String(word[word.index(after: equals)...])))
        }
    }

    public static func == (lhs: ControlMessage, rhs: ControlMessage) -> Bool {
        lhs.description == rhs.description
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}

/// Why a control message did not come.
enum ChannelFailure: Error {
    case closed
    case timedOut
    case malformed(String)
    case system(SystemError)
}

/// Line-based control messages over a blocking TCP socket, every wait bounded.
final class ControlChannel: @unchecked Sendable {
    let socket: TCPSocket
    private var pending: [UInt8] = []

    init(_ socket: TCPSocket) {
        self.socket = socket
        pending.reserveCapacity(2 * ControlMessage.maxLineLength)
    }

    func send(_ message: ControlMessage) throws(ChannelFailure) {
        var line = message.description + "\n"
        let result = line.withUTF8 { bytes in
            Result { () throws(SystemError) in try socket.sendAll(UnsafeRawBufferPointer(bytes)) }
        }
        if case .failure(let error) = result {
            if error.errno == EPIPE || error.errno == ECONNRESET { throw .closed }
            throw .system(error)
        }
    }

    /// A complete message already buffered, if any.
    func bufferedMessage() throws(ChannelFailure) -> ControlMessage? {
        guard let newline = pending.firstIndex(of: UInt8(ascii: "\n")) else {
            if pending.count > ControlMessage.maxLineLength { throw .malformed("a control line longer than \(ControlMessage.maxLineLength) bytes") }
            return nil
        }
        var line = pending[..<newline]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let text = String(decoding: line, as: UTF8.self)
        pending.removeSubrange(...newline)
        guard let message = ControlMessage(line: text) else {
            throw .malformed("an unreadable control line '\(text.prefix(80))'")
        }
        return message
    }

    /// One recv into the buffer (call when the socket is readable); throws `.closed` at the end
    /// of the stream or on a reset.
    func readAvailable() throws(ChannelFailure) {
        var chunk = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                     UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let count: Int
        do {
            count = try withUnsafeMutableBytes(of: &chunk) { raw throws(SystemError) in
                let n = try socket.receive(into: raw)
                pending.append(contentsOf: raw[..<n])
                return n
            }
        } catch {
            if error.errno == ECONNRESET || error.errno == EPIPE { throw .closed }
            throw .system(error)
        }
        if count == 0 { throw .closed }
    }

    /// The next message, waiting at most until `deadline` (CLOCK_MONOTONIC ns).
    func receive(until deadline: UInt64) throws(ChannelFailure) -> ControlMessage {
        while true {
            if let message = try bufferedMessage() { return message }
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { throw .timedOut }
            let milliseconds = Int32(min((deadline - now + 999_999) / 1_000_000, 60_000))
            let readable: Bool
            do { readable = try socket.waitReadable(timeoutMilliseconds: milliseconds) } catch { throw .system(error) }
            if readable { try readAvailable() }
        }
    }

    /// A message if one is buffered or arrives within `timeoutMilliseconds` (0: only look);
    /// nil otherwise. Throws `.closed` when the peer went away.
    func poll(timeoutMilliseconds: Int32) throws(ChannelFailure) -> ControlMessage? {
        if let message = try bufferedMessage() { return message }
        let readable: Bool
        do { readable = try socket.waitReadable(timeoutMilliseconds: timeoutMilliseconds) } catch { throw .system(error) }
        guard readable else { return nil }
        try readAvailable()
        return try bufferedMessage()
    }
}
