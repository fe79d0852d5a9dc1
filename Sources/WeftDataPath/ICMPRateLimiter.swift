import Glibc
import WeftLinux

/// A token bucket for generated ICMP errors (RFC 1812 §4.3.2.8): a flood of expired or
/// unroutable packets must not turn the forwarder into an ICMP amplifier. One per thread, so it
/// needs no synchronisation; it reads the clock only when an ICMP error is due.
struct ICMPRateLimiter {
    private let perSecond: Double
    private let burst: Double
    private var tokens: Double
    private var last: Double

    init(perSecond: Double = 200, burst: Double = 50) {
        self.perSecond = perSecond
        self.burst = burst
        self.tokens = burst
        self.last = MonotonicClock.seconds()
    }

    mutating func allow() -> Bool {
        let now = MonotonicClock.seconds()
        tokens = min(burst, tokens + (now - last) * perSecond)
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
