import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The few POSIX calls the file registry makes, each turning failures into `RegistryError`
/// that name the path and `strerror`, so a misconfigured directory is obvious from one line.
enum FileRegistryIO {
    static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    static func unavailable(_ path: String, _ code: Int32 = errno) -> RegistryError {
        .unavailable("\(path): \(errorText(code))")
    }

    /// `mkdir -p`: creates `path` and missing parents; an existing directory is fine.
    static func makeDirectory(_ path: String) throws(RegistryError) {
        if mkdir(path, 0o755) == 0 { return }
        let code = errno
        switch code {
        case EEXIST:
            var info = stat()
            guard stat(path, &info) == 0 else { throw unavailable(path) }
            guard info.st_mode & S_IFMT == S_IFDIR else { throw unavailable(path, ENOTDIR) }
        case ENOENT:
            let parent = (path as NSString).deletingLastPathComponent
            guard !parent.isEmpty, parent != path else { throw unavailable(path, code) }
            try makeDirectory(parent)
            if mkdir(path, 0o755) != 0 && errno != EEXIST { throw unavailable(path) }
        default:
            throw unavailable(path, code)
        }
    }

    /// Whole file, or nil if it does not exist.
    static func readFile(_ path: String) throws(RegistryError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw unavailable(path)
        }
        defer { close(fd) }
        return try readToEnd(fd, from: 0, path: path)
    }

    /// Bytes of `fd` from `offset` to the end, read with `pread` so the file offset is untouched.
    static func readToEnd(_ fd: Int32, from offset: Int64, path: String) throws(RegistryError) -> [UInt8] {
        var result: [UInt8] = []
        var position = offset
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(position)) }
            if count < 0 {
                if errno == EINTR { continue }
                throw unavailable(path)
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            position += Int64(count)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(RegistryError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw unavailable(path)
            }
            written += count
        }
    }

    /// Replaces `path` with `bytes` so readers see the old or the new file, never a partial one:
    /// a temporary file in the same directory, fsync, rename, then fsync of the directory so the
    /// rename itself survives a crash.
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(RegistryError) {
        let temporary = "\(directory)/.tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw unavailable(temporary) }
        do throws(RegistryError) {
            defer { close(fd) }
            try writeAll(fd, bytes, path: temporary)
            guard fsync(fd) == 0 else { throw unavailable(temporary) }
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw unavailable(path, code)
        }
        try syncDirectory(directory)
    }

    static func syncDirectory(_ directory: String) throws(RegistryError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw unavailable(directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw unavailable(directory) }
    }

    /// Removes `path`; false if it was already gone.
    @discardableResult
    static func remove(_ path: String) throws(RegistryError) -> Bool {
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw unavailable(path)
    }

    /// Names in `directory` (without "." and ".."); empty if the directory does not exist.
    static func names(in directory: String) throws(RegistryError) -> [String] {
        guard let stream = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw unavailable(directory)
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
