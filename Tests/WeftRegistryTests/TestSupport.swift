import Foundation
import Glibc
import WeftRegistry

/// A fresh directory for one test, removed afterwards whatever the outcome.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/weft-registry-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw RegistryError.unavailable("mkdtemp failed") }
    let path = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
