#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on the clock `ContinuousClock` reads (monotonic, counting through suspension:
/// `CLOCK_BOOTTIME` on Linux), as nanoseconds: what per-event state keeps (an entry's deadline,
/// when its event's budget was taken) instead of a `ContinuousClock.Instant`.
///
/// `ContinuousClock.Instant` is a resilient type of the standard library: a struct holding one,
/// or an optional one, has its layout worked out at run time, so every copy, destruction and
/// `nil` test of it goes through the runtime's value witnesses and metadata lookups. Under
/// callgrind that was ~3,000 instructions per event in the Zerobus sink (its entries are copied
/// several times on their way). This is one `Int64`, copied as one.
@frozen
public struct MonotonicInstant: Comparable, Hashable, Sendable {
    public var nanoseconds: Int64

    @inlinable
    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static var now: MonotonicInstant {
        var time = timespec()
        #if canImport(Darwin)
        clock_gettime(CLOCK_MONOTONIC_RAW, &time)
        #else
        clock_gettime(CLOCK_BOOTTIME, &time)
        #endif
        return MonotonicInstant(nanoseconds: Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec))
    }

    /// The same moment as a `ContinuousClock.Instant` (for `Task.sleep(until:)`).
    public var continuousInstant: ContinuousClock.Instant {
        ContinuousClock.now.advanced(by: self - .now)
    }

    /// Whole nanoseconds of `duration` (saturating), for adding in a hot loop without converting
    /// the duration each time.
    public static func nanoseconds(of duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow2 ? (seconds < 0 ? .min : .max) : sum
    }

    @inlinable
    public func advanced(byNanoseconds nanoseconds: Int64) -> MonotonicInstant {
        let (sum, overflow) = self.nanoseconds.addingReportingOverflow(nanoseconds)
        return MonotonicInstant(nanoseconds: overflow ? (nanoseconds < 0 ? .min : .max) : sum)
    }

    public static func + (lhs: MonotonicInstant, rhs: Duration) -> MonotonicInstant {
        lhs.advanced(byNanoseconds: nanoseconds(of: rhs))
    }

    public static func - (lhs: MonotonicInstant, rhs: Duration) -> MonotonicInstant {
        lhs.advanced(byNanoseconds: nanoseconds(of: .zero - rhs))
    }

    /// The time from `rhs` to `lhs`.
    @inlinable
    public static func - (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Duration {
        .nanoseconds(lhs.nanoseconds &- rhs.nanoseconds)
    }

    @inlinable
    public static func < (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }
}
