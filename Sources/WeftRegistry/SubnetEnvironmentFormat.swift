import WeftCore

/// subnet.env's text, without I/O (fuzzed as `subnet-env`): what flanneld writes, and the
/// lenient reading of what may be there.
public enum SubnetEnvironmentFormat {
    /// flanneld's four lines, e.g.
    /// `FLANNEL_NETWORK=10.244.0.0/16`, `FLANNEL_SUBNET=10.244.1.1/24`, `FLANNEL_MTU=1472`,
    /// `FLANNEL_IPMASQ=false`. FLANNEL_SUBNET is the lease's first host address (the tunnel's),
    /// with the lease's prefix length.
    public static func render(network: IPv4Prefix, subnet: IPv4Prefix, mtu: Int, ipMasquerade: Bool) -> String {
        let tunnelAddress = IPv4Address(rawValue: subnet.network.rawValue &+ 1)
        return """
            FLANNEL_NETWORK=\(network)
            FLANNEL_SUBNET=\(tunnelAddress)/\(subnet.length)
            FLANNEL_MTU=\(mtu)
            FLANNEL_IPMASQ=\(ipMasquerade)

            """
    }

    /// `KEY=VALUE` lines, read leniently as flanneld's dotenv reader does: blank lines and `#`
    /// comments skipped, `export ` prefixes and matching quotes removed, the last occurrence
    /// wins. Bytes that are not UTF-8 give no variables.
    public static func variables(in bytes: [UInt8]) -> [String: String] {
        guard let text = String(validating: bytes, as: UTF8.self) else { return [:] }
        var variables: [String: String] = [:]
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            var line = rawLine.trimmingASCIIWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).trimmingASCIIWhitespace() }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingASCIIWhitespace()
            var value = line[line.index(after: equals)...].trimmingASCIIWhitespace()
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = value.dropFirst().dropLast()
            }
            variables[String(key)] = String(value)
        }
        return variables
    }
}

extension Substring {
    fileprivate func trimmingASCIIWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
