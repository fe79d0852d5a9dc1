import Foundation
import Testing
import WeftCore
import WeftEtcd
import WeftRegistry

/// flanneld's lease rules over a real etcd: the races that etcd's transactions must settle.
@Suite("LeaseManager against etcd", .serialized,
       .enabled(if: etcdInstalled, "etcd not installed at /usr/bin/etcd (apt-get install -y etcd-server)"))
struct LeaseManagerEtcdTests {
    @Test func eightSimultaneousAcquirersGetEightDistinctSubnets() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        // 14 subnets for 8 nodes: collisions are likely, and each must be retried, not fatal.
        let config = try NetworkConfig.parse(Array(#"{"Network":"10.244.0.0/24","SubnetLen":28}"#.utf8))
        let url = server.url
        let subnets = try await withThrowingTaskGroup(of: IPv4Prefix.self) { group in
            for node in 1...8 {
                group.addTask {
                    let manager = LeaseManager(
                        registry: EtcdRegistry(endpoints: [url]),
                        configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.\(node)")!))
                    return try await manager.acquire(config: config).lease.subnet
                }
            }
            var all: [IPv4Prefix] = []
            for try await subnet in group { all.append(subnet) }
            return all
        }
        #expect(Set(subnets).count == 8, "\(subnets)")
        let (entries, _) = try await EtcdRegistry(endpoints: [server.url]).list(prefix: "/coreos.com/network/subnets/")
        #expect(entries.count == 8)
    }

    @Test func aRestartedNodeRenewsItsOwnLease() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let configuration = LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!)
        let initial = Array(#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#.utf8)
        let config = try await LeaseManager(registry: registry, configuration: configuration).loadConfig(creatingIfMissing: initial)
        let first = try await LeaseManager(registry: registry, configuration: configuration).acquire(config: config).lease
        let again = try await LeaseManager(registry: EtcdRegistry(endpoints: [server.url]), configuration: configuration).acquire(config: config).lease
        #expect(again.subnet == first.subnet)
        let value = try await registry.get(SubnetLease.key(for: first.subnet, prefix: "/coreos.com/network"))?.value
        #expect(value == Array(#"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#.utf8))
    }
}
