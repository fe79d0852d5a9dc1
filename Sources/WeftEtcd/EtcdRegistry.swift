import Foundation
import NIOSSL
import Synchronization
import WeftRegistry

/// Subnet leases in etcd v3, stored exactly as flanneld v0.18+ stores them, through etcd's JSON
/// gateway (`/v3/...`) over HTTP/1.1, plain or TLS: the same keys,
/// values, txns and leases as flanneld's `pkg/subnet/etcd/registry.go`.
///
/// * Revisions are etcd revisions; a TTL is an etcd lease granted for that key alone.
/// * `RegistryEntry.expiresAt` is always nil: the lease TTL lives on the server, and flanneld's
///   per-key `LeaseTimeToLive` lookup would cost one request per lease on every list.
/// * Requests go to the endpoint that last answered, and move to the next one only when etcd
///   could not be reached (connect error, 5 s deadline, cut connection); an error that etcd
///   answered is final. Every failure surfaces as `RegistryError.unavailable` naming the endpoints.
/// * `http://` endpoints are plain; `https://` ones use TLS (`EtcdTLS`: CA, client certificate).
public final class EtcdRegistry: SubnetRegistry {
    /// The client URLs as given.
    public let endpoints: [String]
    let parsed: [Result<EtcdEndpoint, EtcdTransportError>]
    let username: String?
    let password: String?
    let state = Mutex(State())

    struct State {
        /// Index of the endpoint that answered last; requests start there.
        var preferred = 0
        /// The auth token from /v3/auth/authenticate, when a username is set.
        var token: String?
    }

    /// A registry talking to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`). With
    /// `username`, a token is fetched from `/v3/auth/authenticate` on first use (and again when
    /// etcd says it is invalid) and sent as the `Authorization` header.
    /// `https://` endpoints trust the system roots and send no client certificate.
    public convenience init(endpoints: [String], username: String? = nil, password: String? = nil) {
        // Only the system trust store can fail here; an https:// endpoint then reports it.
        let context = endpoints.contains { $0.hasPrefix("https://") }
            ? Result { try EtcdTLS().makeContext() } : nil
        self.init(endpoints: endpoints, username: username, password: password, context: context)
    }

    /// As above, with `tls` for the `https://` endpoints: the PEM files are read now, so a
    /// missing or malformed one throws `EtcdTLSError` naming it. `http://` endpoints stay plain.
    public convenience init(endpoints: [String], username: String? = nil, password: String? = nil,
                            tls: EtcdTLS) throws {
        let context = try tls.makeContext()
        self.init(endpoints: endpoints, username: username, password: password, context: .success(context))
    }

    init(endpoints: [String], username: String?, password: String?,
         context: Result<NIOSSLContext, any Error>?) {
        self.endpoints = endpoints
        parsed = endpoints.map { text in
            EtcdEndpoint.parse(text).flatMap { endpoint in
                guard endpoint.secure else { return .success(endpoint) }
                switch context {
                case .success(let context)?:
                    var endpoint = endpoint
                    endpoint.tls = context
                    return .success(endpoint)
                case .failure(let error)?:
                    return .failure(EtcdTransportError(endpoint: text, message: "cannot set up TLS: \(error)"))
                case nil:
                    return .failure(EtcdTransportError(endpoint: text, message: "TLS is not set up"))
                }
            }
        }
        self.username = username
        self.password = password
    }

    // MARK: SubnetRegistry

    public func get(_ key: String) async throws -> RegistryEntry? {
        let response: RangeResponse = try await call("/v3/kv/range", RangeRequest(key: base64(key)))
        return try response.kvs?.first.map { try entry($0) }
    }

    /// All keys under `prefix`, sorted by key (etcd's range order), and the revision of that
    /// snapshot: watching from it + 1 misses nothing (a watch
    /// replays every event after its start revision).
    public func list(prefix: String) async throws -> (entries: [RegistryEntry], revision: Int64) {
        let request = RangeRequest(key: base64(Self.rangeStart(prefix)), range_end: base64(Self.prefixEnd(prefix)))
        let response: RangeResponse = try await call("/v3/kv/range", request)
        let entries = try (response.kvs ?? []).map { try entry($0) }
        return (entries, response.header?.revision?.value ?? 0)
    }

