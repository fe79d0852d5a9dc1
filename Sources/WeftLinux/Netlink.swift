import CWeftLinux
import Glibc
import Synchronization
import WeftCore

/// An rtnetlink socket for the few changes flannel0 needs (link up + MTU, address, routes),
/// without shelling out to `ip`. Each call sends one request and waits for its ACK; a negative
/// ACK throws `SystemError(errno:operation:)` such as
/// "netlink add route 10.244.0.0/16 dev flannel0: Network is unreachable (errno 101)".
///
/// Works in the network namespace of the thread that created it. Calls are serialised by a lock.
public final class RouteNetlink: @unchecked Sendable {
    public let fileDescriptor: Int32
    private let state: Mutex<(sequence: UInt32, closed: Bool)>

    public init() throws(SystemError) {
        let fd = try Syscall.socket(CWeftLinux_AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                                    CWeftLinux_NETLINK_ROUTE, "netlink route")
        do throws(SystemError) {
            // Errors quote only the header of the request, not all of it (best effort).
            try? Syscall.setsockopt(fd, CWeftLinux_SOL_NETLINK, CWeftLinux_NETLINK_CAP_ACK, Int32(1), "NETLINK_CAP_ACK")
            if CWeftLinux_netlink_bind(fd) == -1 {
                throw SystemError(errno: Glibc.errno, operation: "bind netlink route")
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        fileDescriptor = fd
        // Start somewhere other than 0/1 so stale replies from another user are unlikely to match.
        state = Mutex((sequence: UInt32(truncatingIfNeeded: time(nil)), closed: false))
    }

    /// `ip link set dev <index> up|down [mtu N]`.
    public func setLink(index: Int32, up: Bool, mtu: Int?, transmitQueueLength: Int? = nil) throws(SystemError) {
        let what = "netlink set link \(RouteNetlink.interfaceName(index)) \(up ? "up" : "down")"
            + (mtu.map { " mtu \($0)" } ?? "") + (transmitQueueLength.map { " txqueuelen \($0)" } ?? "")
        try request(what) {
            NetlinkMessage.setLink(index: index, up: up, mtu: mtu, transmitQueueLength: transmitQueueLength, sequence: $0)
        }
    }

    /// `ip addr add <address>/<prefixLength> dev <index>`. EEXIST is an error.
    public func addAddress(_ address: IPv4Address, prefixLength: Int, interfaceIndex: Int32) throws(SystemError) {
        let what = "netlink add address \(address)/\(prefixLength) dev \(RouteNetlink.interfaceName(interfaceIndex))"
        try request(what) {
            NetlinkMessage.addAddress(address, prefixLength: prefixLength, interfaceIndex: interfaceIndex, sequence: $0)
        }
    }

    /// `ip route add <prefix> dev <index>` in the main table. An existing route (EEXIST) is
    /// not an error, as in flannel.
    public func addRoute(_ prefix: IPv4Prefix, interfaceIndex: Int32) throws(SystemError) {
        let what = "netlink add route \(prefix) dev \(RouteNetlink.interfaceName(interfaceIndex))"
        do {
            try request(what) { NetlinkMessage.addRoute(prefix, interfaceIndex: interfaceIndex, sequence: $0) }
        } catch where error.errno == EEXIST {
            return
        }
    }

    /// `ip route del <prefix> dev <index>` (main table, any protocol and scope).
    public func deleteRoute(_ prefix: IPv4Prefix, interfaceIndex: Int32) throws(SystemError) {
        let what = "netlink delete route \(prefix) dev \(RouteNetlink.interfaceName(interfaceIndex))"
        try request(what) { NetlinkMessage.deleteRoute(prefix, interfaceIndex: interfaceIndex, sequence: $0) }
    }

    /// Idempotent.
    public func close() {
        let wasClosed = state.withLock { state in
            defer { state.closed = true }
            return state.closed
        }
        if !wasClosed { try? Syscall.close(fileDescriptor, "netlink route") }
    }

    deinit {
        close()
    }

    private func request(_ what: String, _ encode: (UInt32) -> [UInt8]) throws(SystemError) {
        try state.withLock { state throws(SystemError) in
            guard !state.closed else { throw SystemError(errno: EBADF, operation: what) }
            state.sequence &+= 1
            let sequence = state.sequence
            let bytes = encode(sequence)
            let sent = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try Syscall.send(fileDescriptor, raw, what) }
            }
            _ = try sent.get()
            try awaitAck(sequence: sequence, what)
        }
    }

    private func awaitAck(sequence: UInt32, _ what: String) throws(SystemError) {
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
        while true {
            let received = buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) -> [NetlinkMessage.Reply] in
                    let count = try Syscall.recv(fileDescriptor, raw, 0, what)
                    return NetlinkMessage.parseReplies(UnsafeRawBufferPointer(rebasing: raw[..<count]))
                }
            }
            let replies = try received.get()
            for reply in replies {
                switch reply {
                case .ack(sequence) :
                    return
                case .error(sequence, let code):
                    throw SystemError(errno: code, operation: what)
                default:
                    continue // a reply to an older request, or a notification: skip it
                }
            }
        }
    }

    static func interfaceName(_ index: Int32) -> String {
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(UInt32(bitPattern: index), &name) != nil else { return "#\(index)" }
        return String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
