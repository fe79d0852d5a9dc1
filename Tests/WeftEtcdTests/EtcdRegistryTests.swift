import Foundation
import Testing
import WeftRegistry
@testable import WeftEtcd

/// Keys as flanneld writes them.
let subnets = "/coreos.com/network/subnets/"
let flannelValue = Array(#"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#.utf8)

struct LeasesResponse: Decodable {
    struct Lease: Decodable { var ID: I64 }
    var leases: [Lease]?
}

/// The leases etcd holds; tests check that create and put leave none behind.
func leaseCount(_ registry: EtcdRegistry) async throws -> Int {
    let response: LeasesResponse = try await registry.call("/v3/lease/leases", [String: String]())
    return response.leases?.count ?? 0
}

@Suite("EtcdRegistry without etcd")
struct EtcdRegistryOfflineTests {
    @Test func prefixEndIncrementsTheLastByte() {
        #expect(EtcdRegistry.prefixEnd(subnets) == Array("/coreos.com/network/subnets0".utf8))
        #expect(EtcdRegistry.prefixEnd("/a") == Array("/b".utf8))
        #expect(EtcdRegistry.prefixEnd("") == [0])
        #expect(EtcdRegistry.rangeStart("") == [0])
    }

    @Test func httpsParsesAsSecureAndGetsTheContext() throws {
        let endpoint = try EtcdEndpoint.parse("https://etcd.example:2379").get()
        #expect(endpoint.secure && endpoint.host == "etcd.example" && endpoint.port == 2379)
        #expect(endpoint.sniHostname == "etcd.example")
        #expect(try EtcdEndpoint.parse("https://127.0.0.1").get().sniHostname == nil)
        #expect(try EtcdEndpoint.parse("http://127.0.0.1").get().secure == false)
        // System trust roots when no EtcdTLS is given; http:// endpoints never get a context.
        let registry = EtcdRegistry(endpoints: ["https://127.0.0.1:2379", "http://127.0.0.1:2379"])
        #expect(try registry.parsed[0].get().tls != nil)
        #expect(try registry.parsed[1].get().tls == nil)
    }

    @Test func endpointsParse() throws {
        let plain = try EtcdEndpoint.parse("http://127.0.0.1:23790/").get()
        #expect(plain.host == "127.0.0.1" && plain.port == 23790)
        let v6 = try EtcdEndpoint.parse("http://[::1]:2379").get()
        #expect(v6.host == "::1" && v6.port == 2379)
        let bare = try EtcdEndpoint.parse("http://etcd").get()
        #expect(bare.host == "etcd" && bare.port == 2379)
        #expect((try? EtcdEndpoint.parse("127.0.0.1:2379").get()) == nil)
    }

    @Test func allEndpointsDeadIsUnavailableQuickly() async throws {
        let dead = ["http://127.0.0.1:\(try freePort())", "http://127.0.0.1:\(try freePort())"]
        let registry = EtcdRegistry(endpoints: dead)
        let started = ContinuousClock.now
        do {
            _ = try await registry.list(prefix: subnets)
            Issue.record("list succeeded with no etcd")
        } catch let RegistryError.unavailable(message) {
            #expect(message.contains(dead[0]) && message.contains(dead[1]))
            #expect(message.contains("connection refused"))
        }
        // A bound against hanging (waiting for a watch or retrying forever), not a speed goal:
        // refused connections take milliseconds, but a loaded CI machine once needed 6.3 s.
        #expect(ContinuousClock.now - started < .seconds(15))
    }
}

/// Each test starts its own etcd; serialized so elections are not starved on small CI machines.
@Suite("EtcdRegistry against etcd", .serialized,
       .enabled(if: etcdInstalled, "etcd not installed at /usr/bin/etcd (apt-get install -y etcd-server)"))
struct EtcdRegistryTests {
    @Test func createGetListPutDeleteRoundTrip() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])

        let second = subnets + "10.244.2.0-24"
        let first = subnets + "10.244.1.0-24"
        let secondRevision = try await registry.create(second, value: Array("two".utf8), ttl: nil)
        let firstRevision = try await registry.create(first, value: Array("one".utf8), ttl: 60)
        #expect(firstRevision > secondRevision)
        _ = try await registry.put("/coreos.com/network/config", value: Array("{}".utf8), ttl: nil)

        let entry = try #require(try await registry.get(first))
        #expect(entry == RegistryEntry(key: first, value: Array("one".utf8), modRevision: firstRevision))
        #expect(try await registry.get(subnets + "10.244.9.0-24") == nil)

        let (entries, revision) = try await registry.list(prefix: subnets)
        #expect(entries.map(\.key) == [first, second])
        #expect(revision == firstRevision + 1)

        // Renewal: one new lease, the superseded one revoked (flanneld leaks one lease per renewal).
        let renewed = try await registry.put(first, value: Array("uno".utf8), ttl: 60)
        #expect(try await registry.get(first)?.value == Array("uno".utf8))
        #expect(try await registry.get(first)?.modRevision == renewed)
        #expect(try await leaseCount(registry) == 1)

        try await registry.delete(first)
        #expect(try await registry.get(first) == nil)
        #expect(try await leaseCount(registry) == 0)
        await #expect(throws: RegistryError.notFound(key: first)) { try await registry.delete(first) }
    }

    @Test func createTwiceThrowsAlreadyExistsAndLeaksNoLease() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let key = subnets + "10.244.7.0-24"
        _ = try await registry.create(key, value: flannelValue, ttl: 60)
        await #expect(throws: RegistryError.alreadyExists(key: key)) {
            try await registry.create(key, value: Array("other".utf8), ttl: 60)
        }
        #expect(try await registry.get(key)?.value == flannelValue)
        #expect(try await leaseCount(registry) == 1)
    }

    @Test func flannelLeaseValueRoundTripsByteForByte() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let key = subnets + "10.244.1.0-24"
        _ = try await registry.create(key, value: flannelValue, ttl: 86400)
        #expect(try await registry.get(key)?.value == flannelValue)
        #expect(try await registry.list(prefix: subnets).entries.first?.value == flannelValue)
    }

    @Test func keyWithTTLExpiresAndTheWatchSeesTheDelete() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let revision = try await registry.list(prefix: subnets).revision
        let stream = registry.watch(prefix: subnets, after: revision)
        let key = subnets + "10.244.3.0-24"
        async let events = collect(stream, count: 2, within: .seconds(15))
        let written = try await registry.create(key, value: flannelValue, ttl: 2)
        let seen = try await events
        #expect(seen.count == 2)
        #expect(seen.first == .put(RegistryEntry(key: key, value: flannelValue, modRevision: written)))
        #expect(seen.last?.key == key)
        if case .delete(_, let deletedAt) = seen.last { #expect(deletedAt > written) } else {
            Issue.record("expected a DELETE, got \(String(describing: seen.last))")
        }
        #expect(try await registry.get(key) == nil)
    }

    @Test func watchFromARevisionSeesLaterEventsInOrder() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let a = subnets + "10.244.1.0-24", b = subnets + "10.244.2.0-24", c = subnets + "10.244.3.0-24"
        let start = try await registry.create(a, value: Array("a".utf8), ttl: nil)
        let rb = try await registry.create(b, value: Array("b".utf8), ttl: nil)
        _ = try await registry.put("/elsewhere", value: Array("x".utf8), ttl: nil)
        let rc = try await registry.put(c, value: Array("c".utf8), ttl: nil)
        try await registry.delete(a)
        let seen = try await collect(registry.watch(prefix: subnets, after: start), count: 3, within: .seconds(10))
        #expect(seen == [
            .put(RegistryEntry(key: b, value: Array("b".utf8), modRevision: rb)),
            .put(RegistryEntry(key: c, value: Array("c".utf8), modRevision: rc)),
            .delete(key: a, revision: rc + 1),
        ])
    }

    @Test func watchAfterCompactionThrowsCompacted() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let first = try await registry.put(subnets + "a", value: [1], ttl: nil)
        _ = try await registry.put(subnets + "a", value: [2], ttl: nil)
        let last = try await registry.put(subnets + "a", value: [3], ttl: nil)
        try await registry.compact(revision: last)
        await #expect(throws: RegistryError.compacted(revision: last)) {
            _ = try await collect(registry.watch(prefix: subnets, after: first), count: 1, within: .seconds(10))
        }
        // Watching from the compaction point on still works.
        async let events = collect(registry.watch(prefix: subnets, after: last), count: 1, within: .seconds(10))
        let next = try await registry.put(subnets + "a", value: [4], ttl: nil)
        #expect(try await events == [.put(RegistryEntry(key: subnets + "a", value: [4], modRevision: next))])
    }

    @Test func failsOverFromADeadEndpoint() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: ["http://127.0.0.1:\(try freePort())", server.url])
        let key = subnets + "10.244.5.0-24"
        let revision = try await registry.create(key, value: flannelValue, ttl: 60)
        #expect(try await registry.get(key)?.modRevision == revision)
        async let events = collect(registry.watch(prefix: subnets, after: revision - 1), count: 1, within: .seconds(10))
        #expect(try await events.first?.revision == revision)
    }

    /// The watch's contract across an outage: it ends with `.unavailable` once etcd is gone
    /// (LeaseManager logs that and waits), and watching again after the last revision
    /// delivered misses nothing and repeats nothing.
    @Test func aWatchCutByAnEtcdRestartEndsAndResumesFromItsLastRevision() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let registry = EtcdRegistry(endpoints: [server.url])
        let start = try await registry.list(prefix: subnets).revision
        let before = try await registry.put(subnets + "before", value: [1], ttl: nil)
        let first = try await collect(registry.watch(prefix: subnets, after: start), count: 1, within: .seconds(10))
        #expect(first.map(\.revision) == [before])

        let cut = registry.watch(prefix: subnets, after: before)
        let ending = Task { () -> Error? in
            do {
                for try await _ in cut {}
                return nil
            } catch {
                return error
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        server.kill()
        let error = await ending.value
        guard case RegistryError.unavailable(let reason)? = error as? RegistryError else {
            Issue.record("the watch ended with \(String(describing: error)), not unavailable")
            return
        }
        #expect(reason.contains(server.url), "names the endpoint: \(reason)")

        try await server.start()
        let after1 = try await registry.put(subnets + "after1", value: [2], ttl: nil)
        let after2 = try await registry.put(subnets + "after2", value: [3], ttl: nil)
        let seen = try await collect(registry.watch(prefix: subnets, after: before), count: 2, within: .seconds(20))
        #expect(seen.map(\.revision) == [after1, after2])
        #expect(seen.map(\.key) == [subnets + "after1", subnets + "after2"])
    }
}

