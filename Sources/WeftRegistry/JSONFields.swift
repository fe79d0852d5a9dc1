import Foundation

/// The fields a reader wants from one JSON object (a net config, a lease value), looked up the
/// way Go's encoding/json does for flanneld: an exact key match wins, else the first
/// case-insensitive one; unknown keys are ignored.
///
/// Registry values are written by any node that can write under the prefix, so reading them must
/// cost little whatever they hold: the bytes are capped in size and nesting before a decoder sees
/// them, and only the wanted fields are decoded (an unknown key holding 500 nested arrays is
/// skipped, never built).
struct JSONFields: Sendable, Equatable {
    /// Far above any config or lease flanneld writes (tens to hundreds of bytes), far below
    /// etcd's 1.5 MiB value limit.
    static let maxBytes = 64 * 1024
    /// flannel's own values nest two levels (`{"Backend":{"Type":"udp"}}`).
    static let maxDepth = 32

    /// A wanted field's value. Arrays, and objects where none was asked for, are `other`: their
    /// contents are not read.
    enum Value: Sendable, Equatable {
        case null
        case bool(Bool)
        case number(Double)
        case string(String)
        case object(JSONFields)
        case other
    }

    enum Failure: Error, Equatable {
        case notJSON
        case notAnObject
        case tooLarge(Int)
        case tooDeep
    }

    private var values: [String: Value] = [:]

    /// The value of wanted field `name`, nil when the object has no such key.
    subscript(name: String) -> Value? { values[name] }

    /// Reads `names` from the JSON object in `bytes`; for the fields named in `nested`, an
    /// object value is read too, for the names given there.
    static func decode(_ bytes: some Collection<UInt8>, names: [String], nested: [String: [String]] = [:]) -> Result<JSONFields, Failure> {
        guard bytes.count <= maxBytes else { return .failure(.tooLarge(bytes.count)) }
        guard !nestsDeeper(than: maxDepth, bytes) else { return .failure(.tooDeep) }
        let data = Data(bytes)
        let decoder = JSONDecoder()
        decoder.userInfo[Schema.key] = Schema(names: names, nested: nested)
        do {
            return .success(try decoder.decode(Document.self, from: data).fields)
        } catch DecodingError.typeMismatch {
            return .failure(.notAnObject)
        } catch {
            // Valid JSON that is not an object (a top-level scalar or array) also lands here.
            return .failure((try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)) == nil ? .notJSON : .notAnObject)
        }
    }

    /// Whether arrays and objects nest deeper than `limit`, counted outside strings. Malformed
    /// JSON is left for the decoder to refuse.
    static func nestsDeeper(than limit: Int, _ bytes: some Collection<UInt8>) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return false
    }

    /// Which fields to read, handed to `Document` through the decoder's user info.
    private struct Schema: Sendable {
        static let key = CodingUserInfoKey(rawValue: "weft.jsonFields.schema")!
        var names: [String]
        var nested: [String: [String]]
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private struct Document: Decodable {
        var fields: JSONFields

        init(from decoder: any Decoder) throws {
            guard let schema = decoder.userInfo[Schema.key] as? Schema else {
                preconditionFailure("JSONFields.Document is decoded only through JSONFields.decode")
            }
            fields = try JSONFields.read(decoder.container(keyedBy: AnyKey.self), names: schema.names, nested: schema.nested)
        }
    }

    private static func read(_ container: KeyedDecodingContainer<AnyKey>, names: [String], nested: [String: [String]]) throws -> JSONFields {
        var fields = JSONFields()
        let keys = container.allKeys
        for name in names {
            let folded = name.lowercased()
            guard let key = keys.first(where: { $0.stringValue == name }) ?? keys.first(where: { $0.stringValue.lowercased() == folded })
            else { continue }
            fields.values[name] = try value(in: container, key: key, nestedNames: nested[name])
        }
        return fields
    }

    /// One wanted value. Each attempt below fails at once on the value's first token, so a
    /// wrong type costs the same whatever the value holds.
    private static func value(in container: KeyedDecodingContainer<AnyKey>, key: AnyKey, nestedNames: [String]?) throws -> Value {
        if try container.decodeNil(forKey: key) { return .null }
        if let value = try? container.decode(Bool.self, forKey: key) { return .bool(value) }
        if let value = try? container.decode(Double.self, forKey: key) { return .number(value) }
        if let value = try? container.decode(String.self, forKey: key) { return .string(value) }
        if let nestedNames, let object = try? container.nestedContainer(keyedBy: AnyKey.self, forKey: key) {
            return .object(try read(object, names: nestedNames, nested: [:]))
        }
        return .other
    }
}
