import SluiceCore
import Testing

@Suite struct MonotonicInstantTests {
    @Test func durationsBecomeWholeNanosecondsAndSaturate() {
        #expect(MonotonicInstant.nanoseconds(of: .zero) == 0)
        #expect(MonotonicInstant.nanoseconds(of: .seconds(30)) == 30_000_000_000)
        #expect(MonotonicInstant.nanoseconds(of: .milliseconds(-250)) == -250_000_000)
        #expect(MonotonicInstant.nanoseconds(of: .nanoseconds(7) + .seconds(2)) == 2_000_000_007)
        // Below a nanosecond: truncated.
        #expect(MonotonicInstant.nanoseconds(of: Duration(secondsComponent: 1, attosecondsComponent: 999_999_999)) == 1_000_000_000)
        #expect(MonotonicInstant.nanoseconds(of: .seconds(Int64.max)) == .max)
        #expect(MonotonicInstant.nanoseconds(of: .seconds(Int64.min)) == .min)
    }

    @Test func arithmeticAndOrder() {
        let start = MonotonicInstant(nanoseconds: 1_000)
        #expect(start + .microseconds(2) == MonotonicInstant(nanoseconds: 3_000))
        #expect(start - .nanoseconds(400) == MonotonicInstant(nanoseconds: 600))
        #expect((start + .seconds(1)) - start == .seconds(1))
        #expect(start - (start + .seconds(1)) == .seconds(-1))
        #expect(start < start + .nanoseconds(1))
        #expect(!(start < start))
        // An overflowing deadline saturates rather than wrapping into the past.
        #expect(MonotonicInstant(nanoseconds: .max - 5).advanced(byNanoseconds: 10) == MonotonicInstant(nanoseconds: .max))
        #expect(MonotonicInstant(nanoseconds: .min + 5).advanced(byNanoseconds: -10) == MonotonicInstant(nanoseconds: .min))
    }

    /// A deadline converted for `Task.sleep(until:)` is as far ahead on ContinuousClock as it
    /// was on this one. (The clocks are read one after the other, so a loaded machine may put
    /// time between the reads: the bound is loose.)
    @Test func convertsToContinuousClock() {
        let before = MonotonicInstant.now
        let after = MonotonicInstant.now
        #expect(before <= after)
        let deadline = MonotonicInstant.now + .seconds(10)
        let back = deadline.continuousInstant
        let expected = ContinuousClock.now + .seconds(10)
        #expect(abs(MonotonicInstant.nanoseconds(of: expected - back)) < 1_000_000_000)
    }
}
