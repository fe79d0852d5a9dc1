import WeftCore

/// Static mode's peers: the `--peer` flags, fixed for the life of the process, and the
/// `--peers-file`, read at start and again on every SIGHUP. The routes are always exactly the
/// flags plus the file as it is now, so a peer removed from the file is no longer routed.
struct StaticPeers {
    var network: IPv4Prefix
    var subnet: IPv4Prefix
    var flagPeers: [Route]
    var peersFile: String?

    /// The routes for `filePeers` (the file's current entries): every flag peer and every file
    /// peer, each subnet once. A subnet given twice with different addresses, a subnet outside
    /// the network or one that overlaps this node's is refused.
    func routes(filePeers: [Route]) throws -> [Route] {
        var routes: [Route] = []
        for route in flagPeers + filePeers where !routes.contains(route) {
            routes.append(route)
        }
        try PeerSpecification.check(routes, network: network, ownSubnet: subnet)
        return routes
    }

    /// Reads the peers file (if any) and returns the routes.
    func load() throws -> [Route] {
        try routes(filePeers: peersFile.map(PeerSpecification.load) ?? [])
    }
}
