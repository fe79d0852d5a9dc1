import Testing
@testable import WeftRegistry

/// Errors about damaged registry files name the file and what is wrong in words, never
/// Swift's DecodingError dump.
@Suite struct FileRegistryFormatTests {
    @Test("a damaged event-log line or entry file is described in words")
    func damagedFilesAreDescribed() {
        do {
            _ = try FileRegistryFormat.decodeEvent(ArraySlice(Array("{\"revision\": ".utf8)), location: "events.log:3")
            Issue.record("garbage decoded as an event")
        } catch {
            #expect("\(error)" == "registry data corrupt: events.log:3: not an event (not JSON)")
        }
        do {
            _ = try FileRegistryFormat.decodeEntry(Array("{\"key\": 5}".utf8), path: "subnets/x", expectedKey: "/k")
            Issue.record("garbage decoded as an entry")
        } catch {
            let text = "\(error)"
            #expect(text.hasPrefix("registry data corrupt: subnets/x: not a registry entry ("), "\(text)")
            #expect(!text.contains("DecodingError") && !text.contains("Debug description"), "\(text)")
        }
    }
}
