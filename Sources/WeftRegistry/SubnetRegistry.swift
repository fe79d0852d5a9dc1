/// One stored key: what etcd v3 returns for a key-value, reduced to what flannel uses.
public struct RegistryEntry: Sendable, Equatable {
    /// The full key, e.g. `/coreos.com/network/subnets/10.244.1.0-24`.
    public var key: String
    /// Opaque value bytes; for a lease, the JSON of flanneld's `LeaseAttrs`.
    public var value: [UInt8]
    /// Store revision of the last write to this key (etcd's `mod_revision`).
    public var modRevision: Int64
    /// Absolute expiry in seconds since 1970; nil means the key never expires.
    public var expiresAt: Double?

    /// Makes an entry; `expiresAt` nil means it never expires.
    public init(key: String, value: [UInt8], modRevision: Int64, expiresAt: Double? = nil) {
        self.key = key
        self.value = value
        self.modRevision = modRevision
        self.expiresAt = expiresAt
    }
}

/// A change seen by a watcher, as etcd v3 reports it: a PUT (create, renewal) or a DELETE
/// (explicit, or the key's TTL ran out).
public enum RegistryEvent: Sendable, Equatable {
    /// The key was written; the entry's `modRevision` is the event's revision.
    case put(RegistryEntry)
    /// The key was deleted or expired at `revision`.
    case delete(key: String, revision: Int64)

    /// The store revision at which the event happened.
    public var revision: Int64 {
        switch self {
        case .put(let entry): entry.modRevision
        case .delete(_, let revision): revision
        }
    }

    /// The key the event is about.
    public var key: String {
        switch self {
        case .put(let entry): entry.key
        case .delete(let key, _): key
        }
    }
}

/// Why a registry operation failed.
public enum RegistryError: Error, CustomStringConvertible, Equatable {
    /// `create` found a live entry under the key (etcd's failed `Version(key) = 0` compare).
    case alreadyExists(key: String)
    /// `delete` found no live entry under the key.
    case notFound(key: String)
    /// A watch asked for events older than the store still keeps; `revision` is the oldest
    /// revision whose event is still available. The caller re-lists and watches from there.
    case compacted(revision: Int64)
    /// The store cannot be reached or written; the message names the path or endpoint and cause.
    case unavailable(String)
    /// Stored data cannot be parsed; the message names the file or key.
    case corrupt(String)

    /// A one-line explanation for logs and the command line.
    public var description: String {
        switch self {
        case .alreadyExists(let key): "\(key) already exists"
        case .notFound(let key): "\(key) not found"
        case .compacted(let revision): "events before revision \(revision) are no longer kept; re-list"
        case .unavailable(let message): "registry unavailable: \(message)"
        case .corrupt(let message): "registry data corrupt: \(message)"
        }
    }
}

/// Where subnet leases live: the embedded file registry, or etcd with flanneld's keys.
/// Each lease is one key, `<prefix>/subnets/<a.b.c.d>-<len>`, as flanneld stores it, so Weft and
/// flanneld nodes sharing a store see each other. The operations are etcd v3's, one to one, so an
/// etcd implementation is a thin mapping: revisions are etcd revisions, TTLs are etcd leases.
public protocol SubnetRegistry: Sendable {
    /// The live entry under `key`, or nil if there is none or it has expired.
    func get(_ key: String) async throws -> RegistryEntry?
    /// All live entries under prefix and the store revision they reflect.
    func list(prefix: String) async throws -> (entries: [RegistryEntry], revision: Int64)
    /// Creates `key` only if absent (flanneld's create-if-absent); throws alreadyExists otherwise.
    /// An expired entry counts as absent. `ttl` in seconds; nil or ≤ 0 means no expiry (flanneld's
    /// TTL 0 reservation). Returns the revision of the write.
    func create(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64
    /// Writes unconditionally with a new TTL (renewal). Returns the revision of the write.
    func put(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64
    /// Deletes `key`; throws notFound if there is no live entry.
    func delete(_ key: String) async throws
    /// Events under prefix after `revision`, in order, until the task is cancelled; throws compacted(…) if those events are gone (caller re-lists).
    func watch(prefix: String, after revision: Int64) -> AsyncThrowingStream<RegistryEvent, Error>
}
