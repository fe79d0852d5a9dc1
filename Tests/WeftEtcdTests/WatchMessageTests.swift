import Testing
import WeftRegistry
@testable import WeftEtcd

/// Lines of etcd's watch stream as the gateway sends them, read without a connection.
@Suite struct WatchMessageTests {
    func read(_ line: String, after revision: Int64 = 5) -> WatchMessage {
        WatchLine.read(Array(line.utf8), after: revision)
    }

    @Test("events after the watcher's revision come out in order; a PUT has no type, a DELETE says so")
    func events() {
        let line = #"{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"YQ==","value":"eA==","mod_revision":"9"}},{"type":"DELETE","kv":{"key":"Yg==","mod_revision":"9"}},{"kv":{"key":"Yw==","mod_revision":"4"}}]}}"#
        #expect(read(line) == WatchMessage(created: false, outcome: .events([
            .put(RegistryEntry(key: "a", value: Array("x".utf8), modRevision: 9)),
            .delete(key: "b", revision: 9),
        ])), "revision 4 was delivered before the reconnect")
    }

    @Test("created, compacted, cancelled, an error, garbage")
    func control() {
        #expect(read(#"{"result":{"header":{"revision":"1"},"created":true}}"#) == WatchMessage(created: true, outcome: .events([])))
        #expect(read(#"{"result":{"created":true,"canceled":true,"compact_revision":"3"}}"#) == WatchMessage(created: true, outcome: .compacted(3)))
        #expect(read(#"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#)
                == WatchMessage(created: false, outcome: .failed("watch canceled: permission denied")))
        #expect(read(#"{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}"#)
                == WatchMessage(created: false, outcome: .failed("watch error: etcdserver: no leader")))
        #expect(read("{not json") == WatchMessage(created: false, outcome: .failed("unreadable watch message")))
    }
}
