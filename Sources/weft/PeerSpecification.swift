import ArgumentParser
import Glibc
import WeftCore

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
        guard let file = fopen(path, "r") else {
            throw ValidationError("--peers-file \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var routes: [Route] = []
        var lineNumber = 0
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) >= 0, let line {
            lineNumber += 1
            var text = String(cString: line)
            if let hash = text.firstIndex(of: "#") { text = String(text[..<hash]) }
            text = text.trimmed
            if text.isEmpty { continue }
            routes.append(try parse(text, source: "\(path):\(lineNumber)"))
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
