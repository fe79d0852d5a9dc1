import Foundation
#if canImport(Glibc)
import Glibc
#endif
import WeftLinux

/// The default registry: etcd's model kept in files in one directory, so any number of Weft
/// processes on a machine share leases with nothing to install.
///
/// Layout of `directory`:
/// * `entries/<encoded key>.json` — one file per key (see `fileName(forKey:)`), JSON
///   `{"expiresAt":<seconds since 1970>|null,"key":"…","modRevision":N,"value":"<base64>"}`.
/// * `revision` — the store revision, decimal; absent means 0.
/// * `events.log` — one JSON line per revision, oldest first, that watchers read incrementally;
///   bounded to `eventLogCapacity` lines by dropping the oldest half when full.
/// * `.lock` — `flock`ed exclusively by every mutation and shared by `list` and watcher polls.
///
/// Every file except the log is replaced by temp file + fsync + rename, so unlocked readers never
/// see a partial file. Log lines are appended under the exclusive lock and read under the shared
/// one, so a reader never sees half a line. `flock` locks belong to the open file description and
/// every operation opens `.lock` afresh, so instances in one process exclude each other exactly as
/// separate processes do.
///
/// Expired entries are invisible to `get`/`list` at once and are deleted, with a delete event, by
/// the next mutation or a watcher's periodic sweep, so all watchers see the same delete.
public struct FileRegistry: SubnetRegistry {
    /// The directory holding the store.
    public let directory: String
    /// Maximum number of events kept for watchers; a watcher further behind gets `.compacted`.
    public let eventLogCapacity: Int
    let clock: @Sendable () -> Double
    let pollInterval: Double
    let sweepInterval: Double
    /// Told about every entry file `list` skips because it cannot be read as an entry.
    let onUnreadableEntry: @Sendable (String) -> Void
    let pollBell = PollBell()

    /// The wall clock in seconds since 1970, the default `clock`.
    @Sendable public static func now() -> Double { Date().timeIntervalSince1970 }

    /// A registry stored in `directory`, created on first write.
    /// - Parameters:
    ///   - clock: seconds since 1970; injectable so tests can expire entries.
    ///   - eventLogCapacity: events kept for watchers (at least 2).
    ///   - pollInterval: seconds between a watcher's reads of the event log.
    ///   - sweepInterval: seconds between a watcher's scans for expired entries.
    ///   - onUnreadableEntry: gets a line naming each entry file `list` skips because it is
    ///     not an entry (hand-edited, or written by something else), so one bad file among the
    ///     leases cannot stop every node; `get` of that key still reports it as corrupt.
    public init(
        directory: String,
        clock: @escaping @Sendable () -> Double = FileRegistry.now,
        eventLogCapacity: Int = 10_000,
        pollInterval: Double = 0.15,
        sweepInterval: Double = 1,
        onUnreadableEntry: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.directory = directory
        self.onUnreadableEntry = onUnreadableEntry
        self.clock = clock
        self.eventLogCapacity = max(2, eventLogCapacity)
        self.pollInterval = pollInterval
        self.sweepInterval = sweepInterval
    }

    /// Makes this instance's watchers read the event log now instead of at their next poll:
    /// tests that change the files call it and then wait for the event, so they do not race
    /// poll intervals however loaded the machine is.
    public func pollNow() {
        pollBell.ring()
    }

    var entriesDirectory: String { directory + "/entries" }
    var lockPath: String { directory + "/.lock" }
    var revisionPath: String { directory + "/revision" }
    var logPath: String { directory + "/events.log" }

    /// The file name that stores `key`: bytes other than `A–Z a–z 0–9 - . _ ~` (and a leading
    /// `.`) percent-encoded, plus `.json`, e.g. `/coreos.com/network/subnets/10.244.1.0-24` →
    /// `%2Fcoreos.com%2Fnetwork%2Fsubnets%2F10.244.1.0-24.json`.
    public static func fileName(forKey key: String) throws(RegistryError) -> String {
        try FileRegistryFormat.fileName(forKey: key)
    }

