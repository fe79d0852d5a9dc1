// fuzz-sources: Sources/WeftRegistry/SubnetRegistry.swift Sources/WeftRegistry/FileRegistryFormat.swift
// The file registry's own files, as a damaged disk or a hand edit leaves them: an entry file
// and an event-log line (the first byte picks which). Invariants: anything is either refused
// as corrupt, with a message, or read as what it says; what Weft writes reads back unchanged;
// a key's file name decodes to no other key.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let key = "/coreos.com/network/subnets/10.244.1.0-24"
    if data[0] % 2 == 0 {
        do {
            let entry = try FileRegistryFormat.decodeEntry(bytes, path: "entry", expectedKey: key)
            guard entry.key == key else { violated("an entry file for another key was accepted") }
            let again = try FileRegistryFormat.decodeEntry(FileRegistryFormat.encodeEntry(entry), path: "again", expectedKey: key)
            guard again == entry else { violated("encodeEntry does not round-trip: \(entry) → \(again)") }
        } catch RegistryError.corrupt(let reason) {
            guard !reason.isEmpty else { violated("a corrupt entry without a reason") }
        } catch {
            violated("decodeEntry threw \(error), not .corrupt")
        }
    } else {
        do {
            let event = try FileRegistryFormat.decodeEvent(bytes[...], location: "log")
            let again = try FileRegistryFormat.decodeEvent(FileRegistryFormat.encodeEvent(event).dropLast(), location: "again")
            guard again == event else { violated("encodeEvent does not round-trip: \(event) → \(again)") }
        } catch RegistryError.corrupt(let reason) {
            guard !reason.isEmpty else { violated("a corrupt event without a reason") }
        } catch {
            violated("decodeEvent threw \(error), not .corrupt")
        }
        // Any text as a key: its file name is one path component, and never the name of a
        // different key.
        let text = String(decoding: bytes, as: UTF8.self)
        if let name = try? FileRegistryFormat.fileName(forKey: text) {
            guard !name.contains("/"), name != ".json", !name.hasPrefix(".") else { violated("file name \(name) for key \(text)") }
            if let other = try? FileRegistryFormat.fileName(forKey: text + "x"), other == name { violated("two keys, one file name: \(name)") }
        }
    }
    return 0
}
