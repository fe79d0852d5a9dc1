import CWeftLinux
import Glibc
import WeftCore

/// A host network interface as the daemon needs it: to pick the external address for the UDP
/// socket and the TUN MTU (external MTU − 28).
public struct NetworkInterface: Sendable, Equatable {
    /// One IPv4 address on the interface with its prefix length (not masked, unlike IPv4Prefix).
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var address: IPv4Address
        public var prefixLength: Int
        public init(address: IPv4Address, prefixLength: Int) {
            self.address = address
            self.prefixLength = prefixLength
        }
        public var prefix: IPv4Prefix { IPv4Prefix(address: address, length: prefixLength) }
        public var description: String { "\(address)/\(prefixLength)" }
    }

    public var name: String
    public var index: Int32
    /// In getifaddrs order (primary address first).
    public var ipv4: [Address]
    public var mtu: Int

    public init(name: String, index: Int32, ipv4: [Address], mtu: Int) {
        self.name = name
        self.index = index
        self.ipv4 = ipv4
        self.mtu = mtu
    }

    public var firstIPv4Address: IPv4Address? { ipv4.first?.address }

    /// Looks `name` up: index (if_nametoindex; ENODEV if absent), IPv4 addresses (getifaddrs),
    /// MTU (SIOCGIFMTU).
    public static func named(_ name: String) throws(SystemError) -> NetworkInterface {
        let index = if_nametoindex(name)
        guard index != 0 else {
            throw SystemError(errno: Glibc.errno == 0 ? ENODEV : Glibc.errno, operation: "find interface \(name)")
        }
        var addresses: [Address] = []
        try forEachInterfaceAddress { entry in
            guard let entryName = entry.ifa_name, String(cString: entryName) == name,
                  let address = entry.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET)
            else { return }
            let host = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self)
            var length = 32
            if let mask = entry.ifa_netmask {
                let netmask = UnsafeRawPointer(mask).loadUnaligned(as: sockaddr_in.self)
                length = UInt32(bigEndian: netmask.sin_addr.s_addr).nonzeroBitCount
            }
            addresses.append(Address(address: IPv4Address(rawValue: UInt32(bigEndian: host.sin_addr.s_addr)),
                                     prefixLength: length))
        }
        let mtu = CWeftLinux_interface_mtu(name)
        guard mtu > 0 else { throw SystemError(errno: Glibc.errno, operation: "read the MTU of \(name)") }
        return NetworkInterface(name: name, index: Int32(bitPattern: index), ipv4: addresses, mtu: Int(mtu))
    }

    /// The names of every interface, in getifaddrs order, each once.
    public static func allNames() throws(SystemError) -> [String] {
        var names: [String] = []
        try forEachInterfaceAddress { entry in
            if let name = entry.ifa_name.map({ String(cString: $0) }), !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Calls `body` with each entry of getifaddrs(3), in its order.
    private static func forEachInterfaceAddress(_ body: (ifaddrs) -> Void) throws(SystemError) {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else {
            throw SystemError(errno: Glibc.errno, operation: "getifaddrs")
        }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            body(entry.pointee)
            cursor = entry.pointee.ifa_next
        }
    }

    /// flanneld's `--iface-regex` rule: for each pattern in order, the first interface with an
    /// IPv4 address the pattern matches, else the first whose name it matches; the matched
    /// address (or the interface's first) is the one to bind. `matches` is an unanchored search,
    /// as Go's `MatchString`.
    public static func firstMatching(_ patterns: [String], in interfaces: [NetworkInterface],
                                     matches: (String, String) -> Bool) -> (NetworkInterface, IPv4Address)? {
        for pattern in patterns {
            for interface in interfaces {
                if let address = interface.ipv4.first(where: { matches(pattern, $0.address.description) }) {
                    return (interface, address.address)
                }
            }
            for interface in interfaces where matches(pattern, interface.name) {
                if let address = interface.firstIPv4Address { return (interface, address) }
            }
        }
        return nil
    }

    /// The interface of the IPv4 default route (destination and mask 0, up) with the lowest
    /// metric, from /proc/net/route. Throws ENETUNREACH ("find default route in /proc/net/route")
    /// when there is none.
    public static func defaultRouteInterfaceName() throws(SystemError) -> String {
        let text = try FileContents.read("/proc/net/route")
        if let name = defaultRouteInterfaceName(procNetRoute: text) { return name }
        throw SystemError(errno: ENETUNREACH, operation: "find default route in /proc/net/route")
    }

    /// The parser behind `defaultRouteInterfaceName()`, for tests.
    static func defaultRouteInterfaceName(procNetRoute text: String) -> String? {
        var best: (name: String, metric: Int)?
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            guard fields.count >= 8, fields[1] == "00000000", fields[7] == "00000000",
                  let flags = Int(fields[3], radix: 16), flags & 0x1 != 0,
                  let metric = Int(fields[6]) else { continue }
            if best == nil || metric < best!.metric { best = (String(fields[0]), metric) }
        }
        return best?.name
    }
}
