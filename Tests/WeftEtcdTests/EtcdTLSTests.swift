import Foundation
import Testing
import WeftRegistry
@testable import WeftEtcd

@Suite("EtcdTLS files")
struct EtcdTLSFileTests {
    @Test func unreadableAndBadFilesAreNamedInOneLine() throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let missing = pki.directory + "/missing.pem"
        #expect {
            _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(caFile: missing))
        } throws: { error in
            "\(error)" == "etcd TLS CA file \(missing): cannot read it (no such file)"
        }
        let garbage = pki.directory + "/garbage.pem"
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect {
            _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(caFile: garbage))
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("etcd TLS CA file \(garbage): ") && !text.contains("\n")
        }
        // A certificate where the key should be.
        #expect {
            _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(
                caFile: pki.caFile, certificateFile: pki.clientCertificateFile, keyFile: pki.clientCertificateFile))
        } throws: { error in
            "\(error)".hasPrefix("etcd TLS key file \(pki.clientCertificateFile): not an unencrypted PEM private key")
        }
        // The server's key with the client's certificate.
        #expect {
            _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(
                caFile: pki.caFile, certificateFile: pki.clientCertificateFile, keyFile: pki.serverKeyFile))
        } throws: { error in
            "\(error)".hasPrefix("etcd TLS key file \(pki.serverKeyFile): does not match the certificate in \(pki.clientCertificateFile)")
        }
        #expect {
            _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(certificateFile: pki.clientCertificateFile))
        } throws: { error in
            "\(error)".contains("go together")
        }
        // All good: no error, and nothing is contacted yet.
        _ = try EtcdRegistry(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLS(
            caFile: pki.caFile, certificateFile: pki.clientCertificateFile, keyFile: pki.clientKeyFile))
    }
}

@Suite("EtcdRegistry over TLS", .enabled(if: etcdInstalled, "needs /usr/bin/etcd"), .serialized)
struct EtcdTLSTests {
    @Test func createGetListWithAClientCertificate() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try EtcdServer(pki: pki)
        defer { server.stop() }
        try await server.start()
        #expect(server.url.hasPrefix("https://127.0.0.1:"))
        let registry = try EtcdRegistry(endpoints: [server.url], tls: server.clientTLS!)
        let key = subnets + "10.5.1.0-24"
        let revision = try await registry.create(key, value: flannelValue, ttl: 60)
        #expect(revision > 0)
        let entry = try #require(try await registry.get(key))
        #expect(entry.value == flannelValue && entry.modRevision == revision)
        let (entries, listed) = try await registry.list(prefix: subnets)
        #expect(entries.map(\.key) == [key] && listed >= revision)
        // The watch stream runs over TLS too.
        let events = registry.watch(prefix: subnets, after: listed)
        _ = try await registry.put(key, value: flannelValue, ttl: 60)
        let seen = try await collect(events, count: 1, within: .seconds(10))
        guard case .put(let watched) = seen.first else {
            Issue.record("expected a put event, got \(seen)")
            return
        }
        #expect(watched.key == key)
        // Plain HTTP to a TLS port must not be mistaken for an answer.
        let plain = EtcdRegistry(endpoints: [server.url.replacingOccurrences(of: "https://", with: "http://")])
        await #expect(throws: RegistryError.self) { _ = try await plain.get(key) }
    }

    @Test func withoutAClientCertificateEtcdRefuses() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try EtcdServer(pki: pki)
        defer { server.stop() }
        try await server.start()
        let registry = try EtcdRegistry(endpoints: [server.url], tls: EtcdTLS(caFile: pki.caFile))
        await #expect {
            _ = try await registry.get("/k")
        } throws: { error in
            guard case RegistryError.unavailable(let message) = error else { return false }
            print("no client certificate: \(message)")
            return message.contains("TLS") && message.lowercased().contains("certificate")
        }
    }

    @Test func aWrongCAFailsVerification() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try EtcdServer(pki: pki)
        defer { server.stop() }
        try await server.start()
        let registry = try EtcdRegistry(endpoints: [server.url], tls: EtcdTLS(
            caFile: pki.otherCAFile, certificateFile: pki.clientCertificateFile, keyFile: pki.clientKeyFile))
        await #expect {
            _ = try await registry.get("/k")
        } throws: { error in
            guard case RegistryError.unavailable(let message) = error else { return false }
            print("wrong CA: \(message)")
            return message.contains("TLS") && message.contains("CERTIFICATE_VERIFY_FAILED")
        }
        // The system trust store does not know the test CA either.
        let system = EtcdRegistry(endpoints: [server.url])
        await #expect(throws: RegistryError.self) { _ = try await system.get("/k") }
    }
}
