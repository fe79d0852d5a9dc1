import Foundation
import Glibc
import Synchronization
import Testing
import WeftLinux
import WeftRegistry
import WeftTestSupport

/// A clock the test moves by hand, so expiry needs no sleeping.
private final class ManualClock: Sendable {
    private let seconds = Mutex<Double>(1_700_000_000)
    var now: Double { seconds.withLock { $0 } }
    func advance(by delta: Double) { seconds.withLock { $0 += delta } }
    var function: @Sendable () -> Double { { self.now } }
}

/// The first `count` events of `stream`, failing if they take longer than `timeout` seconds.
private func firstEvents(
    _ count: Int, of stream: AsyncThrowingStream<RegistryEvent, Error>, timeout: Double = 5
) async throws -> [RegistryEvent] {
    guard let events = try await firstElements(count, of: stream, within: .seconds(timeout)) else {
        Issue.record("timed out waiting for \(count) events")
        return []
    }
    return events
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private let prefix = "/coreos.com/network/subnets/"
private func leaseKey(_ index: Int) -> String { "\(prefix)10.244.\(index).0-24" }

@Suite struct FileRegistryTests {
    @Test func createGetListPutDelete() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory + "/store")
            #expect(try await registry.get(leaseKey(1)) == nil)
            #expect(try await registry.list(prefix: prefix).revision == 0)

            let value = bytes(#"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#)
            let first = try await registry.create(leaseKey(1), value: value, ttl: 86400)
            #expect(first == 1)
            let entry = try #require(try await registry.get(leaseKey(1)))
            #expect(entry.value == value)
            #expect(entry.modRevision == 1)
            #expect(entry.expiresAt != nil)

            #expect(try await registry.create(leaseKey(2), value: [0, 255], ttl: nil) == 2)
            _ = try await registry.create("/coreos.com/network/config", value: bytes("{}"), ttl: nil)
            let listed = try await registry.list(prefix: prefix)
            #expect(listed.entries.map(\.key) == [leaseKey(1), leaseKey(2)])
            #expect(listed.revision == 3)
            #expect(listed.entries[1].expiresAt == nil)

            let renewed = try await registry.put(leaseKey(1), value: bytes("new"), ttl: 60)
            #expect(renewed == 4)
            #expect(try await registry.get(leaseKey(1))?.value == bytes("new"))
            #expect(try await registry.get(leaseKey(1))?.modRevision == 4)

            try await registry.delete(leaseKey(1))
            #expect(try await registry.get(leaseKey(1)) == nil)
            #expect(try await registry.list(prefix: prefix).entries.map(\.key) == [leaseKey(2)])
            await #expect(throws: RegistryError.notFound(key: leaseKey(1))) {
                try await registry.delete(leaseKey(1))
            }
            // A second instance on the same directory sees the same store.
            let other = FileRegistry(directory: directory + "/store")
            #expect(try await other.list(prefix: "").revision == 5)
        }
    }

    @Test func createOfAnExistingKeyThrowsAlreadyExists() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory)
            _ = try await registry.create(leaseKey(1), value: bytes("a"), ttl: 86400)
            await #expect(throws: RegistryError.alreadyExists(key: leaseKey(1))) {
                _ = try await registry.create(leaseKey(1), value: bytes("b"), ttl: 86400)
            }
            #expect(try await registry.get(leaseKey(1))?.value == bytes("a"))
            #expect(try await registry.list(prefix: "").revision == 1, "a failed create writes nothing")
        }
    }

    @Test func fileFormatIsReadableAndNamesAreReversible() async throws {
        #expect(try FileRegistry.fileName(forKey: "/coreos.com/network/subnets/10.244.1.0-24")
            == "%2Fcoreos.com%2Fnetwork%2Fsubnets%2F10.244.1.0-24.json")
        #expect(try FileRegistry.fileName(forKey: ".hidden%/x") == "%2Ehidden%25%2Fx.json")
        #expect(try FileRegistry.fileName(forKey: "a/b") != FileRegistry.fileName(forKey: "a%2Fb"))
        #expect(throws: RegistryError.self) { try FileRegistry.fileName(forKey: "") }
        #expect(throws: RegistryError.self) { try FileRegistry.fileName(forKey: String(repeating: "/", count: 100)) }

        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory, clock: { 1000 })
            let odd = ["/p/é ü", "/p/100%", "/p/.x", "/p/a&b-1"]
            for key in odd { _ = try await registry.put(key, value: bytes(key), ttl: 5) }
            let listed = try await registry.list(prefix: "/p/")
            #expect(listed.entries.map(\.key) == odd.sorted())
            #expect(listed.entries.allSatisfy { $0.value == bytes($0.key) })

            let text = try String(contentsOfFile: registry.entryPath(forKey: "/p/100%"), encoding: .utf8)
            #expect(text == #"{"expiresAt":1005,"key":"/p/100%","modRevision":2,"value":"L3AvMTAwJQ=="}"# + "\n")
            let revision = try String(contentsOfFile: directory + "/revision", encoding: .utf8)
            #expect(revision == "4\n")
            let log = try String(contentsOfFile: directory + "/events.log", encoding: .utf8)
            #expect(log.split(separator: "\n").count == 4)
        }
    }

    @Test func expiredEntryDisappearsCanBeRecreatedAndIsDeletedForWatchers() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let registry = FileRegistry(directory: directory, clock: clock.function, pollInterval: 0.02,
                                        sweepInterval: 0.05)
            _ = try await registry.create(leaseKey(1), value: bytes("old"), ttl: 60)
            _ = try await registry.create(leaseKey(2), value: bytes("keep"), ttl: nil)
            let stream = registry.watch(prefix: prefix, after: 2)

            clock.advance(by: 59)
            #expect(try await registry.get(leaseKey(1)) != nil)
            clock.advance(by: 1)
            #expect(try await registry.get(leaseKey(1)) == nil, "expiry is exact at expiresAt")
            #expect(try await registry.list(prefix: prefix).entries.map(\.key) == [leaseKey(2)])

            // The watcher's sweep deletes it (no mutation needed) and every watcher sees the delete.
            let events = try await firstEvents(1, of: stream)
            #expect(events == [.delete(key: leaseKey(1), revision: 3)])
            #expect(!FileManager.default.fileExists(atPath: try registry.entryPath(forKey: leaseKey(1))))

            #expect(try await registry.create(leaseKey(1), value: bytes("new"), ttl: 60) == 4)
            #expect(try await registry.get(leaseKey(1))?.value == bytes("new"))
        }
    }

    @Test func createReplacesAnExpiredEntryAndLogsItsDelete() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let registry = FileRegistry(directory: directory, clock: clock.function)
            _ = try await registry.create(leaseKey(1), value: bytes("old"), ttl: 10)
            clock.advance(by: 11)
            // No watcher ran: the create itself sweeps, so the log holds delete then put.
            #expect(try await registry.create(leaseKey(1), value: bytes("new"), ttl: 10) == 3)
            let events = try await firstEvents(3, of: registry.watch(prefix: "", after: 0))
            #expect(events.map(\.revision) == [1, 2, 3])
            #expect(events[1] == .delete(key: leaseKey(1), revision: 2))
            #expect(events[2] == .put(RegistryEntry(key: leaseKey(1), value: bytes("new"), modRevision: 3,
                                                    expiresAt: clock.now + 10)))
        }
    }

    @Test func watchFromARevisionSeesExactlyTheLaterEventsInOrder() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory, pollInterval: 0.02)
            _ = try await registry.create(leaseKey(1), value: bytes("a1"), ttl: nil)
            _ = try await registry.create(leaseKey(2), value: bytes("b1"), ttl: nil)
            let start = try await registry.list(prefix: prefix).revision
            #expect(start == 2)

            let stream = registry.watch(prefix: prefix, after: start)
            _ = try await registry.put(leaseKey(1), value: bytes("a2"), ttl: nil)
            _ = try await registry.put("/elsewhere/key", value: bytes("x"), ttl: nil)  // other prefix
            _ = try await registry.put(leaseKey(2), value: bytes("b2"), ttl: nil)
            try await registry.delete(leaseKey(1))
            // A marker after the three proves nothing else was delivered in between.
            _ = try await registry.put(leaseKey(9), value: bytes("marker"), ttl: nil)

            let events = try await firstEvents(4, of: stream)
            #expect(events == [
                .put(RegistryEntry(key: leaseKey(1), value: bytes("a2"), modRevision: 3)),
                .put(RegistryEntry(key: leaseKey(2), value: bytes("b2"), modRevision: 5)),
                .delete(key: leaseKey(1), revision: 6),
                .put(RegistryEntry(key: leaseKey(9), value: bytes("marker"), modRevision: 7)),
            ])

            // Another watcher from an older revision replays from there.
            let replay = try await firstEvents(2, of: registry.watch(prefix: prefix, after: 1))
            #expect(replay.map(\.revision) == [2, 3])
        }
    }

    @Test func watchFromATrimmedRevisionThrowsCompacted() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory, eventLogCapacity: 10, pollInterval: 0.02)
            for index in 1...30 { _ = try await registry.put(leaseKey(index % 4), value: [UInt8(index)], ttl: nil) }
            let log = try String(contentsOfFile: directory + "/events.log", encoding: .utf8)
            let kept = log.split(separator: "\n").count
            #expect(kept >= 5 && kept <= 10, "the log stays bounded")

            await #expect(throws: RegistryError.self) {
                _ = try await firstEvents(1, of: registry.watch(prefix: "", after: 1))
            }
            do {
                _ = try await firstEvents(1, of: registry.watch(prefix: "", after: 1))
            } catch let error as RegistryError {
                guard case .compacted(let oldest) = error else { throw error }
                #expect(oldest == Int64(30 - kept + 1))
            }
            // From the oldest kept revision on, watching still works.
            let recent = try await firstEvents(2, of: registry.watch(prefix: "", after: 28))
            #expect(recent.map(\.revision) == [29, 30])
        }
    }

    @Test func aWatcherThatFallsBehindATrimSeesCompacted() async throws {
        try await withTemporaryDirectory { directory in
            // The watcher reads the log once, then not before pollNow(): meanwhile the log is
            // trimmed past its position, which it must report rather than silently skip. No
            // timing is involved, however slow the machine.
            let registry = FileRegistry(directory: directory, eventLogCapacity: 10, pollInterval: 3600)
            _ = try await registry.put(leaseKey(1), value: [0], ttl: nil)
            _ = try await registry.put(leaseKey(1), value: [1], ttl: nil)
            var events = registry.watch(prefix: "", after: 1).makeAsyncIterator()
            #expect(try await events.next()?.revision == 2, "the first read is done; the next waits for pollNow")
            for index in 2...13 { _ = try await registry.put(leaseKey(1), value: [UInt8(index)], ttl: nil) }
            registry.pollNow()
            do {
                let next = try await events.next()
                Issue.record("expected .compacted, got \(String(describing: next))")
            } catch RegistryError.compacted {
            }
        }
    }

    @Test("pollNow wakes a watcher at once: a change is seen without waiting out the interval")
    func pollNowWakesTheWatcher() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory, pollInterval: 3600)
            var events = registry.watch(prefix: prefix, after: 0).makeAsyncIterator()
            _ = try await registry.put(leaseKey(1), value: bytes("a"), ttl: nil)
            // Whether the watcher's first read came before or after the put, the rung bell
            // makes it read again: the event arrives, never an hour later.
            registry.pollNow()
            #expect(try await events.next()?.revision == 1)
            _ = try await registry.put(leaseKey(2), value: bytes("b"), ttl: nil)
            registry.pollNow()
            #expect(try await events.next()?.revision == 2)
        }
    }

    @Test func eightInstancesRacingForThreeKeysEachKeyHasOneWinner() async throws {
        try await withTemporaryDirectory { directory in
            let keys = (1...3).map(leaseKey)
            let outcomes = try await withThrowingTaskGroup(of: [(String, Bool)].self) { group in
                for racer in 0..<8 {
                    group.addTask {
                        // Separate instances open `.lock` separately, like separate processes.
                        let registry = FileRegistry(directory: directory)
                        var results: [(String, Bool)] = []
                        for key in keys {
                            do {
                                _ = try await registry.create(key, value: [UInt8(racer)], ttl: 86400)
                                results.append((key, true))
                            } catch RegistryError.alreadyExists(let existing) {
                                #expect(existing == key)
                                results.append((key, false))
                            }
                        }
                        return results
                    }
                }
                var all: [(String, Bool)] = []
                for try await results in group { all += results }
                return all
            }
            for key in keys {
                #expect(outcomes.filter { $0.0 == key && $0.1 }.count == 1, "one winner for \(key)")
                #expect(outcomes.filter { $0.0 == key && !$0.1 }.count == 7)
            }
            let listed = try await FileRegistry(directory: directory).list(prefix: prefix)
            #expect(listed.entries.count == 3)
            #expect(listed.revision == 3, "losers wrote nothing")
        }
    }

    @Test(arguments: 0..<3)
    func eightAcquirersRetryingOnAlreadyExistsGetEightDistinctKeys(round: Int) async throws {
        try await withTemporaryDirectory { directory in
            let won = try await withThrowingTaskGroup(of: String?.self) { group in
                for racer in 0..<8 {
                    group.addTask {
                        let registry = FileRegistry(directory: directory)
                        // All start at the same key, so every acquirer but one must retry.
                        for index in 0..<16 {
                            do {
                                _ = try await registry.create(leaseKey(index), value: [UInt8(racer)], ttl: 86400)
                                return leaseKey(index)
                            } catch RegistryError.alreadyExists {
                                continue
                            }
                        }
                        return nil
                    }
                }
                var won: [String?] = []
                for try await key in group { won.append(key) }
                return won
            }
            let keys = won.compactMap { $0 }
            #expect(keys.count == 8)
            #expect(Set(keys).count == 8)
            let listed = try await FileRegistry(directory: directory).list(prefix: prefix)
            #expect(Set(listed.entries.map(\.key)) == Set(keys))
            #expect(Set(listed.entries.map { $0.value[0] }).count == 8, "each key holds its winner's value")
        }
    }

    @Test func corruptFilesAreReportedNotCrashedOn() async throws {
        try await withTemporaryDirectory { directory in
            let skipped = SkipLog()
            let registry = FileRegistry(directory: directory, onUnreadableEntry: { skipped.append($0) })
            _ = try await registry.create(leaseKey(1), value: bytes("ok"), ttl: nil)
            _ = try await registry.create(leaseKey(2), value: bytes("ok"), ttl: nil)
            let path = try registry.entryPath(forKey: leaseKey(1))
            try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))

            // One bad file among the leases is skipped by list, and said which, so it cannot
            // stop every node from starting.
            let listed = try await registry.list(prefix: prefix)
            #expect(listed.entries.map(\.key) == [leaseKey(2)])
            #expect(skipped.lines == ["skipping registry entry \(path): not a registry entry (not JSON)"])

            for attempt in 0..<2 {
                do {
                    switch attempt {
                    case 0: _ = try await registry.get(leaseKey(1))
                    default: _ = try await registry.create(leaseKey(1), value: [], ttl: nil)
                    }
                    Issue.record("attempt \(attempt) did not throw")
                } catch let error as RegistryError {
                    guard case .corrupt(let message) = error else { throw error }
                    #expect(message.contains(path), "names the file: \(message)")
                }
            }
            // Other keys still work, and put replaces the corrupt file.
            #expect(try await registry.get(leaseKey(2))?.value == bytes("ok"))
            _ = try await registry.create(leaseKey(3), value: bytes("ok"), ttl: nil)
            _ = try await registry.put(leaseKey(1), value: bytes("fixed"), ttl: nil)
            #expect(try await registry.get(leaseKey(1))?.value == bytes("fixed"))

            try Data("seven".utf8).write(to: URL(fileURLWithPath: directory + "/revision"))
            await #expect(throws: RegistryError.self) { _ = try await registry.list(prefix: "") }
            do {
                _ = try await registry.put(leaseKey(1), value: [], ttl: nil)
            } catch let error as RegistryError {
                guard case .corrupt(let message) = error else { throw error }
                #expect(message.contains("revision"))
            }
        }
    }

    @Test func anUnusableDirectoryIsUnavailableNamingThePath() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory + "/plain-file"
            try Data().write(to: URL(fileURLWithPath: file))
            let registry = FileRegistry(directory: file + "/store")
            for attempt in 0..<2 {
                do {
                    if attempt == 0 {
                        try registry.prepare()
                    } else {
                        _ = try await registry.create(leaseKey(1), value: [], ttl: nil)
                    }
                    Issue.record("no error for a directory under a file")
                } catch let error as RegistryError {
                    guard case .unavailable(let message) = error else { throw error }
                    #expect(message.contains(file), "names the path: \(message)")
                    #expect(message.contains("Not a directory"), "gives strerror: \(message)")
                }
            }
            // Reading a store that does not exist yet is simply empty.
            let absent = FileRegistry(directory: directory + "/not-yet")
            #expect(try await absent.get(leaseKey(1)) == nil)
            #expect(try await absent.list(prefix: "").entries.isEmpty)
        }
    }
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func aLockHeldByAnotherProcessMakesWritersWait() async throws {
        try await withTemporaryDirectory { directory in
            let registry = FileRegistry(directory: directory)
            try registry.prepare()
            // Another process holds the exclusive lock as a writer would; ours must wait for it.
            let ready = directory + "/holder-ready"
            let script = """
                import fcntl, sys, time
                f = open(sys.argv[1], "r+")
                fcntl.flock(f, fcntl.LOCK_EX)
                open(sys.argv[2], "w").close()
                time.sleep(0.5)
                """
            let holder = try ChildProcess.spawn(["python3", "-c", script, directory + "/.lock", ready],
                                                stdout: .discard, stderr: .standardOutput)
            defer { _ = holder.kill() }
            var polls = 0
            while access(ready, F_OK) != 0 && polls < 500 {
                usleep(10_000)
                polls += 1
            }
            #expect(access(ready, F_OK) == 0, "the other process took the lock")
            let started = ContinuousClock.now
            _ = try await registry.create(leaseKey(1), value: [1], ttl: nil)
            #expect(ContinuousClock.now - started >= .milliseconds(300), "create waited for the other process")
            #expect(holder.wait(seconds: 5) == 0)
        }
    }
}

/// Lines from `onUnreadableEntry`, which may be called on any thread.
private final class SkipLog: Sendable {
    private let stored = Mutex<[String]>([])
    func append(_ line: String) { stored.withLock { $0.append(line) } }
    var lines: [String] { stored.withLock { $0 } }
}
