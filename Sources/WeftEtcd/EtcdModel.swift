import Foundation
import WeftRegistry

// The JSON gateway's request and response shapes (KV, leases, txn, watch, errors), reduced to the fields
// Weft uses. Property names are the wire names, so no CodingKeys are needed. Every response field
// is optional because proto3 JSON omits default values (a missing key has no `kvs`, a failed txn
// no `succeeded`, a PUT event no `type`).

/// An int64 on the wire: the gateway sends strings ("8"); a number is accepted too, and requests
/// are sent as strings, which the gateway accepts for every int64 field.
struct I64: Codable, Sendable, Equatable {
    var value: Int64
    init(_ value: Int64) { self.value = value }
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self), let value = Int64(text) {
            self.value = value
        } else {
            value = try container.decode(Int64.self)
        }
    }
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// Bytes fields (`key`, `value`, `range_end`) travel as base64.
func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
func base64(_ text: String) -> String { base64(Array(text.utf8)) }

// MARK: Requests

struct RangeRequest: Encodable {
    var key: String
    var range_end: String? = nil
}

struct PutRequest: Encodable {
    var key: String
    var value: String
    var lease: I64? = nil
    var prev_kv: Bool? = nil
}

struct DeleteRangeRequest: Encodable {
    var key: String
    var prev_kv: Bool? = nil
}

struct CompactionRequest: Encodable {
    var revision: I64
    var physical: Bool
}

struct LeaseGrantRequest: Encodable {
    var TTL: I64
}

struct LeaseIDRequest: Encodable {
    var ID: I64
}

struct LeaseTimeToLiveRequest: Encodable {
    var ID: I64
    var keys: Bool
}

struct Compare: Encodable {
    var key: String
    var target: String
    var result: String
    var version: I64
}

struct RequestOp: Encodable {
    var request_put: PutRequest? = nil
    var request_range: RangeRequest? = nil
}

struct TxnRequest: Encodable {
    var compare: [Compare]
    var success: [RequestOp]
    var failure: [RequestOp]
}

struct WatchCreateRequest: Encodable {
    var key: String
    var range_end: String
    var start_revision: I64
}

struct WatchRequest: Encodable {
    var create_request: WatchCreateRequest
}

struct AuthenticateRequest: Encodable {
    var name: String
    var password: String
}

// MARK: Responses

struct ResponseHeader: Decodable {
    // cluster_id and member_id are uint64 and can exceed Int64.max, which the gateway still
    // writes as a JSON string of digits: not decoded at all.
    var revision: I64?
}

struct KeyValue: Decodable {
    var key: Data?
    var value: Data?
    var mod_revision: I64?
    var version: I64?
    var lease: I64?
}

struct RangeResponse: Decodable {
    var header: ResponseHeader?
    var kvs: [KeyValue]?
}

struct PutResponse: Decodable {
    var header: ResponseHeader?
    var prev_kv: KeyValue?
}

struct DeleteRangeResponse: Decodable {
    var header: ResponseHeader?
    var deleted: I64?
    var prev_kvs: [KeyValue]?
}

struct ResponseOp: Decodable {
    var response_range: RangeResponse?
}

struct TxnResponse: Decodable {
    var header: ResponseHeader?
    var succeeded: Bool?
    var responses: [ResponseOp]?
}

struct LeaseGrantResponse: Decodable {
    var ID: I64?
    var TTL: I64?
    var error: String?
}

struct LeaseTimeToLiveResponse: Decodable {
    var TTL: I64?
    var keys: [Data]?
}

struct AuthenticateResponse: Decodable {
    var token: String?
}

/// A unary error body: `{"error":"…","message":"…","code":5}`; `code` is the gRPC status.
struct GatewayErrorBody: Decodable {
    var error: String?
    var message: String?
    var code: Int?
}

struct WatchEvent: Decodable {
    /// Absent for PUT (enum value 0), "DELETE" for deletes and lease expiry.
    var type: String?
    var kv: KeyValue?
}

struct WatchResponse: Decodable {
    var header: ResponseHeader?
    var created: Bool?
    var canceled: Bool?
    var compact_revision: I64?
    var cancel_reason: String?
    var events: [WatchEvent]?
}

/// One line of the watch stream: a message wrapped in `result` (a stream RPC), or an error.
struct WatchLine: Decodable {
    var result: WatchResponse?
    var error: GatewayErrorBody?
}

/// What one line of the watch stream tells the watcher, read without I/O (and fuzzed).
struct WatchMessage: Equatable {
    enum Outcome: Equatable {
        /// The events after the revision the watcher had (none for a created or progress message).
        case events([RegistryEvent])
        /// etcd no longer has the events asked for: re-list.
        case compacted(Int64)
        /// An unreadable line, an error, or a cancel without a compaction: reconnect.
        case failed(String)
    }

    /// etcd confirms the watch (it may cancel it in the same message).
    var created: Bool
    var outcome: Outcome
}

extension WatchLine {
    /// Reads one stream line. All events of one revision come in one message (a lease expiry
    /// deletes several keys at one revision), so every event of the message is compared with
    /// `revision`, the last one delivered before it; anything at or below it was delivered
    /// before a reconnect and is dropped.
    static func read(_ line: some Collection<UInt8>, after revision: Int64) -> WatchMessage {
        guard let message = try? JSONDecoder().decode(WatchLine.self, from: Data(line)) else {
            // Not what we think the stream is: start over.
            return WatchMessage(created: false, outcome: .failed("unreadable watch message"))
        }
        if let error = message.error {
            return WatchMessage(created: false, outcome: .failed("watch error: \(error.message ?? error.error ?? "?")"))
        }
        guard let result = message.result else { return WatchMessage(created: false, outcome: .events([])) }
        let created = result.created == true
        if result.canceled == true {
            if let compacted = result.compact_revision?.value, compacted > 0 {
                return WatchMessage(created: created, outcome: .compacted(compacted))
            }
            return WatchMessage(created: created, outcome: .failed("watch canceled: \(result.cancel_reason ?? "no reason")"))
        }
        var events: [RegistryEvent] = []
        for event in result.events ?? [] {
            guard let kv = event.kv, let keyData = kv.key, let modRevision = kv.mod_revision?.value, modRevision > revision else { continue }
            let key = String(decoding: keyData, as: UTF8.self)
            events.append(event.type == "DELETE"
                ? .delete(key: key, revision: modRevision)
                : .put(RegistryEntry(key: key, value: Array(kv.value ?? Data()), modRevision: modRevision)))
        }
        return WatchMessage(created: created, outcome: .events(events))
    }
}
