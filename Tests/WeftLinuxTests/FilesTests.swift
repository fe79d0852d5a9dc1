import Foundation
import Glibc
import Testing
import WeftLinux

@Suite struct FilesTests {
    private func scratch() throws -> String {
        var template = Array("/tmp/weft-files-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp") }
        return String(cString: made)
    }

    @Test func replaceWritesTheWholeFileAndLeavesNoTemporary() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/entry.json"
        #expect(try Files.read(path) == nil, "missing is nil, not an error")
        try Files.replace(path, with: Array("first".utf8))
        try Files.replace(path, with: Array("second, longer".utf8), mode: 0o600)
        #expect(try Files.read(path) == Array("second, longer".utf8))
        #expect(try Files.names(in: directory) == ["entry.json"])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test func aFailedReplaceNamesTheStepAndKeepsTheOldFile() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/target"
        try Files.replace(path, with: [1, 2, 3])
        try FileManager.default.createDirectory(atPath: directory + "/busy", withIntermediateDirectories: false)
        try Files.replace(directory + "/busy/file", with: [9])
        // Renaming a file over a non-empty directory fails: the directory and the old file stay.
        let error = #expect(throws: SystemError.self) { try Files.replace(directory + "/busy", with: [7]) }
        #expect(error?.operation.hasPrefix("rename ") == true)
        #expect(try Files.read(path) == [1, 2, 3])
        #expect(try Files.names(in: directory).sorted() == ["busy", "target"], "no temporary left")
    }

    @Test func makeDirectoriesCreatesParentsAndRefusesAFileInTheWay() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Files.makeDirectories(directory + "/a/b/c")
        try Files.makeDirectories(directory + "/a/b/c")
        #expect(try Files.names(in: directory + "/a/b") == ["c"])
        try Files.replace(directory + "/f", with: [])
        let error = #expect(throws: SystemError.self) { try Files.makeDirectories(directory + "/f/g") }
        #expect(error == SystemError(errno: ENOTDIR, operation: "mkdir \(directory)/f"))
    }

    @Test func readFromAnOffsetAndPathParts() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Files.replace(directory + "/log", with: Array("0123456789".utf8))
        let fd = try Files.open(directory + "/log", O_RDONLY | O_CLOEXEC)
        defer { Files.close(fd) }
        #expect(try Files.read(fd, from: 4, path: "log") == Array("456789".utf8))
        #expect(try Files.read(fd, from: 4, path: "log", limit: 2) == Array("45".utf8))
        #expect(try Files.status(fd, path: "log").size == 10)
        #expect(Files.directoryName(of: "/run/flannel/subnet.env") == "/run/flannel")
        #expect(Files.directoryName(of: "subnet.env") == ".")
        #expect(Files.directoryName(of: "/subnet.env") == "/")
        #expect(Files.baseName(of: "/run/flannel/subnet.env") == "subnet.env")
    }
}
