import CWeftLinux
import Glibc

/// Entering another network namespace for a moment, on the calling thread only: a socket keeps
/// the namespace it was created in, so tools (and tests) can open a capture or a socket inside
/// a namespace and use it from anywhere.
public enum NetworkNamespace {
    /// The path of a namespace made by `ip netns add NAME`.
    public static func path(named name: String) -> String { "/run/netns/" + name }

    /// The calling thread's network namespace as the kernel numbers it (the inode of
    /// /proc/thread-self/ns/net, which `ip netns identify` and `lsns` show too); nil if /proc
    /// is not mounted.
    public static func currentIdentifier() -> UInt64? {
        var info = stat()
        guard stat("/proc/thread-self/ns/net", &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }

    /// Runs `body` with the calling thread in the network namespace at `path`, then returns the
    /// thread to the namespace it was in, also when `body` throws. Needs CAP_SYS_ADMIN.
    public static func withEntered<T>(path: String, _ body: () throws -> T) throws -> T {
        let target = try Syscall.open(path, O_RDONLY | O_CLOEXEC)
        defer { try? Syscall.close(target) }
        let original = try Syscall.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        defer { try? Syscall.close(original) }
        guard CWeftLinux_setns_net(target) == 0 else { throw SystemError(errno: errno, operation: "enter network namespace \(path)") }
        defer {
            // Failing to return would leave this thread in the wrong namespace for whatever it runs next.
            if CWeftLinux_setns_net(original) != 0 { fatalError("cannot return to the original network namespace: errno \(errno)") }
        }
        return try body()
    }
}
