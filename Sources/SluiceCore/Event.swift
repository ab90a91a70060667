import NIOCore

/// One event on its way from a producer to a sink.
///
/// The value is a slice of the request body wherever possible, so decoding an
/// event does not copy its bytes.
public struct Event: Sendable {
    // The stored properties are declared in an order other than the public initializer's
    // labels (`valueIsJSON` before `headers`), so the compiler still synthesizes the internal
    // memberwise initializer, which the public one calls (see the extension below). An
    // initializer that assigns the fields one by one left a copy of the whole event behind
    // wherever it was built (Swift 6.3: a value-witness copy and a destroy, ~280 instructions
    // per decoded event); the synthesized one builds it in place.

    /// The event's payload, exactly as the producer sent it.
    public var value: ByteBuffer
    /// The record key, if the route extracts one.
    public var key: ByteBuffer?
    /// Whether `value` is known to hold one valid JSON value.
    public var valueIsJSON: Bool
    /// Record headers (Kafka headers), in order.
    public var headers: [EventHeader]
    /// The producer's timestamp (milliseconds since the epoch); the backend's time when nil.
    public var timestampMilliseconds: Int64?
    /// The partition the producer chose (Kafka); the sink's partitioner decides when nil.
    public var partition: Int32?
    /// The record's value is null, not empty (a Kafka tombstone); `value` is then empty.
    public var valueIsNull: Bool

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

extension Event {
    public init(
        value: ByteBuffer, key: ByteBuffer? = nil, headers: [EventHeader] = [], valueIsJSON: Bool = false,
        timestampMilliseconds: Int64? = nil, partition: Int32? = nil, valueIsNull: Bool = false
    ) {
        self.init(
            value: value, key: key, valueIsJSON: valueIsJSON, headers: headers,
            timestampMilliseconds: timestampMilliseconds, partition: partition, valueIsNull: valueIsNull)
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
