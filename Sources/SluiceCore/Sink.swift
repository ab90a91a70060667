/// A backend that events are delivered to: Kafka, a file, and later Kinesis and Zerobus.
///
/// The contract every sink keeps:
/// - `enqueue` hands events to the sink's bounded queue. When the queue is full it waits,
///   but never past `deadline`.
/// - Every event passed to `enqueue` is completed in `tracker` exactly once, at slot
///   `firstIndex + i`: `.delivered` only when the backend has made it durable, `.failed`
///   with a reason otherwise. Events the sink could not queue are completed as failed
///   before `enqueue` returns.
///
/// A sink is an object (each holds its backend's client, queue and state): class-bound, an
/// `any Sink` is a reference, copied with a retain where an opaque existential is copied through
/// its type's value witnesses — and requests, sessions and results hold one each.
public protocol Sink: AnyObject, Sendable {
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

    /// Why `destination` (a route's rendered `topic`) cannot be one of this sink's destinations,
    /// or nil. Kafka topic rules unless the sink says otherwise.
    func destinationProblem(_ destination: String) -> String?

    /// What traces call the backend (`messaging.system`): `kafka`, `aws_kinesis`, … The
    /// default, for sinks that are not a messaging system, is `sluice_<kind>`-like and set by each.
    var messagingSystem: String { get }

    /// Counts an operator may want beside the budget (e.g. Kafka producer replacements), shown
    /// by the admin `/sinks` view. Empty by default.
    var counters: [(name: String, value: Int)] { get }

    /// The configured sinks this one writes to: its own name, or (a route's fan-out or split)
    /// its targets'.
    var sinkNames: [String] { get }

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

extension Sink {
    public func destinationProblem(_ destination: String) -> String? {
        TopicName.problem(destination)
    }

    public var counters: [(name: String, value: Int)] { [] }

    public var sinkNames: [String] { [self.name] }

    public var messagingSystem: String { "sluice" }
}

extension DeliveryTracker {
    /// Waits for every event's fate, but no longer than `sink` may take to settle an event (its
    /// `settleTimeout` plus a second of slack for the backend's own timeout scan); events still
    /// open then are reported `unsettled`, retryable.
    public func results(settledBy sink: any Sink) async -> DeliveryResults {
        guard let settle = sink.settleTimeout else { return await self.results() }
        let bound = settle + .seconds(1)
        return await self.results(deadline: .now + bound, unsettled: .unsettled(sink: sink.name, after: bound))
    }
}

/// Kafka topic name rules.
public enum TopicName {
    /// Why `name` is not a valid Kafka topic name, or nil.
    public static func problem(_ name: String) -> String? {
        if name.isEmpty { return "topic name must not be empty" }
        if name.utf8.count > 249 { return "topic name is longer than 249 characters" }
        if name == "." || name == ".." { return "topic name cannot be \".\" or \"..\"" }
        // Over the contiguous UTF-8 (asked per request): String.UTF8View's iterator costs ~20
        // instructions a byte.
        var contiguous = name
        let valid = contiguous.withUTF8 { bytes in
            bytes.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
            }
        }
        return valid ? nil : "topic name \"\(name)\" may contain only ASCII letters, digits, '.', '_' and '-'"
    }
}
