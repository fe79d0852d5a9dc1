import Foundation
import NIOSSL

/// TLS to etcd, from PEM files as flanneld's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile` give them. Used for `https://` endpoints only; `http://` ones stay plain.
///
/// * `caFile`: the CAs that may sign etcd's server certificate; nil trusts the system roots.
/// * `certificateFile` + `keyFile`: the client certificate (chain) and its unencrypted key, for
///   etcd's `--client-cert-auth`; both or neither.
///
/// The server certificate must name the endpoint's host (DNS name, or IP address for an IP
/// endpoint), as etcd's own clients require.
public struct EtcdTLS: Sendable, Equatable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// Reads the files and builds the client context once, so a missing or malformed file is
    /// reported at start-up, naming it, rather than at the first request.
    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            let roots = try Self.certificates(caFile, what: "CA file")
            configuration.trustRoots = .certificates(roots)
        }
        switch (certificateFile, keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            let chain = try Self.certificates(certificateFile, what: "certificate file")
            let bytes = try Self.read(keyFile, what: "key file")
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(bytes: bytes, format: .pem)
            } catch {
                throw EtcdTLSError(file: keyFile, what: "key file", message: "not an unencrypted PEM private key (\(error))")
            }
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
        case (let file?, nil), (nil, let file?):
            throw EtcdTLSError(file: file, what: certificateFile == nil ? "key file" : "certificate file",
                               message: "the client certificate and key files go together")
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            if let certificateFile, let keyFile {
                throw EtcdTLSError(file: keyFile, what: "key file",
                                   message: "does not match the certificate in \(certificateFile) (\(error))")
            }
            throw EtcdTLSError(file: caFile ?? "system trust store", what: "CA", message: "cannot set up TLS (\(error))")
        }
    }

    static func read(_ path: String, what: String) throws -> [UInt8] {
        do {
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            let reason = (error as NSError).userInfo[NSUnderlyingErrorKey].map { "\($0)" } ?? error.localizedDescription
            throw EtcdTLSError(file: path, what: what, message: "cannot read it (\(Self.short(reason, path: path)))")
        }
    }

    static func certificates(_ path: String, what: String) throws -> [NIOSSLCertificate] {
        let bytes = try read(path, what: what)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw EtcdTLSError(file: path, what: what, message: "not a PEM certificate (\(error))")
        }
        guard !certificates.isEmpty else {
            throw EtcdTLSError(file: path, what: what, message: "holds no PEM certificate")
        }
        return certificates
    }

    /// errno text for a failed read, without Foundation's nested dump.
    static func short(_ reason: String, path: String) -> String {
        if !FileManager.default.fileExists(atPath: path) { return "no such file" }
        if !FileManager.default.isReadableFile(atPath: path) { return "permission denied" }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return "a directory"
        }
        return reason
    }
}

/// A TLS file for etcd that cannot be used; one line naming the file.
public struct EtcdTLSError: Error, CustomStringConvertible {
    public var file: String
    public var what: String
    public var message: String
    public var description: String { "etcd TLS \(what) \(file): \(message)" }
}
