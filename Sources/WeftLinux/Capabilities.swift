/// The calling process's effective capabilities, from /proc/self/status.
public enum Capabilities {
    /// CAP_NET_ADMIN: creating TUN devices, addresses and routes, netfilter rules.
    public static let netAdmin = 12

    /// Whether capability `number` is effective; nil when /proc cannot tell.
    public static func isEffective(_ number: Int) -> Bool? {
        guard let status = try? FileContents.read("/proc/self/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            guard let mask = UInt64(line.dropFirst("CapEff:".count).trimmingPrefix { $0 == " " || $0 == "\t" }, radix: 16) else { return nil }
            return mask & (UInt64(1) << UInt64(number)) != 0
        }
        return nil
    }
}
