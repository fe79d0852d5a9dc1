import Foundation

/// On-disk encodings of the file registry: entry file names, entry files, event-log lines.
///
/// Entry file: `<dir>/entries/<encoded key>.json` holding
/// `{"expiresAt":1234.5,"key":"/coreos.com/…","modRevision":7,"value":"<base64>"}`
/// (`expiresAt` is `null` for a key that never expires). Values are opaque bytes, hence base64.
///
/// Event-log line: `{"expiresAt":…,"key":"…","revision":7,"type":"put","value":"<base64>"}` or
/// `{"key":"…","revision":8,"type":"delete"}`, one per store revision, oldest first.
enum FileRegistryFormat {
    /// Bytes kept verbatim in file names: RFC 3986 unreserved characters. Everything else,
    /// notably `/` and `%`, becomes `%XX`, so names are reversible and never contain a separator.
    private static func isKept(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    static let entrySuffix = ".json"
    /// Linux NAME_MAX; a longer name could not be created.
    static let maximumNameLength = 255

    /// `/coreos.com/network/subnets/10.244.1.0-24` → `%2Fcoreos.com%2Fnetwork%2Fsubnets%2F10.244.1.0-24.json`.
    static func fileName(forKey key: String) throws(RegistryError) -> String {
        guard !key.isEmpty else { throw .unavailable("an empty key cannot be stored") }
        var name = ""
        let hex = Array("0123456789ABCDEF".utf8)
        for (index, byte) in key.utf8.enumerated() {
            // A leading dot is escaped so no entry is hidden or named "." / "..", and so entries
            // never collide with the registry's own dot-files (temporary files).
            if isKept(byte) && !(index == 0 && byte == UInt8(ascii: ".")) {
                name.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                name += "%"
                name.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                name.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        name += entrySuffix
        guard name.utf8.count <= maximumNameLength else {
            throw .unavailable("key too long for a file name (\(name.utf8.count) > \(maximumNameLength) bytes): \(key)")
        }
        return name
    }

    /// The key a file name stands for, or nil for files that are not entries (temporaries, strays).
    static func key(fromFileName name: String) -> String? {
        guard name.hasSuffix(entrySuffix), !name.hasPrefix(".") else { return nil }
        let encoded = Array(name.utf8.dropLast(entrySuffix.utf8.count))
        guard !encoded.isEmpty else { return nil }
        var bytes: [UInt8] = []
        var index = 0
        while index < encoded.count {
            let byte = encoded[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < encoded.count,
                      let high = hexValue(encoded[index + 1]), let low = hexValue(encoded[index + 2])
                else { return nil }
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(byte)
                index += 1
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    private struct Envelope: Codable {
        var key: String
        var value: String
        var expiresAt: Double?
        var modRevision: Int64

        // Written by hand so a key without expiry shows `"expiresAt":null` rather than nothing.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(key, forKey: .key)
            try container.encode(value, forKey: .value)
            try container.encode(expiresAt, forKey: .expiresAt)
            try container.encode(modRevision, forKey: .modRevision)
        }
    }

    private struct LogRecord: Codable {
        var revision: Int64
        var type: String
        var key: String
        var value: String?
        var expiresAt: Double?
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        // Sorted keys and unescaped slashes keep files readable and byte-stable for a given entry.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    static func encodeEntry(_ entry: RegistryEntry) -> [UInt8] {
        let envelope = Envelope(key: entry.key, value: Data(entry.value).base64EncodedString(),
                                expiresAt: entry.expiresAt, modRevision: entry.modRevision)
        // Encoding strings, integers and finite doubles cannot fail.
        var bytes = Array((try? encoder().encode(envelope)) ?? Data())
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// What is wrong with a file JSONDecoder refused, in a few words (its own description is a
    /// debugging dump).
    static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let key, _)?: "no \"\(key.stringValue)\" field"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
            "field \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        case .dataCorrupted?: "not JSON"
        default: "unreadable"
        }
    }

    /// Parses an entry file; `path` and `expectedKey` only make errors precise.
    static func decodeEntry(_ bytes: [UInt8], path: String, expectedKey: String) throws(RegistryError) -> RegistryEntry {
        let envelope: Envelope
        do {
            envelope = try JSONDecoder().decode(Envelope.self, from: Data(bytes))
        } catch {
            throw .corrupt("\(path): not a registry entry (\(describe(error)))")
        }
        guard let value = Data(base64Encoded: envelope.value) else {
            throw .corrupt("\(path): value is not base64")
        }
        // The name is what lookups use, so a file whose content names another key is not trusted.
        guard envelope.key == expectedKey else {
            throw .corrupt("\(path): holds key \(envelope.key), expected \(expectedKey)")
        }
        return RegistryEntry(key: envelope.key, value: Array(value), modRevision: envelope.modRevision,
                             expiresAt: envelope.expiresAt)
    }

    static func encodeEvent(_ event: RegistryEvent) -> [UInt8] {
        let record = switch event {
        case .put(let entry):
            LogRecord(revision: entry.modRevision, type: "put", key: entry.key,
                      value: Data(entry.value).base64EncodedString(), expiresAt: entry.expiresAt)
        case .delete(let key, let revision):
            LogRecord(revision: revision, type: "delete", key: key)
        }
        var bytes = Array((try? encoder().encode(record)) ?? Data())
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Parses one log line (without its newline); `location` names the file and offset in errors.
    static func decodeEvent(_ line: ArraySlice<UInt8>, location: String) throws(RegistryError) -> RegistryEvent {
        let record: LogRecord
        do {
            record = try JSONDecoder().decode(LogRecord.self, from: Data(line))
        } catch {
            throw .corrupt("\(location): not an event (\(describe(error)))")
        }
        switch record.type {
        case "put":
            guard let text = record.value, let value = Data(base64Encoded: text) else {
                throw .corrupt("\(location): put without a base64 value")
            }
            return .put(RegistryEntry(key: record.key, value: Array(value), modRevision: record.revision,
                                      expiresAt: record.expiresAt))
        case "delete":
            return .delete(key: record.key, revision: record.revision)
        default:
            throw .corrupt("\(location): unknown event type \(record.type)")
        }
    }
}