@Suite("EtcdRegistry with etcd auth",
       .enabled(if: etcdInstalled, "etcd not installed at /usr/bin/etcd (apt-get install -y etcd-server)"))
struct EtcdRegistryAuthTests {
    struct Empty: Decodable {}

    @Test func usernameAndPasswordGetATokenThatAuthorizesRequests() async throws {
        let server = try EtcdServer()
        defer { server.stop() }
        try await server.start()
        let admin = EtcdRegistry(endpoints: [server.url])
        // etcd enables auth only with a root user holding the root role.
        let _: Empty = try await admin.call("/v3/auth/user/add", ["name": "root", "password": "secret"])
        let _: Empty = try await admin.call("/v3/auth/role/add", ["name": "root"])
        let _: Empty = try await admin.call("/v3/auth/user/grant", ["user": "root", "role": "root"])
        let _: Empty = try await admin.call("/v3/auth/enable", [String: String]())

        let registry = EtcdRegistry(endpoints: [server.url], username: "root", password: "secret")
        let key = subnets + "10.244.1.0-24"
        let revision = try await registry.create(key, value: flannelValue, ttl: 60)
        #expect(try await registry.get(key)?.modRevision == revision)
        await #expect(throws: RegistryError.self) { _ = try await admin.get(key) }
        let wrong = EtcdRegistry(endpoints: [server.url], username: "root", password: "wrong")
        await #expect(throws: RegistryError.self) { _ = try await wrong.get(key) }
    }
}
