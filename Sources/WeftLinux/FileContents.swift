import Glibc

/// Small whole-file reads and writes for /proc and /sys, without Foundation.
enum FileContents {
    static func read(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> String {
        let fd = try Syscall.open(path, O_RDONLY | O_CLOEXEC)
        defer { _ = Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let result = chunk.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try Syscall.read(fd, raw, path) }
            }
            let count = try result.get()
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ path: String, _ text: String) throws(SystemError) {
        let fd = try Syscall.open(path, O_WRONLY | O_CLOEXEC)
        defer { _ = Glibc.close(fd) }
        let bytes = Array(text.utf8)
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) in try Syscall.write(fd, raw, path) }
        }
        let count = try result.get()
        if count != bytes.count {
            throw SystemError(errno: EIO, operation: "write \(path) (short write: \(count) of \(bytes.count) bytes)")
        }
    }
}
