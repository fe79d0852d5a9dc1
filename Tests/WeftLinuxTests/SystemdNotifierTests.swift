import CWeftLinux
import Glibc
import Testing
@testable import WeftLinux

/// `SystemdNotifier` against an AF_UNIX datagram socket of the test's own, as systemd listens.
@Suite struct SystemdNotifierTests {
    /// Binds a datagram socket at `path` (or the abstract name after "@"), returns its fd.
    private func listen(_ name: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        try #require(result == 0, "bind \(name): errno \(errno)")
        return fd
    }

    private func receive(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    }

    @Test func readyAndStoppingReachASocketAtAPath() throws {
        let path = "/tmp/weft-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try listen(path)
        defer { close(fd); unlink(path) }
        let notifier = try #require(try SystemdNotifier(notifySocket: path))
        try notifier.notify("READY=1\nSTATUS=forwarding")
        try notifier.notify("STOPPING=1")
        #expect(receive(fd) == "READY=1\nSTATUS=forwarding")
        #expect(receive(fd) == "STOPPING=1")
    }

    @Test func anAbstractNameWorksToo() throws {
        let name = "@weft-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try listen(name)
        defer { close(fd) }
        try #require(try SystemdNotifier(notifySocket: name)).notify("READY=1")
        #expect(receive(fd) == "READY=1")
    }

    @Test func withoutNotifySocketThereIsNothingToTellAndABadOneIsRefused() throws {
        #expect(try SystemdNotifier(notifySocket: nil) == nil)
        #expect(try SystemdNotifier(notifySocket: "") == nil)
        #expect(throws: SystemError.self) { _ = try SystemdNotifier(notifySocket: "relative/path") }
        #expect(throws: SystemError.self) { _ = try SystemdNotifier(notifySocket: "/" + String(repeating: "x", count: 200)) }
    }

    @Test func aSocketNobodyListensOnIsAnError() throws {
        let notifier = try #require(try SystemdNotifier(notifySocket: "/tmp/weft-notify-nobody-\(getpid())"))
        #expect(throws: SystemError.self) { try notifier.notify("READY=1") }
    }
}
