import NIOCore

/// One event on its way from a producer to a sink.
///
/// The value is a slice of the request body wherever possible, so decoding an
/// event does not copy its bytes.
public struct Event: Sendable {
    /// The event's payload, exactly as the producer sent it.
    public var value: ByteBuffer
    /// The record key, if the route extracts one.
    public var key: ByteBuffer?
    /// Record headers (Kafka headers), in order.
    public var headers: [EventHeader]
    /// Whether `value` is known to hold one valid JSON value.
    public var valueIsJSON: Bool
    /// The producer's timestamp (milliseconds since the epoch); the backend's time when nil.
    public var timestampMilliseconds: Int64?
    /// The partition the producer chose (Kafka); the sink's partitioner decides when nil.
    public var partition: Int32?
    /// The record's value is null, not empty (a Kafka tombstone); `value` is then empty.
    public var valueIsNull: Bool

    public init(
        value: ByteBuffer, key: ByteBuffer? = nil, headers: [EventHeader] = [], valueIsJSON: Bool = false,
        timestampMilliseconds: Int64? = nil, partition: Int32? = nil, valueIsNull: Bool = false
    ) {
        self.value = value
        self.key = key
        self.headers = headers
        self.valueIsJSON = valueIsJSON
        self.timestampMilliseconds = timestampMilliseconds
        self.partition = partition
        self.valueIsNull = valueIsNull
    }

    /// Bytes this event occupies in a sink's queue (value, key and headers). Inlinable: a sink
    /// reads it per event from its array without copying the event.
    @inlinable
    public var size: Int {
        var total = self.value.readableBytes + (self.key?.readableBytes ?? 0)
        for header in self.headers {
            total += header.name.utf8.count + header.value.utf8.count
        }
        return total
    }
}

/// A record header.
public struct EventHeader: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}
