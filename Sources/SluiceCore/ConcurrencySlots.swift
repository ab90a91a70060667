/// At most `max` of something in progress at once (an upstream's requests); past it callers wait
/// in line, first come first served, until a deadline.
///
/// A concrete class over `FIFOWaitQueue` so that its generic code is specialized in this module:
/// instantiated from another module, every call ran the unspecialized queue, looking up generic
/// metadata several times per request (~3,000 instructions per proxied request under callgrind).
public final class ConcurrencySlots: Sendable {
    struct Slots: FIFOCapacity {
        let max: Int
        var active = 0

        mutating func take(_ amount: Void) -> Bool {
            guard self.active < self.max else { return false }
            self.active += 1
            return true
        }

        mutating func give(_ amount: Void) {
            self.active -= 1
        }
    }

    private let queue: FIFOWaitQueue<Slots>

    public init(max: Int) {
        self.queue = FIFOWaitQueue(Slots(max: max))
    }

    /// Takes a slot, waiting in line until `deadline` behind at most `maxWaiting` others. False
    /// if the deadline passed, the task was cancelled or the line was full; nothing is taken then.
    public func take(deadline: ContinuousClock.Instant, maxWaiting: Int) async -> Bool {
        await self.queue.take((), deadline: deadline, maxWaiting: maxWaiting)
    }

    /// Gives a slot back (to the longest waiter, if any).
    public func give() {
        self.queue.give(())
    }

    /// Slots taken now.
    public var active: Int {
        self.queue.withCapacity { $0.active }
    }

    /// Callers waiting in line.
    public var waiting: Int {
        self.queue.waiting
    }
}
