import WeftLinux

/// The file registry's I/O: WeftLinux's `Files`, with every failure turned into
/// `RegistryError.unavailable` naming the step, the path and strerror, so a misconfigured
/// directory is obvious from one line.
enum FileRegistryIO {
    /// Runs `body`, mapping a failed system call to `.unavailable`.
    static func run<T>(_ body: () throws(SystemError) -> T) throws(RegistryError) -> T {
        do {
            return try body()
        } catch {
            throw unavailable(error)
        }
    }

    /// A failed system call as the registry reports it: the step, the path and strerror.
    static func unavailable(_ error: SystemError) -> RegistryError {
        .unavailable("\(error.operation): \(error.message)")
    }

    static func makeDirectory(_ path: String) throws(RegistryError) {
        try run { () throws(SystemError) in try Files.makeDirectories(path) }
    }

    /// Whole file, or nil if it does not exist.
    static func readFile(_ path: String) throws(RegistryError) -> [UInt8]? {
        try run { () throws(SystemError) in try Files.read(path) }
    }

    /// Replaces `path` so readers see the old or the new file, never a partial one.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(RegistryError) {
        try run { () throws(SystemError) in try Files.replace(path, with: bytes) }
    }

    @discardableResult
    static func remove(_ path: String) throws(RegistryError) -> Bool {
        try run { () throws(SystemError) in try Files.remove(path) }
    }

    static func syncDirectory(_ directory: String) throws(RegistryError) {
        try run { () throws(SystemError) in try Files.syncDirectory(directory) }
    }

    /// Names in `directory`; empty if the directory does not exist.
    static func names(in directory: String) throws(RegistryError) -> [String] {
        try run { () throws(SystemError) in try Files.names(in: directory) }
    }
}
