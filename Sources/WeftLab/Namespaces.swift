import Foundation
import Glibc
import WeftLinux

/// Named network namespaces (`ip netns`, /run/netns) and the processes inside them.
public enum Namespaces {
    public static let directory = "/run/netns"

    /// Every named namespace, sorted.
    public static func all() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// The namespaces of the lab with this prefix: `P-*`.
    public static func lab(_ prefix: String) -> [String] {
        all().filter { $0.hasPrefix(prefix + "-") }
    }

    public static func exists(_ name: String) -> Bool {
        access("\(directory)/\(name)", F_OK) == 0
    }

    /// Processes whose network namespace is one of `names` (what `ip netns pids` does: the
    /// namespace file and /proc/PID/ns/net are the same nsfs inode).
    public static func processes(in names: [String]) -> [pid_t] {
        var wanted: Set<[UInt64]> = []
        for name in names {
            if let identity = identity(of: "\(directory)/\(name)") { wanted.insert(identity) }
        }
        guard !wanted.isEmpty else { return [] }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), pid > 0, let identity = identity(of: "/proc/\(entry)/ns/net") else { return nil }
            return wanted.contains(identity) ? pid : nil
        }.sorted()
    }

    private static func identity(of path: String) -> [UInt64]? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return [UInt64(status.st_dev), UInt64(status.st_ino)]
    }

    /// Ends every process in `names` (SIGTERM, then SIGKILL after `grace` seconds) and deletes
    /// the namespaces. Bounded; never throws; ignores signals (it is what a signal leads to).
    public static func remove(_ names: [String], grace: Double = 2) {
        guard !names.isEmpty else { return }
        var pids = processes(in: names)
        if !pids.isEmpty {
            for pid in pids { kill(pid, SIGTERM) }
            let deadline = MonotonicClock.seconds() + grace
            while !pids.isEmpty && MonotonicClock.seconds() < deadline {
                usleep(20_000)
                reap(pids)
                pids = processes(in: names)
            }
            for pid in pids { kill(pid, SIGKILL) }
            let killDeadline = MonotonicClock.seconds() + 2
            while !pids.isEmpty && MonotonicClock.seconds() < killDeadline {
                usleep(20_000)
                reap(pids)
                pids = processes(in: names)
            }
        }
        for name in names {
            _ = try? Subprocess.run(["ip", "netns", "delete", name], timeout: 10, interruptible: false)
        }
    }

    /// Collects those of `pids` that are our own children and ended (forwarders and bench
    /// servers killed with their namespace), so none stays a zombie. Others are left alone.
    private static func reap(_ pids: [pid_t]) {
        var status: Int32 = 0
        for pid in pids { _ = waitpid(pid, &status, WNOHANG) }
    }
}

/// What /proc tells about a process.
public enum ProcessStatus {
    /// utime + stime of every thread, in seconds (/proc/PID/stat fields 14 and 15).
    public static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return cpuSeconds(statLine: text, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))))
    }

    /// Parses a /proc/PID/stat line; the command name (field 2) may hold spaces and
    /// parentheses, so fields are counted after its closing parenthesis.
    public static func cpuSeconds(statLine: String, ticksPerSecond: Double) -> Double? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        let fields = statLine[statLine.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state): utime is field 14, stime field 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), ticksPerSecond > 0 else { return nil }
        return (user + system) / ticksPerSecond
    }

    /// The command line, arguments joined by spaces.
    public static func commandLine(_ pid: pid_t) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "?" }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }
}