    /// flanneld's create: grant a lease (if `ttl` > 0), then `If Version(key) = 0 Then Put`.
    /// When the key exists, the fresh lease is revoked so it does not linger for its TTL.
    public func create(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 {
        let lease = try await grant(ttl)
        do {
            let txn = TxnRequest(
                compare: [Compare(key: base64(key), target: "VERSION", result: "EQUAL", version: I64(0))],
                success: [RequestOp(request_put: PutRequest(key: base64(key), value: base64(value), lease: lease.map(I64.init)))],
                // Reading the holder lets a retried txn recognise its own earlier write (below).
                failure: [RequestOp(request_range: RangeRequest(key: base64(key)))]
            )
            let response: TxnResponse = try await call("/v3/kv/txn", txn)
            if response.succeeded == true {
                return response.header?.revision?.value ?? 0
            }
            // A txn resent after a lost response finds the key it wrote itself: still a success.
            if let lease, let holder = response.responses?.first?.response_range?.kvs?.first,
               holder.lease?.value == lease {
                return holder.mod_revision?.value ?? 0
            }
            await revokeQuietly(lease)
            throw RegistryError.alreadyExists(key: key)
        } catch {
            // The lease was revoked above for alreadyExists; any other failure must not leak it.
            if case RegistryError.alreadyExists = error { throw error }
            await revokeQuietly(lease)
            throw error
        }
    }

    /// flanneld's renewal (grant + unconditional put), plus a fix of its lease leak
    /// (flanneld grants a new etcd lease on every renewal and never revokes the old one): the lease the key held before is revoked once no key uses it.
    public func put(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 {
        let lease = try await grant(ttl)
        let response: PutResponse
        do {
            response = try await call(
                "/v3/kv/put",
                PutRequest(key: base64(key), value: base64(value), lease: lease.map(I64.init), prev_kv: true))
        } catch {
            await revokeQuietly(lease)
            throw error
        }
        if let old = response.prev_kv?.lease?.value, old != 0, old != lease {
            await revokeIfUnused(old)
        }
        return response.header?.revision?.value ?? 0
    }

    /// Deletes `key` (deleterange; none deleted → notFound) and revokes its lease if nothing else
    /// uses it, so an explicit delete leaves no lease behind until its TTL.
    public func delete(_ key: String) async throws {
        let response: DeleteRangeResponse = try await call(
            "/v3/kv/deleterange", DeleteRangeRequest(key: base64(key), prev_kv: true))
        guard let deleted = response.deleted?.value, deleted > 0 else {
            throw RegistryError.notFound(key: key)
        }
        for kv in response.prev_kvs ?? [] {
            if let lease = kv.lease?.value, lease != 0 { await revokeIfUnused(lease) }
        }
    }

    // MARK: Leases

    /// Grants a lease of `ttl` seconds rounded up; nil for no expiry (nil or ≤ 0, flanneld's
    /// TTL 0 reservation). etcd raises very short TTLs to its minimum (about 2 s by default).
    func grant(_ ttl: Double?) async throws -> Int64? {
        guard let ttl, ttl > 0 else { return nil }
        let seconds = Int64(min(ttl.rounded(.up), Double(Int64.max / 2)))
        let response: LeaseGrantResponse = try await call("/v3/lease/grant", LeaseGrantRequest(TTL: I64(seconds)))
        guard let id = response.ID?.value, id != 0, response.error?.isEmpty ?? true else {
            throw RegistryError.unavailable("etcd refused a lease of \(seconds) s: \(response.error ?? "no lease ID")")
        }
        return id
    }

    /// Best effort: a lease left behind only costs etcd memory until its TTL ends.
    func revokeQuietly(_ lease: Int64?) async {
        guard let lease else { return }
        let _: EmptyResponse? = try? await call("/v3/lease/revoke", LeaseIDRequest(ID: I64(lease)))
    }

    /// Revokes `lease` only if no key is attached to it any more: revoking deletes every attached
    /// key, and a lease might be shared by keys another client wrote.
    func revokeIfUnused(_ lease: Int64) async {
        guard let info: LeaseTimeToLiveResponse = try? await call(
            "/v3/lease/timetolive", LeaseTimeToLiveRequest(ID: I64(lease), keys: true))
        else { return }
        if (info.TTL?.value ?? -1) > 0, (info.keys ?? []).isEmpty { await revokeQuietly(lease) }
    }

    /// Compacts the store's history up to `revision` (tests force `.compacted` with it).
    func compact(revision: Int64) async throws {
        let _: EmptyResponse = try await call("/v3/kv/compaction", CompactionRequest(revision: I64(revision), physical: true))
    }

    // MARK: Keys

    /// The start of a prefix range; the empty prefix means every key, which etcd spells "\0".
    static func rangeStart(_ prefix: String) -> [UInt8] {
        prefix.isEmpty ? [0] : Array(prefix.utf8)
    }

    /// The first key after every key starting with `prefix`: its last byte below 0xff plus one,
    /// the rest cut (etcd's range_end rule: `/` → `0`). "\0" means "to the end" when no such byte exists.
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return [0]
    }

    func entry(_ kv: KeyValue) throws -> RegistryEntry {
        guard let key = kv.key else { throw RegistryError.corrupt("etcd returned a key-value without a key") }
        return RegistryEntry(
            key: String(decoding: key, as: UTF8.self),
            value: Array(kv.value ?? Data()),
            modRevision: kv.mod_revision?.value ?? 0,
            expiresAt: nil)
    }

    // MARK: Requests

    struct EmptyResponse: Decodable {}

    /// Sends one unary request with failover and auth, decoding the 200 body as `Response`.
    func call<Response: Decodable>(_ path: String, _ request: some Encodable) async throws -> Response {
        let body = try Array(JSONEncoder().encode(request))
        var (endpoint, status, answer) = try await postWithFailover(path, body, token: try await token())
        if status != 200, username != nil, isAuthFailure(status: status, body: answer, endpoint: endpoint) {
            // Simple tokens expire after 5 min idle by default: fetch a new one once.
            state.withLock { $0.token = nil }
            (endpoint, status, answer) = try await postWithFailover(path, body, token: try await token())
        }
        guard status == 200 else {
            throw RegistryError.unavailable(EtcdGatewayError(endpoint: endpoint.url, status: status, body: answer).description)
        }
        do {
            return try JSONDecoder().decode(Response.self, from: Data(answer))
        } catch {
            throw RegistryError.unavailable("etcd at \(endpoint.url): unexpected answer to \(path): \(String(decoding: answer.prefix(200), as: UTF8.self))")
        }
    }

    func isAuthFailure(status: Int, body: [UInt8], endpoint: EtcdEndpoint) -> Bool {
        let error = EtcdGatewayError(endpoint: endpoint.url, status: status, body: body)
        return error.code == 16 || error.message.contains("invalid auth token")
    }

    /// The auth token, fetched on first use when a username is configured.
    func token() async throws -> String? {
        guard let username else { return nil }
        if let token = state.withLock({ $0.token }) { return token }
        let body = try Array(JSONEncoder().encode(AuthenticateRequest(name: username, password: password ?? "")))
        let (endpoint, status, answer) = try await postWithFailover("/v3/auth/authenticate", body, token: nil)
        guard status == 200,
              let token = (try? JSONDecoder().decode(AuthenticateResponse.self, from: Data(answer)))?.token,
              !token.isEmpty
        else {
            let error = EtcdGatewayError(endpoint: endpoint.url, status: status, body: answer)
            throw RegistryError.unavailable("authentication as \(username) failed: \(error)")
        }
        state.withLock { $0.token = token }
        return token
    }

    /// Endpoints in the order to try: the one that answered last, then the others in turn.
    func order() -> [Int] {
        let start = state.withLock { $0.preferred }
        return (0..<parsed.count).map { (start + $0) % parsed.count }
    }

    func postWithFailover(_ path: String, _ body: [UInt8], token: String?) async throws
        -> (EtcdEndpoint, Int, [UInt8])
    {
        guard !parsed.isEmpty else { throw RegistryError.unavailable("no etcd endpoints configured") }
        var failures: [String] = []
        for index in order() {
            try Task.checkCancellation()
            switch parsed[index] {
            case .failure(let error):
                failures.append(error.description)
            case .success(let endpoint):
                do {
                    let (status, answer) = try await EtcdHTTP.post(endpoint, path: path, body: body, token: token)
                    state.withLock { $0.preferred = index }
                    return (endpoint, status, answer)
                } catch let error as EtcdTransportError {
                    failures.append(error.description)
                }
            }
        }
        throw RegistryError.unavailable(failures.joined(separator: "; "))
    }
}