    /// The path of the file that stores `key`.
    public func entryPath(forKey key: String) throws(RegistryError) -> String {
        entriesDirectory + "/" + (try Self.fileName(forKey: key))
    }

    /// Creates the directory and lock file if needed, so a daemon can report an unusable path at
    /// start-up rather than at its first lease write.
    public func prepare() throws(RegistryError) {
        try FileRegistryIO.makeDirectory(entriesDirectory)
        let directory = self.directory
        try FileRegistryIO.run { () throws(SystemError) in try Files.checkWritable(directory) }
        let fd = try FileRegistryIO.run { () throws(SystemError) in try Files.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC) }
        Files.close(fd)
    }

    // MARK: SubnetRegistry

    /// The live entry under `key`; nil if absent or expired. Reads one file, no lock.
    public func get(_ key: String) async throws -> RegistryEntry? {
        try await offload {
            let now = self.clock()
            guard let entry = try self.readEntry(key), !Self.isExpired(entry, now: now) else { return nil }
            return entry
        }
    }

    /// Live entries whose key starts with `prefix`, sorted by key, and the revision they reflect;
    /// a file that is not an entry is skipped and reported to `onUnreadableEntry`. Takes the
    /// shared lock so entries and revision are one consistent snapshot.
    public func list(prefix: String) async throws -> (entries: [RegistryEntry], revision: Int64) {
        try await offload {
            try self.withLock(exclusive: false) {
                let now = self.clock()
                let revision = try self.readRevision()
                var entries: [RegistryEntry] = []
                for (key, path) in try self.entryFiles() where key.hasPrefix(prefix) {
                    let entry: RegistryEntry?
                    do {
                        entry = try self.readEntry(key, path: path)
                    } catch RegistryError.corrupt(let reason) {
                        self.onUnreadableEntry("skipping registry entry \(reason)")
                        continue
                    }
                    guard let entry else { continue }
                    if !Self.isExpired(entry, now: now) { entries.append(entry) }
                }
                entries.sort { $0.key < $1.key }
                return (entries, revision)
            }
        }
    }

    public func create(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 {
        try await offload {
            try self.mutate { transaction in
                // Expired entries were swept before this runs, so any file here is live (or corrupt,
                // which `readEntry` reports rather than silently overwriting).
                if try self.readEntry(key) != nil { throw RegistryError.alreadyExists(key: key) }
                return try transaction.put(key, value: value, expiresAt: Self.expiry(ttl, now: transaction.now))
            }
        }
    }

    public func put(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 {
        try await offload {
            try self.mutate { transaction in
                try transaction.put(key, value: value, expiresAt: Self.expiry(ttl, now: transaction.now))
            }
        }
    }

    /// Deletes `key`, even if its file is corrupt (deleting is how an operator repairs one).
    public func delete(_ key: String) async throws {
        try await offload {
            try self.mutate { transaction in
                guard FileManager.default.fileExists(atPath: try self.entryPath(forKey: key)) else {
                    throw RegistryError.notFound(key: key)
                }
                try transaction.delete(key)
            }
        }
    }

    // MARK: Internals shared with the watcher

    static func isExpired(_ entry: RegistryEntry, now: Double) -> Bool {
        guard let expiresAt = entry.expiresAt else { return false }
        return now >= expiresAt
    }

    /// flanneld writes TTL 0 for reservations that never expire; nil means the same here.
    static func expiry(_ ttl: Double?, now: Double) -> Double? {
        guard let ttl, ttl > 0 else { return nil }
        return now + ttl
    }

    /// Runs blocking file work (flock waits, fsync) on a Dispatch thread, not on the cooperative
    /// pool, so tasks waiting for the lock cannot starve the tasks that would release it.
    func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Holds `.lock` for `body`. A shared lock on a directory that does not exist yet (or cannot be
    /// locked because it is read-only) runs `body` unlocked: there is nothing being written to race.
    func withLock<T>(exclusive: Bool, _ body: () throws -> T) throws -> T {
        let fd: Int32
        if exclusive {
            try FileRegistryIO.makeDirectory(entriesDirectory)
            fd = try FileRegistryIO.run { () throws(SystemError) in try Files.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC) }
        } else {
            let lockPath = self.lockPath
            let opened: Result<Int32?, SystemError> = Result { () throws(SystemError) in
                if let descriptor = try Files.openIfPresent(lockPath, O_RDONLY | O_CLOEXEC) { return descriptor }
                return try Files.openIfPresent(lockPath, O_RDWR | O_CREAT | O_CLOEXEC)
            }
            switch opened {
            case .success(let descriptor?):
                fd = descriptor
            case .success(nil):
                return try body()
            case .failure(let error) where [EACCES, EROFS].contains(error.errno):
                return try body()
            case .failure(let error):
                throw FileRegistryIO.unavailable(error)
            }
        }
        defer { Files.close(fd) }  // closing the only descriptor of the description releases the lock
        try FileRegistryIO.run { () throws(SystemError) in try Files.lock(fd, exclusive: exclusive, path: lockPath) }
        return try body()
    }

    func readRevision() throws(RegistryError) -> Int64 {
        guard let bytes = try FileRegistryIO.readFile(revisionPath) else { return 0 }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let revision = Int64(text), revision >= 0 else {
            throw .corrupt("\(revisionPath): not a revision number: \(text.prefix(40))")
        }
        return revision
    }

    /// The entry stored under `key`, expired or not; nil if there is no file.
    func readEntry(_ key: String, path: String? = nil) throws(RegistryError) -> RegistryEntry? {
        let path = if let path { path } else { try entryPath(forKey: key) }
        guard let bytes = try FileRegistryIO.readFile(path) else { return nil }
        return try FileRegistryFormat.decodeEntry(bytes, path: path, expectedKey: key)
    }

    /// (key, path) of every entry file; temporaries and stray files are skipped.
    func entryFiles() throws(RegistryError) -> [(key: String, path: String)] {
        try FileRegistryIO.names(in: entriesDirectory).compactMap { name in
            FileRegistryFormat.key(fromFileName: name).map { ($0, entriesDirectory + "/" + name) }
        }
    }

    /// Whether some readable entry has expired; a cheap unlocked check before a watcher sweeps.
    func hasExpiredEntries() throws(RegistryError) -> Bool {
        let now = clock()
        for (key, path) in try entryFiles() {
            if let entry = try? readEntry(key, path: path), Self.isExpired(entry, now: now) { return true }
        }
        return false
    }

    /// Runs `body` under the exclusive lock after deleting expired entries, then bounds the log.
    func mutate<T>(_ body: (inout Transaction) throws -> T) throws -> T {
        try withLock(exclusive: true) {
            var transaction = Transaction(registry: self, revision: try readRevision(), now: clock())
            try sweep(&transaction)
            let result = try body(&transaction)
            try trimLog(revision: transaction.revision)
            return result
        }
    }

    /// Deletes expired entries (each a delete event) and temporaries left by a crashed writer;
    /// the caller holds the exclusive lock, so no temporary belongs to a live write.
    private func sweep(_ transaction: inout Transaction) throws {
        for name in try FileRegistryIO.names(in: entriesDirectory) where Files.isTemporary(name) {
            try FileRegistryIO.remove(entriesDirectory + "/" + name)
        }
        for (key, path) in try entryFiles() {
            // A corrupt file is left for get/list to report and for put/delete to replace; it must
            // not block every other mutation.
            guard let entry = try? readEntry(key, path: path), Self.isExpired(entry, now: transaction.now) else {
                continue
            }
            try transaction.delete(key)
        }
    }

    /// Keeps the log within `eventLogCapacity` lines: once over, rewrites it with the newest half,
    /// so the rewrite cost is paid once per `eventLogCapacity / 2` events.
    private func trimLog(revision: Int64) throws {
        guard let first = try firstLogRevision(), revision - first + 1 > Int64(eventLogCapacity) else { return }
        guard let bytes = try FileRegistryIO.readFile(logPath) else { return }
        let keep = eventLogCapacity / 2
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        if lines.count > keep { lines.removeFirst(lines.count - keep) }
        var kept: [UInt8] = []
        for line in lines {
            kept.append(contentsOf: line)
            kept.append(UInt8(ascii: "\n"))
        }
        try FileRegistryIO.writeAtomically(kept, to: logPath)
    }

    /// Revision of the log's first line; nil if the log is empty or missing.
    func firstLogRevision() throws(RegistryError) -> Int64? {
        let path = logPath
        guard let fd = try FileRegistryIO.run({ () throws(SystemError) in try Files.openIfPresent(path, O_RDONLY | O_CLOEXEC) }) else {
            return nil
        }
        defer { Files.close(fd) }
        var line: [UInt8] = []
        while true {
            let chunk = try FileRegistryIO.run { () throws(SystemError) in
                try Files.read(fd, from: Int64(line.count), path: path, limit: 4096)
            }
            if chunk.isEmpty { return nil }  // no complete first line
            if let newline = chunk.firstIndex(of: UInt8(ascii: "\n")) {
                line.append(contentsOf: chunk[0..<newline])
                return try FileRegistryFormat.decodeEvent(line[...], location: "\(logPath) line 1").revision
            }
            line.append(contentsOf: chunk)
        }
    }

    /// Writes made under the exclusive lock: each bumps the revision, then logs the event, then
    /// changes the entry, so a crash leaves at worst a revision without an event, never an
    /// entry newer than the revision counter.
    struct Transaction {
        let registry: FileRegistry
        private(set) var revision: Int64
        let now: Double

        init(registry: FileRegistry, revision: Int64, now: Double) {
            self.registry = registry
            self.revision = revision
            self.now = now
        }

        mutating func put(_ key: String, value: [UInt8], expiresAt: Double?) throws -> Int64 {
            let path = try registry.entryPath(forKey: key)
            let entry = RegistryEntry(key: key, value: value, modRevision: revision + 1, expiresAt: expiresAt)
            try advance(with: .put(entry))
            try FileRegistryIO.writeAtomically(FileRegistryFormat.encodeEntry(entry), to: path)
            return revision
        }

        mutating func delete(_ key: String) throws {
            let path = try registry.entryPath(forKey: key)
            try advance(with: .delete(key: key, revision: revision + 1))
            try FileRegistryIO.remove(path)
            try FileRegistryIO.syncDirectory(registry.entriesDirectory)
        }

        private mutating func advance(with event: RegistryEvent) throws {
            let next = revision + 1
            try FileRegistryIO.writeAtomically(Array("\(next)\n".utf8), to: registry.revisionPath)
            revision = next
            try appendToLog(FileRegistryFormat.encodeEvent(event))
        }

        private func appendToLog(_ line: [UInt8]) throws {
            let path = registry.logPath
            try FileRegistryIO.run { () throws(SystemError) in
                let fd = try Files.open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC)
                defer { Files.close(fd) }
                // A writer that crashed mid-append left a line without its newline; cut it off so
                // the next line is not glued to it.
                let size = try Files.status(fd, path: path).size
                if size > 0, try Files.read(fd, from: size - 1, path: path, limit: 1) != [UInt8(ascii: "\n")] {
                    let bytes = try Files.read(fd, from: 0, path: path)
                    let keep = bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
                    try Files.truncate(fd, to: Int64(keep), path: path)
                }
                try Files.writeAll(fd, line, path: path)
                try Files.sync(fd, path: path)
            }
        }
    }
}
