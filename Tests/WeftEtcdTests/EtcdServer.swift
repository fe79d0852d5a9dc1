import Foundation
import Testing
import WeftLinux
import WeftTestSupport
import WeftRegistry
@testable import WeftEtcd
#if canImport(Glibc)
import Glibc
#endif

/// Where Debian's `etcd-server` package puts etcd; the tests need it (tools/prereqs installs it).
let etcdBinary = "/usr/bin/etcd"
let etcdInstalled = FileManager.default.isExecutableFile(atPath: etcdBinary)

/// One single-member etcd on loopback with fresh ports and a private data dir
/// (Debian's etcd-server, started as `etcd --data-dir … --listen-client-urls …`). `stop()` kills it and removes everything it wrote; tests call it in a
/// `defer` so a failing test leaves nothing running.
final class EtcdServer {
    let clientPort: Int
    let peerPort: Int
    let directory: String
    /// With TLS: clients are served on https:// with `pki.server*` and must present a
    /// certificate signed by `pki.caFile` (etcd's --client-cert-auth).
    let pki: TestPKI?
    private var process: ChildProcess?

    var url: String { "\(pki == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }

    /// The client settings that etcd accepts: its CA and the client certificate.
    var clientTLS: EtcdTLS? {
        pki.map { EtcdTLS(caFile: $0.caFile, certificateFile: $0.clientCertificateFile, keyFile: $0.clientKeyFile) }
    }

    init(pki: TestPKI? = nil) throws {
        self.pki = pki
        clientPort = try freePort()
        peerPort = try freePort()
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("weft-etcd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Starts etcd (again, on the same ports and data dir after `kill()`) and waits until a
    /// linearizable read succeeds, i.e. there is a leader.
    func start() async throws {
        let peer = "http://127.0.0.1:\(peerPort)"
        var arguments = [etcdBinary,
            "--logger=zap", "--name", "test", "--data-dir", directory + "/data",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "test=\(peer)",
        ]
        if let pki {
            arguments += [
                "--cert-file", pki.serverCertificateFile, "--key-file", pki.serverKeyFile,
                "--trusted-ca-file", pki.caFile, "--client-cert-auth",
            ]
        }
        let logPath = directory + "/etcd.log"
        // Appended to, so a restart after kill() keeps the first run's log.
        let process = try ChildProcess.spawn(arguments, stdout: .file(logPath, append: true), stderr: .file(logPath, append: true))
        self.process = process
        let registry = try clientTLS.map { try EtcdRegistry(endpoints: [url], tls: $0) } ?? EtcdRegistry(endpoints: [url])
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            do {
                _ = try await registry.get("/health-probe")
                return
            } catch {
                if ContinuousClock.now > deadline || !process.isRunning {
                    throw RegistryError.unavailable("etcd did not become healthy; see \(logPath): \(error)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// SIGKILL, as a crashed member: the open watch stream is cut without a final chunk.
    func kill() {
        guard let process, process.isRunning else { return }
        _ = process.kill()
        self.process = nil
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A loopback TCP port nothing listens on right now (bound to port 0, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw RegistryError.unavailable("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw RegistryError.unavailable("bind failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The first `count` events of `stream`, failing if they do not all arrive within `timeout`.
func collect(_ stream: AsyncThrowingStream<RegistryEvent, Error>, count: Int, within timeout: Duration)
    async throws -> [RegistryEvent]
{
    guard let events = try await firstElements(count, of: stream, within: timeout) else {
        throw RegistryError.unavailable("watch gave fewer than \(count) events within \(timeout)")
    }
    return events
}

/// A throwaway PKI made with the openssl CLI: a CA, a server certificate for 127.0.0.1 (IP SAN),
/// a client certificate, and an unrelated second CA. `remove()` deletes it.
struct TestPKI {
    let directory: String
    var caFile: String { directory + "/ca.pem" }
    var serverCertificateFile: String { directory + "/server.pem" }
    var serverKeyFile: String { directory + "/server.key" }
    var clientCertificateFile: String { directory + "/client.pem" }
    var clientKeyFile: String { directory + "/client.key" }
    /// A CA that signed none of the above.
    var otherCAFile: String { directory + "/other-ca.pem" }

    init() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("weft-pki-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
            ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1"; }
            leaf() {
                key "$1.key"
                openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
                printf '%s\\n' "$2" > "$1.ext"
                openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \\
                    -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
            }
            ca ca
            ca other-ca
            leaf server "subjectAltName=IP:127.0.0.1
            extendedKeyUsage=serverAuth,clientAuth"
            leaf client "extendedKeyUsage=clientAuth"
            """
        let result = try run(["sh", "-c", "cd \"$0\" && " + script, directory], timeout: 60)
        guard result.succeeded else {
            throw RegistryError.unavailable("openssl could not make the test certificates in \(directory)")
        }
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
