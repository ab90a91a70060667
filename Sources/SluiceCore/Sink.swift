/// A backend that events are delivered to: Kafka, a file, and later Kinesis and Zerobus.
///
/// The contract every sink keeps:
/// - `enqueue` hands events to the sink's bounded queue. When the queue is full it waits,
///   but never past `deadline`.
/// - Every event passed to `enqueue` is completed in `tracker` exactly once, at slot
///   `firstIndex + i`: `.delivered` only when the backend has made it durable, `.failed`
///   with a reason otherwise. Events the sink could not queue are completed as failed
///   before `enqueue` returns.
public protocol Sink: Sendable {
    /// The sink's name in the configuration.
    var name: String { get }

    /// Whether the sink can currently reach its backend.
    var isReady: Bool { get }

    /// The sink's in-flight budget (for backpressure and for operators to watch).
    var budget: InFlightBudget { get }

    /// The longest the sink may take to settle an event it accepted (Kafka: its delivery
    /// timeout). A request stops waiting after that and reports unsettled events as failed
    /// and retryable. nil: no bound.
    var settleTimeout: Duration? { get }

    /// Queues `events` for `topic`. Returns how many of them were queued (a prefix);
    /// the rest have been completed as failed, and the caller should stop sending.
    func enqueue(
        _ events: [Event],
        topic: String,
        tracker: DeliveryTracker,
        firstIndex: Int,
        deadline: ContinuousClock.Instant
    ) async -> Int
}

extension DeliveryTracker {
    /// Waits for every event's fate, but no longer than `sink` may take to settle an event (its
    /// `settleTimeout` plus a second of slack for the backend's own timeout scan); events still
    /// open then are reported `unsettled`, retryable.
    public func results(settledBy sink: any Sink) async -> [DeliveryResult] {
        guard let settle = sink.settleTimeout else { return await self.results() }
        let bound = settle + .seconds(1)
        return await self.results(deadline: .now + bound, unsettled: .unsettled(sink: sink.name, after: bound))
    }
}
