import ArgumentParser
import Glibc
import WeftCore
import WeftLinux

/// `subnet=public-ip` peer entries, from `--peer` or a peers file.
enum PeerSpecification {
    static func parse(_ text: String, source: String) throws -> Route {
        let parts = text.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let subnet = IPv4Prefix(String(parts[0]).trimmed),
              let address = IPv4Address(String(parts[1]).trimmed)
        else {
            throw ValidationError("\(source): '\(text)' is not subnet=ip (e.g. 10.244.2.0/24=198.18.0.2)")
        }
        return Route(subnet: subnet, nextHop: address)
    }

    /// Reads a peers file; blank lines and `#` comments are skipped.
    static func load(_ path: String) throws -> [Route] {
        let bytes: [UInt8]
        do {
            guard let contents = try Files.read(path, limit: 16 << 20) else {
                throw ValidationError("--peers-file \(path): \(SystemError(errno: ENOENT, operation: "open").message)")
            }
            bytes = contents
        } catch let error as SystemError {
            throw ValidationError("--peers-file \(path): \(error.message)")
        }
        var routes: [Route] = []
        for (index, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var text = Substring(line)
            if let hash = text.firstIndex(of: "#") { text = text[..<hash] }
            let entry = String(text).trimmed
            if entry.isEmpty { continue }
            routes.append(try parse(entry, source: "\(path):\(index + 1)"))
        }
        return routes
    }

    /// Peers must lie in the overlay and must not claim this node's own subnet.
    static func check(_ routes: [Route], network: IPv4Prefix, ownSubnet: IPv4Prefix) throws {
        var seen: [IPv4Prefix: IPv4Address] = [:]
        for route in routes {
            guard network.contains(route.subnet) else {
                throw ValidationError("peer subnet \(route.subnet) is outside --network \(network)")
            }
            guard !route.subnet.contains(ownSubnet), !ownSubnet.contains(route.subnet) else {
                throw ValidationError("peer subnet \(route.subnet) overlaps this node's --subnet \(ownSubnet)")
            }
            if let other = seen[route.subnet], other != route.nextHop {
                throw ValidationError("peer subnet \(route.subnet) is given twice, for \(other) and \(route.nextHop)")
            }
            seen[route.subnet] = route.nextHop
        }
    }
}

extension String {
    var trimmed: String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
