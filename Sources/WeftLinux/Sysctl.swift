import Glibc

/// Kernel parameters under /proc/sys, set by path (per-network-namespace ones apply to the
/// caller's namespace).
public enum Sysctl {
    /// Writes `value` to /proc/sys/`key`, with `key` in slash form
    /// ("net/ipv4/conf/flannel0/accept_local"; slash form because interface names may contain
    /// dots). Rejects empty, absolute and ".." components with EINVAL.
    public static func set(_ key: String, to value: String) throws(SystemError) {
        let components = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw SystemError(errno: EINVAL, operation: "sysctl \(key)")
        }
        do {
            try FileContents.write("/proc/sys/\(key)", value + "\n")
        } catch {
            throw SystemError(errno: error.errno, operation: "sysctl \(key)=\(value)")
        }
    }

    /// Reads /proc/sys/`key`, without the trailing newline.
    public static func get(_ key: String) throws(SystemError) -> String {
        var text = try FileContents.read("/proc/sys/\(key)")
        while text.last == "\n" { text.removeLast() }
        return text
    }
}
