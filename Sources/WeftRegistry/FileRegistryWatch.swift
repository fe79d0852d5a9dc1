import Foundation
#if canImport(Glibc)
import Glibc
#endif
import WeftLinux

extension FileRegistry {
    /// Events under `prefix` with revision > `revision`, in revision order, read by polling
    /// `events.log` every `pollInterval`. Every `sweepInterval` the watcher also looks for expired
    /// entries and, if it finds one, deletes it under the lock so the delete reaches every watcher
    /// through the log. Finishes with `.compacted` if the log no longer holds the next event
    /// (the caller re-lists and watches from the list's revision), and when the consuming task is
    /// cancelled.
    public func watch(prefix: String, after revision: Int64) -> AsyncThrowingStream<RegistryEvent, Error> {
        .producedByTask { yield in
            var cursor = LogCursor(lastRevision: revision)
            var lastSweep = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled {
                if ContinuousClock.now - lastSweep >= .seconds(sweepInterval) {
                    lastSweep = .now
                    // A read-only watcher cannot delete; it still sees deletes made by others.
                    _ = try? await offload {
                        if try self.hasExpiredEntries() { try self.mutate { _ in } }
                    }
                }
                let ringsBeforePoll = pollBell.rings
                let (events, next) = try await offload { [cursor] in try self.poll(cursor) }
                cursor = next
                for event in events where event.key.hasPrefix(prefix) {
                    yield(event)
                }
                await pollBell.wait(seconds: pollInterval, unlessRungSince: ringsBeforePoll)
            }
        }
    }

    /// Where a watcher is in the log. The log is appended in place and replaced (new inode) when
    /// trimmed, so the byte offset is only meaningful for the file identified by `device`/`inode`.
    struct LogCursor: Sendable {
        var lastRevision: Int64
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var offset: Int64 = 0
        var opened = false
    }

    /// Reads the log lines added since `cursor`, under the shared lock so no line is half written.
    func poll(_ cursor: LogCursor) throws -> ([RegistryEvent], LogCursor) {
        try withLock(exclusive: false) {
            var cursor = cursor
            let path = logPath
            guard let fd = try FileRegistryIO.run({ () throws(SystemError) in try Files.openIfPresent(path, O_RDONLY | O_CLOEXEC) }) else {
                // No log: fine while nothing was written after our revision, else those events are gone.
                let current = try readRevision()
                if current > cursor.lastRevision { throw RegistryError.compacted(revision: current + 1) }
                return ([], cursor)
            }
            defer { Files.close(fd) }
            let info = try FileRegistryIO.run { () throws(SystemError) in try Files.status(fd, path: path) }
            var fresh = false
            if !cursor.opened || info.device != cursor.device || info.inode != cursor.inode || info.size < cursor.offset {
                // First read, or the log was trimmed (replaced): start over and check for a gap.
                cursor.opened = true
                cursor.device = info.device
                cursor.inode = info.inode
                cursor.offset = 0
                fresh = true
            }
            let offset = cursor.offset
            let bytes = try FileRegistryIO.run { () throws(SystemError) in try Files.read(fd, from: offset, path: path) }
            var events: [RegistryEvent] = []
            var lineStart = 0
            while let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = bytes[lineStart..<newline]
                let location = "\(logPath) at byte \(cursor.offset + Int64(lineStart))"
                lineStart = newline + 1
                if line.isEmpty { continue }
                let event = try FileRegistryFormat.decodeEvent(line, location: location)
                if fresh {
                    fresh = false
                    // Each revision has exactly one line, so a first line past the next revision we
                    // need means the events in between were trimmed away.
                    if event.revision > cursor.lastRevision + 1 {
                        throw RegistryError.compacted(revision: event.revision)
                    }
                }
                if event.revision > cursor.lastRevision {
                    events.append(event)
                    cursor.lastRevision = event.revision
                }
            }
            // A trailing partial line (left by a crashed writer) is re-read next time, by then cut.
            cursor.offset += Int64(lineStart)
            if fresh {
                let current = try readRevision()
                if current > cursor.lastRevision { throw RegistryError.compacted(revision: current + 1) }
            }
            return (events, cursor)
        }
    }
}
