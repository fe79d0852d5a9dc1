import Glibc

/// Files and directories for the registries and subnet.env: each call retries EINTR and throws a
/// `SystemError` that names the step and the path ("rename /run/flannel/subnet.env: …").
///
/// Writes that readers must never see half done go through `replace(_:with:mode:)`; the file
/// registry's lock and append-only log use the descriptor calls.
public enum Files {
    // MARK: Whole files

    /// The whole file, or nil when it does not exist. Reads at most `limit` bytes.
    public static func read(_ path: String, limit: Int = 64 << 20) throws(SystemError) -> [UInt8]? {
        guard let fd = try openIfPresent(path, O_RDONLY | O_CLOEXEC) else { return nil }
        defer { close(fd) }
        return try read(fd, from: 0, path: path, limit: limit)
    }

    /// Replaces `path` with `bytes` so readers see the old file or the new one, never a partial
    /// one: a temporary file in the same directory (rename is atomic only within a file system),
    /// written, set to `mode` whatever the umask, fsynced and renamed over `path`; then the
    /// directory is fsynced so the rename survives a crash. The temporary is removed on failure.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t = 0o644) throws(SystemError) {
        let directory = directoryName(of: path)
        let temporary = "\(directory)/.tmp-\(baseName(of: path))-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let fd = try Syscall.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        do throws(SystemError) {
            defer { close(fd) }
            try writeAll(fd, bytes, path: temporary)
            _ = try Syscall.retrying("chmod \(temporary)") { fchmod(fd, mode) }
            try sync(fd, path: temporary)
            _ = try Syscall.retrying("rename \(temporary) to \(path)") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        try syncDirectory(directory)
    }

    /// True when `name` is a temporary left by `replace` (by a writer that crashed mid-way).
    public static func isTemporary(_ name: String) -> Bool {
        name.hasPrefix(".tmp-")
    }

    /// Removes `path`; false when it was already gone.
    @discardableResult
    public static func remove(_ path: String) throws(SystemError) -> Bool {
        if unlink(path) == 0 { return true }
        let code = errno
        if code == ENOENT { return false }
        throw SystemError(errno: code, operation: "remove \(path)")
    }

    // MARK: Directories

    /// `mkdir -p`: creates `path` and its missing parents with `mode`; an existing directory is
    /// fine, anything else in the way is ENOTDIR.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw SystemError(errno: ENOTDIR, operation: "mkdir \(path)") }
            return
        }
        let parent = directoryName(of: path)
        if parent != path { try makeDirectories(parent, mode: mode) }
        // Another writer may create it between the stat and here; that is fine.
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw SystemError(errno: errno, operation: "mkdir \(path)")
        }
    }

    /// Names in `directory` without "." and ".."; empty when the directory does not exist.
    public static func names(in directory: String) throws(SystemError) -> [String] {
        guard let stream = opendir(directory) else {
            let code = errno
            if code == ENOENT { return [] }
            throw SystemError(errno: code, operation: "list \(directory)")
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

    /// fsync of a directory: makes the creation, rename or removal of its entries durable.
    public static func syncDirectory(_ directory: String) throws(SystemError) {
        let fd = try Syscall.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        try sync(fd, path: directory)
    }

    /// Throws unless the calling process may write in `path` (access(2) W_OK).
    public static func checkWritable(_ path: String) throws(SystemError) {
        _ = try Syscall.retrying("write to \(path)") { access(path, W_OK) }
    }

    // MARK: Descriptors

    /// open(2); nil when the file does not exist (ENOENT), so "missing" is not an error.
    public static func openIfPresent(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> Int32? {
        do {
            return try Syscall.open(path, flags, mode)
        } catch where error.errno == ENOENT {
            return nil
        }
    }

    /// open(2).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> Int32 {
        try Syscall.open(path, flags, mode)
    }

    /// close(2); errors are ignored: the descriptor is released either way.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Bytes of `fd` from `offset` to the end (at most `limit`), read with pread(2) so the file
    /// offset is left alone.
    public static func read(_ fd: Int32, from offset: Int64, path: String, limit: Int = 64 << 20) throws(SystemError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count < limit {
            let position = offset + Int64(result.count)
            let outcome = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) in
                    try Syscall.retrying("read \(path)") { pread(fd, buffer.baseAddress, buffer.count, off_t(position)) }
                }
            }
            let count = try outcome.get()
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<min(count, limit - result.count)])
        }
        return result
    }

    /// All of `bytes` at the descriptor's offset (or the end, with O_APPEND), however many
    /// write(2) calls it takes.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(SystemError) {
        var written = 0
        while written < bytes.count {
            let outcome = bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemError) in
                    try Syscall.retrying("write \(path)") { Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written) }
                }
            }
            let count = try outcome.get()
            written += count
        }
    }

    /// fsync(2).
    public static func sync(_ fd: Int32, path: String) throws(SystemError) {
        _ = try Syscall.retrying("fsync \(path)") { fsync(fd) }
    }

    /// The size of the file behind `fd`, and its device and inode (which change when the file is
    /// replaced by a rename).
    public static func status(_ fd: Int32, path: String) throws(SystemError) -> (size: Int64, device: UInt64, inode: UInt64) {
        var info = stat()
        _ = try Syscall.retrying("stat \(path)") { fstat(fd, &info) }
        return (Int64(info.st_size), UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// ftruncate(2).
    public static func truncate(_ fd: Int32, to length: Int64, path: String) throws(SystemError) {
        _ = try Syscall.retrying("truncate \(path)") { ftruncate(fd, off_t(length)) }
    }

    /// flock(2), waiting for the lock; released when the last descriptor of the open file closes.
    public static func lock(_ fd: Int32, exclusive: Bool, path: String) throws(SystemError) {
        _ = try Syscall.retrying("lock \(path)") { flock(fd, exclusive ? LOCK_EX : LOCK_SH) }
    }

    // MARK: Paths

    /// The directory part of `path`, as dirname(1): "/run/flannel" for "/run/flannel/subnet.env",
    /// "." for "subnet.env", "/" for "/subnet.env".
    public static func directoryName(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let directory = trimmed[..<slash]
        return directory.isEmpty ? "/" : String(directory)
    }

    /// The last component of `path`.
    public static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
