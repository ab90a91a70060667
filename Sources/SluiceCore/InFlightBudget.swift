import NIOConcurrencyHelpers
import Synchronization

/// A sink's in-flight budget: the bytes and events handed to it whose fate is not yet known.
///
/// A sink takes budget before it accepts an event and gives it back when the event is
/// delivered or failed. When the budget is spent, `acquire` waits — so the request that
/// wants to send stops reading its body, and the client is slowed down instead of Sluice
/// buffering. Waiters are served first come, first served; a wait ends at its deadline.
/// An amount larger than the whole budget is let through when nothing else is in flight,
/// so one oversized event cannot wedge a sink.
///
/// Watermarks: once someone has had to wait, waiters are let in only after what is in flight
/// has fallen to half the budget (the low watermark), so reading resumes in bursts instead of
/// flapping on every delivered event.
public final class InFlightBudget: Sendable {
    /// The byte limit now (an operator may change it while the sink runs: `setLimits`).
    public var maxBytes: Int { self.queue.withCapacity { $0.maxBytes } }
    /// The event limit now.
    public var maxEvents: Int { self.queue.withCapacity { $0.maxEvents } }

    struct Amounts: FIFOCapacity {
        var maxBytes: Int
        var maxEvents: Int
        var bytes = 0
        var events = 0

        mutating func take(_ amount: (bytes: Int, events: Int)) -> Bool {
            guard (self.bytes == 0 && self.events == 0)
                || (self.bytes + amount.bytes <= self.maxBytes && self.events + amount.events <= self.maxEvents)
            else { return false }
            self.bytes += amount.bytes
            self.events += amount.events
            return true
        }

        mutating func give(_ amount: (bytes: Int, events: Int)) {
            self.bytes -= amount.bytes
            self.events -= amount.events
            assert(self.bytes >= 0 && self.events >= 0, "released more than was acquired")
        }

        /// The low watermark: half the budget.
        var admitsWaiters: Bool { self.bytes <= self.maxBytes / 2 && self.events <= self.maxEvents / 2 }
    }

    private let queue: FIFOWaitQueue<Amounts>
    /// Nanoseconds, or -1 for none: read once per batch a request hands over, so no lock.
    private let waitOverride = Synchronization.Atomic<Int64>(-1)

    public init(maxBytes: Int, maxEvents: Int) {
        precondition(maxBytes > 0 && maxEvents > 0, "an in-flight budget must allow something")
        self.queue = FIFOWaitQueue(Amounts(maxBytes: maxBytes, maxEvents: maxEvents))
    }

    /// Bytes and events currently in flight.
    public var inFlight: (bytes: Int, events: Int) {
        self.queue.withCapacity { ($0.bytes, $0.events) }
    }

    /// Requests waiting for budget.
    public var waiting: Int {
        self.queue.waiting
    }

    /// Takes the amount if it fits now and nobody is waiting ahead.
    public func tryAcquire(bytes: Int, events: Int = 1) -> Bool {
        self.queue.tryTake((bytes, events))
    }

    /// Takes the amount, waiting for room until `deadline`. Returns false if the deadline passed
    /// (or the task was cancelled) first; nothing is taken then.
    public func acquire(bytes: Int, events: Int = 1, deadline: ContinuousClock.Instant) async -> Bool {
        await self.queue.take((bytes, events), deadline: deadline)
    }

    /// Gives back what an event (or batch) took, and lets waiters in that now fit.
    public func release(bytes: Int, events: Int = 1) {
        self.queue.give((bytes, events))
    }

    /// Changes the limits while the sink runs. What is in flight stays; a lower limit makes new
    /// events wait until enough has settled, a higher one lets waiters in at once.
    public func setLimits(maxBytes: Int, maxEvents: Int) {
        precondition(maxBytes > 0 && maxEvents > 0, "an in-flight budget must allow something")
        self.queue.withCapacity {
            $0.maxBytes = maxBytes
            $0.maxEvents = maxEvents
        }
        self.queue.give((0, 0))
    }

    /// How long a request waits for room in this budget, set by an operator for every route
    /// into the sink (`PATCH /sinks/{name}`); nil: each route's own `max_wait`.
    public var maxWaitOverride: Duration? {
        get {
            let nanoseconds = self.waitOverride.load(ordering: .relaxed)
            return nanoseconds < 0 ? nil : .nanoseconds(nanoseconds)
        }
        set {
            let nanoseconds = newValue.map { $0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 } ?? -1
            self.waitOverride.store(nanoseconds, ordering: .relaxed)
        }
    }
}
