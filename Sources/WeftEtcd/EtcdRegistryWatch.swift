import Foundation
import WeftRegistry

extension EtcdRegistry {
    /// Events under `prefix` after `revision`, in revision order, from one streaming
    /// `POST /v3/watch`. PUT → `.put`, DELETE (explicit, revoke or lease
    /// expiry) → `.delete`.
    ///
    /// When a running stream ends or fails it reconnects at once (the endpoint that answered
    /// last first, then the others), resuming after the last revision delivered and dropping
    /// anything at or below it. When no endpoint takes the watch, it finishes with
    /// `.unavailable` naming the last failure, so the caller sees the outage (LeaseManager logs
    /// it, re-lists with back-off and watches again). A member that stops answering while the
    /// stream is quiet (a frozen etcd) is found by a probe every 5 s on the same endpoint. It
    /// finishes with `.compacted(revision)` when etcd no longer has the events (the caller
    /// re-lists and watches from the list's revision), and cleanly when the consuming task is
    /// cancelled.
    ///
    /// Gap: the watch is not opened with etcd's require-leader option, so a member cut off from
    /// its cluster keeps a quiet stream open instead of ending it.
    public func watch(prefix: String, after revision: Int64) -> AsyncThrowingStream<RegistryEvent, Error> {
        .producedByTask { yield in try await self.watchLoop(prefix: prefix, after: revision, deliver: yield) }
    }

    static let minimumBackoff = 0.1

    func watchLoop(prefix: String, after revision: Int64, deliver: (RegistryEvent) -> Void) async throws {
        var last = revision
        let key = base64(Self.rangeStart(prefix))
        let rangeEnd = base64(Self.prefixEnd(prefix))
        var lastFailure = "no endpoint answered"
        while true {
            try Task.checkCancellation()
            let request = WatchRequest(
                create_request: WatchCreateRequest(key: key, range_end: rangeEnd, start_revision: I64(last + 1)))
            let body = try Array(JSONEncoder().encode(request))
            var established = false
            for index in order() {
                guard case .success(let endpoint) = parsed[index] else { continue }
                do {
                    let token = try await self.token()
                    let probeBody = try Array(JSONEncoder().encode(RangeRequest(key: key)))
                    let probe: @Sendable () async -> Bool = {
                        guard let answer = try? await EtcdHTTP.post(endpoint, path: "/v3/kv/range", body: probeBody, token: token) else { return false }
                        // An auth failure or a gateway error is still an answer: the member is alive.
                        return answer.status > 0
                    }
                    try await EtcdHTTP.stream(endpoint, path: "/v3/watch", body: body, token: token, probe: probe) { line in
                        let message = WatchLine.read(line, after: last)
                        if message.created {
                            established = true
                            state.withLock { $0.preferred = index }
                        }
                        switch message.outcome {
                        case .failed(let reason):
                            throw EtcdTransportError(endpoint: endpoint.url, message: reason)
                        case .compacted(let revision):
                            throw RegistryError.compacted(revision: revision)
                        case .events(let events):
                            for event in events {
                                deliver(event)
                                last = max(last, event.revision)
                            }
                        }
                        return true
                    }
                } catch let error as RegistryError {
                    // compacted ends the watch; unavailable here only comes from authentication,
                    // which is worth retrying like a dead endpoint.
                    if case .compacted = error { throw error }
                } catch let error as EtcdTransportError {
                    lastFailure = "\(error)"
                } catch let error as EtcdGatewayError {
                    lastFailure = "\(error)"
                }
                try Task.checkCancellation()
                if established { break }
            }
            // No endpoint took the watch: the caller decides how to wait (and says so).
            guard established else { throw RegistryError.unavailable(lastFailure) }
            // A stream that was running means etcd was fine a moment ago: reconnect quickly.
            try await Task.sleep(for: .seconds(Self.minimumBackoff))
        }
    }
}
