import Foundation
import WeftRegistry

extension EtcdRegistry {
    /// Events under `prefix` after `revision`, in revision order, from one streaming
    /// `POST /v3/watch`. PUT → `.put`, DELETE (explicit, revoke or lease
    /// expiry) → `.delete`.
    ///
    /// The stream survives etcd: when the connection ends cleanly or fails, or etcd cannot be
    /// reached, it reconnects (the endpoint that answered last first, then the others) after
    /// 100 ms doubling to 5 s, as flanneld does, resuming after the last revision delivered and
    /// dropping anything at or below it. It finishes with `.compacted(revision)` when etcd no
    /// longer has the events (the caller re-lists and watches from the list's revision), and
    /// finishes cleanly when the consuming task is cancelled.
    ///
    /// Gap: the watch is not opened with etcd's require-leader option, so a member cut off from
    /// its cluster keeps a quiet stream open instead of ending it.
    public func watch(prefix: String, after revision: Int64) -> AsyncThrowingStream<RegistryEvent, Error> {
        .producedByTask { yield in try await self.watchLoop(prefix: prefix, after: revision, deliver: yield) }
    }

    static let minimumBackoff = 0.1
    static let maximumBackoff = 5.0

    func watchLoop(prefix: String, after revision: Int64, deliver: (RegistryEvent) -> Void) async throws {
        var last = revision
        var backoff = Self.minimumBackoff
        let key = base64(Self.rangeStart(prefix))
        let rangeEnd = base64(Self.prefixEnd(prefix))
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
                    try await EtcdHTTP.stream(endpoint, path: "/v3/watch", body: body, token: token) { line in
                        guard let message = try? JSONDecoder().decode(WatchLine.self, from: Data(line)) else {
                            // An unreadable line means the stream is not what we think: start over.
                            throw EtcdTransportError(endpoint: endpoint.url, message: "unreadable watch message")
                        }
                        if let error = message.error {
                            throw EtcdTransportError(endpoint: endpoint.url, message: "watch error: \(error.message ?? error.error ?? "?")")
                        }
                        guard let result = message.result else { return true }
                        if result.created == true {
                            established = true
                            state.withLock { $0.preferred = index }
                        }
                        if result.canceled == true {
                            if let compacted = result.compact_revision?.value, compacted > 0 {
                                throw RegistryError.compacted(revision: compacted)
                            }
                            throw EtcdTransportError(endpoint: endpoint.url, message: "watch canceled: \(result.cancel_reason ?? "no reason")")
                        }
                        // All events of one revision come in one message (a lease expiry deletes
                        // several keys at one revision), so compare with the revision delivered
                        // before this message and advance only afterwards.
                        let before = last
                        for event in result.events ?? [] {
                            guard let kv = event.kv, let keyData = kv.key, let modRevision = kv.mod_revision?.value,
                                  modRevision > before
                            else { continue }
                            let eventKey = String(decoding: keyData, as: UTF8.self)
                            if event.type == "DELETE" {
                                deliver(.delete(key: eventKey, revision: modRevision))
                            } else {
                                deliver(.put(RegistryEntry(key: eventKey, value: Array(kv.value ?? Data()), modRevision: modRevision)))
                            }
                            last = max(last, modRevision)
                        }
                        return true
                    }
                } catch let error as RegistryError {
                    // compacted ends the watch; unavailable here only comes from authentication,
                    // which is worth retrying like a dead endpoint.
                    if case .compacted = error { throw error }
                } catch is EtcdTransportError {
                } catch is EtcdGatewayError {
                }
                try Task.checkCancellation()
                if established { break }
            }
            // A stream that was running means etcd was fine a moment ago: reconnect quickly.
            if established { backoff = Self.minimumBackoff }
            try await Task.sleep(for: .seconds(backoff))
            backoff = min(backoff * 2, Self.maximumBackoff)
        }
    }
}
