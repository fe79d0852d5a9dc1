import Glibc

/// CLOCK_MONOTONIC, the one clock Weft measures time with: deadlines, rates, timeouts and
/// benchmark timestamps. clock_gettime goes through the vDSO (no system call) and nothing
/// here allocates, so the data path may read it per packet.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point (boot).
    @inlinable
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// Seconds since the same fixed point, for deadlines and rates.
    @inlinable
    public static func seconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
