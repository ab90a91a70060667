/// The fate of one event, as reported by its sink.
public enum DeliveryResult: Sendable, Hashable {
    /// The backend has made the event durable.
    case delivered(DeliveryReceipt)
    /// The event was not delivered.
    case failed(DeliveryFailure)
}

/// Where a delivered event landed: partition and offset for Kafka, segment offset for files,
/// shard and sequence number for Kinesis.
public struct DeliveryReceipt: Sendable, Hashable {
    public var partition: Int32?
    public var offset: Int64?
    public var shardID: String?
    public var sequenceNumber: String?
    /// Set when the event did not go to its destination but to the route's dead-letter one (the
    /// receipt's place is there): why, and where.
    public var deadLetter: DeadLetterNote?
    /// Set for a route with several sinks (`sinks`, `split`): each target's own result.
    public var targets: [TargetOutcome]?

    public init(partition: Int32? = nil, offset: Int64? = nil, shardID: String? = nil, sequenceNumber: String? = nil) {
        self.partition = partition
        self.offset = offset
        self.shardID = shardID
        self.sequenceNumber = sequenceNumber
    }
}

/// Where a dead-lettered event went, and the failure that sent it there.
public struct DeadLetterNote: Sendable, Hashable {
    public var sink: String
    public var topic: String
    public var failure: DeliveryFailure

    public init(sink: String, topic: String, failure: DeliveryFailure) {
        self.sink = sink
        self.topic = topic
        self.failure = failure
    }
}

extension DeliveryResult {
    /// For answers that have no word for a dead letter (REST Proxy, gRPC): the failure that sent
    /// the event there, saying where it went.
    public var deadLetterAsFailure: DeliveryResult {
        guard case .delivered(let receipt) = self, let note = receipt.deadLetter else { return self }
        var failure = note.failure
        var place = "\(note.sink)/\(note.topic)"
        if let partition = receipt.partition { place += " partition \(partition)" }
        if let offset = receipt.offset { place += " offset \(offset)" }
        failure.message += " (dead-lettered to \(place))"
        return .failed(failure)
    }
}

/// One target's result for an event of a route with several sinks.
public struct TargetOutcome: Sendable, Hashable {
    public var sink: String
    public var topic: String
    public var result: DeliveryResult

    public init(sink: String, topic: String, result: DeliveryResult) {
        self.sink = sink
        self.topic = topic
        self.result = result
    }
}

/// Why an event was not delivered, in words a client can act on.
public struct DeliveryFailure: Error, Sendable, Hashable {
    /// A stable, machine-readable reason, e.g. `sink_queue_full` or `kafka_msg_size_too_large`.
    public var code: String
    /// What went wrong and what to do about it.
    public var message: String
    /// Whether the same event may succeed if sent again later.
    public var isRetryable: Bool
    /// The HTTP status that best describes a non-retryable failure (retryable ones map to 503).
    public var httpStatus: Int
    /// Set for a route with several sinks (`sinks`, `split`): each target's own result.
    public var targets: [TargetOutcome]?

    public init(code: String, message: String, isRetryable: Bool, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.isRetryable = isRetryable
        self.httpStatus = httpStatus ?? (isRetryable ? 503 : 422)
    }

    /// The sink's bounded queue stayed full for longer than the request may wait.
    public static func queueFull(sink: String) -> DeliveryFailure {
        DeliveryFailure(.sinkSaturated, "sink \"\(sink)\" is saturated: its queue stayed full past the route's wait limit; retry later")
    }

    /// The sink is shutting down and accepts no new events.
    public static func shuttingDown(sink: String) -> DeliveryFailure {
        DeliveryFailure(.sinkShuttingDown, "sink \"\(sink)\" is shutting down; retry against another instance")
    }

    /// The sink did not settle the event in time; it may still be delivered later.
    public static func unsettled(sink: String, after timeout: Duration) -> DeliveryFailure {
        DeliveryFailure(
            .deliveryUnconfirmed,
            "sink \"\(sink)\" did not confirm this event within \(timeout); it may still be delivered, so a retry may duplicate it")
    }

    /// The event was never handed to the sink because the request stopped earlier.
    public static let notAttempted = DeliveryFailure(.notAttempted, "not sent: the request stopped before this event")
}
