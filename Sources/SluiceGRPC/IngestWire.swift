import NIOCore
import SluiceCore

/// The protobuf wire format of `sluice.v1.Ingest`'s messages, read and written on the ingest
/// path without SwiftProtobuf's message values.
///
/// SwiftProtobuf would decode each event into a `Sluice_V1_Event` with a `Data` per value and
/// key (an allocation and a copy each), which the pipeline then copied again into a
/// `ByteBuffer`; and it would build each answer from one `Sluice_V1_EventResult` per event.
/// Here a request is copied once into one buffer and its events are slices of it, and an
/// answer is written straight from the request's `DeliveryResults`.
///
/// Reading accepts exactly what SwiftProtobuf accepts and reads it the same way (proved by the
/// `grpc_publish_request` fuzz target, which compares the two on every input): unknown fields
/// and known fields of another wire type are skipped, groups included (nested at most as deep
/// as SwiftProtobuf's default depth limit); the last of repeated scalar fields wins; strings
/// must be UTF-8; a header map entry without a key or value has the empty string there, and
/// the last entry of a name wins. The generated types stay for clients and tests.
enum IngestWire {
    /// Why a message could not be read.
    struct Malformed: Error, Equatable, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// SwiftProtobuf's default message depth limit (`BinaryDecodingOptions.messageDepthLimit`).
    static let depthLimit = 100

    // MARK: - Reading

    /// Reads a `PublishRequest`: one copy of `bytes`, events sliced from it.
    static func publishRequest(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> IncomingPublishRequest {
        let buffer = ByteBuffer(bytes: bytes)
        return try buffer.withUnsafeReadableBytes { raw throws(Malformed) in
            var reader = Reader(raw, range: 0..<raw.count)
            var request = IncomingPublishRequest()
            // SwiftProtobuf counts the message itself against the depth limit.
            let depth = Self.depthLimit - 1
            while let (field, wire) = try reader.messageTag() {
                switch (field, wire) {
                case (1, .varint):
                    request.sequence = try reader.varint()
                case (2, .lengthDelimited):
                    request.topic = try reader.string()
                case (3, .lengthDelimited):
                    let range = try reader.lengthDelimited()
                    request.events.append(try Self.event(raw, range: range, buffer: buffer, depth: depth - 1))
                default:
                    try reader.skip(wire, field: field, depth: depth)
                }
            }
            return request
        }
    }

    /// Reads one `Event` from `range` of the request.
    private static func event(_ raw: UnsafeRawBufferPointer, range: Range<Int>, buffer: ByteBuffer, depth: Int) throws(Malformed) -> Event {
        var reader = Reader(raw, range: range)
        var value: Range<Int> = range.lowerBound..<range.lowerBound
        var key: Range<Int>?
        var timestamp: Int64?
        var headers: [EventHeader] = []
        while let (field, wire) = try reader.messageTag() {
            switch (field, wire) {
            case (1, .lengthDelimited):
                value = try reader.lengthDelimited()
            case (2, .lengthDelimited):
                key = try reader.lengthDelimited()
            case (3, .lengthDelimited):
                let entry = try reader.lengthDelimited()
                headers.append(try Self.header(raw, range: entry, depth: depth))
            case (4, .varint):
                timestamp = Int64(bitPattern: try reader.varint())
            default:
                try reader.skip(wire, field: field, depth: depth)
            }
        }
        return Event(
            value: buffer.getSlice(at: value.lowerBound, length: value.count)!,
            key: key.map { buffer.getSlice(at: $0.lowerBound, length: $0.count)! },
            headers: Self.mapOrder(headers),
            timestampMilliseconds: timestamp)
    }

    /// Reads one entry of the `headers` map.
    private static func header(_ raw: UnsafeRawBufferPointer, range: Range<Int>, depth: Int) throws(Malformed) -> EventHeader {
        var reader = Reader(raw, range: range)
        var name: String?
        var value: String?
        // Map entries read their tags as SwiftProtobuf's `decodeMapField` does: a plain varint,
        // and a key or value of another wire type is passed over without consuming its body
        // (whose bytes are then read as the next tags).
        while let (field, wire) = try reader.varintTag() {
            if wire == .endGroup { throw Malformed("end-group tag in a map entry") }
            switch field {
            case 1:
                if wire == .lengthDelimited { name = try reader.string() }
            case 2:
                if wire == .lengthDelimited { value = try reader.string() }
            default:
                try reader.skip(wire, field: field, depth: depth)
            }
        }
        return EventHeader(name: name ?? "", value: value ?? "")
    }

    /// A map's entries: one per name (the last one read), ordered by name.
    private static func mapOrder(_ headers: [EventHeader]) -> [EventHeader] {
        guard headers.count > 1 else { return headers }
        // Sorted by name, then by position, so the last entry of each name ends its run.
        let sorted = headers.indices.sorted { headers[$0].name != headers[$1].name ? headers[$0].name < headers[$1].name : $0 < $1 }
        var unique: [EventHeader] = []
        unique.reserveCapacity(sorted.count)
        for (position, index) in sorted.enumerated() {
            let isLastOfName = position == sorted.count - 1 || headers[sorted[position + 1]].name != headers[index].name
            if isLastOfName { unique.append(headers[index]) }
        }
        return unique
    }

    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case startGroup = 3
        case endGroup = 4
        case fixed32 = 5
    }

    /// A cursor over one message's bytes.
    struct Reader {
        let raw: UnsafeRawBufferPointer
        var position: Int
        let end: Int

        init(_ raw: UnsafeRawBufferPointer, range: Range<Int>) {
            self.raw = raw
            self.position = range.lowerBound
            self.end = range.upperBound
        }

        var available: Int { self.end - self.position }

        /// A varint of at most ten bytes (bits past the 64th dropped, as SwiftProtobuf does).
        mutating func varint() throws(Malformed) -> UInt64 {
            guard self.position < self.end else { throw Malformed("truncated varint") }
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard self.position < self.end, shift <= 63 else { throw Malformed("malformed varint") }
                let byte = self.raw[self.position]
                self.position += 1
                value |= UInt64(byte & 0x7f) &<< shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }

        /// The next field's tag as a message reads it (SwiftProtobuf's `nextFieldNumber`): at
        /// most five bytes, a field number above zero; nil at the end.
        mutating func messageTag() throws(Malformed) -> (Int, WireType)? {
            guard self.position < self.end else { return nil }
            let first = self.raw[self.position]
            guard let wire = WireType(rawValue: first & 7) else { throw Malformed("invalid wire type") }
            var field = Int(first & 0x7f) >> 3
            var length = 1
            if first & 0x80 != 0 {
                var shift = 4
                while true {
                    guard self.available > length else { throw Malformed("truncated field tag") }
                    let byte = self.raw[self.position + length]
                    if length == 4 {
                        guard byte <= 15 else { throw Malformed("malformed field tag") }
                        field |= Int(byte) << shift
                        length += 1
                        break
                    }
                    field |= Int(byte & 0x7f) << shift
                    length += 1
                    if byte & 0x80 == 0 { break }
                    shift += 7
                }
            }
            self.position += length
            guard field != 0 else { throw Malformed("field number 0") }
            guard wire != .endGroup else { throw Malformed("end-group tag outside a group") }
            return (field, wire)
        }

        /// The next tag read as a varint (SwiftProtobuf's `getTag`); nil at the end.
        mutating func varintTag() throws(Malformed) -> (Int, WireType)? {
            guard self.position < self.end else { return nil }
            let tag = try self.varint()
            guard tag < UInt64(UInt32.max), tag & ~7 != 0, let wire = WireType(rawValue: UInt8(tag & 7)) else {
                throw Malformed("malformed field tag")
            }
            return (Int(tag >> 3), wire)
        }

        /// The body of a length-delimited field.
        mutating func lengthDelimited() throws(Malformed) -> Range<Int> {
            let length = try self.varint()
            guard length < 0x7fff_ffff else { throw Malformed("field longer than 2 GiB") }
            guard length <= UInt64(self.available) else { throw Malformed("truncated field") }
            let start = self.position
            self.position += Int(length)
            return start..<self.position
        }

        mutating func string() throws(Malformed) -> String {
            let range = try self.lengthDelimited()
            guard let text = String(validating: UnsafeRawBufferPointer(rebasing: self.raw[range]), as: UTF8.self) else {
                throw Malformed("string field is not UTF-8")
            }
            return text
        }

        /// Passes over a field's body (SwiftProtobuf's `skipOver`): a group up to its end tag,
        /// each level of it counted against `depth`.
        mutating func skip(_ wire: WireType, field: Int, depth: Int) throws(Malformed) {
            switch wire {
            case .varint:
                _ = try self.varint()
            case .fixed64:
                guard self.available >= 8 else { throw Malformed("truncated fixed64") }
                self.position += 8
            case .fixed32:
                guard self.available >= 4 else { throw Malformed("truncated fixed32") }
                self.position += 4
            case .lengthDelimited:
                let length = try self.varint()
                guard length <= UInt64(self.available) else { throw Malformed("truncated field") }
                self.position += Int(length)
            case .startGroup:
                guard depth > 0 else { throw Malformed("groups nested deeper than \(IngestWire.depthLimit)") }
                while true {
                    guard let (inner, innerWire) = try self.varintTag() else { throw Malformed("unterminated group") }
                    if innerWire == .endGroup {
                        guard inner == field else { throw Malformed("end-group tag of another group") }
                        return
                    }
                    try self.skip(innerWire, field: inner, depth: depth - 1)
                }
            case .endGroup:
                throw Malformed("end-group tag outside a group")
            }
        }
    }

    // MARK: - Writing

    /// A `PublishAck`'s bytes.
    static func publishAck(_ ack: OutgoingPublishAck) -> [UInt8] {
        var writer = Writer()
        let resultsSize = Self.resultsSize(ack.results)
        writer.bytes.reserveCapacity(Self.varintFieldSize(ack.sequence) + (ack.durable ? 2 : 0) + resultsSize)
        writer.varintField(1, ack.sequence)
        if ack.durable { writer.varintField(2, 1) }
        Self.write(ack.results, field: 3, to: &writer)
        return writer.bytes
    }

    /// A `PublishResponse`'s bytes.
    static func publishResponse(_ response: OutgoingPublishResponse) -> [UInt8] {
        var writer = Writer()
        writer.bytes.reserveCapacity(Self.varintFieldSize(UInt64(response.accepted)) + Self.resultsSize(response.results))
        writer.varintField(1, UInt64(response.accepted))
        Self.write(response.results, field: 2, to: &writer)
        return writer.bytes
    }

    /// Bytes of a varint field with its one-byte tag (fields 1-15), none for zero (proto3).
    static func varintFieldSize(_ value: UInt64) -> Int { value == 0 ? 0 : 1 + Writer.varintSize(value) }

    static func stringFieldSize(_ text: String) -> Int {
        let count = text.utf8.count
        return count == 0 ? 0 : 1 + Writer.varintSize(UInt64(count)) + count
    }

    /// An `EventResult`'s body around its `Delivered` or `Failure` message of `inner` bytes: the
    /// oneof's tag, the message's length, the message.
    private static func resultBodySize(inner: Int) -> Int {
        1 + Writer.varintSize(UInt64(inner)) + inner
    }

    /// The size of the `Delivered` or `Failure` message of the result at `position`. The commonest,
    /// a Kafka receipt, is sized from the partition and offset the results keep for it, without
    /// building a `DeliveryResult` (and copying its receipt).
    private static func innerSize(of results: DeliveryResults, at position: Int) -> Int {
        if let (partition, offset) = results.partitionAndOffset(at: position) {
            return Self.deliveredSize(partition: partition, offset: offset)
        }
        return Self.innerSize(results[position])
    }

    /// The size of the `Delivered` or `Failure` message inside an `EventResult`.
    private static func innerSize(_ result: DeliveryResult) -> Int {
        switch result {
        case .delivered(let receipt):
            return Self.deliveredSize(partition: receipt.partition ?? 0, offset: receipt.offset ?? 0)
                + Self.stringFieldSize(receipt.shardID ?? "") + Self.stringFieldSize(receipt.sequenceNumber ?? "")
        case .failed(let failure):
            return Self.stringFieldSize(failure.code) + Self.stringFieldSize(failure.message) + (failure.isRetryable ? 2 : 0)
        }
    }

    /// The size of a `Delivered` message's partition and offset fields: the whole message for a
    /// receipt that holds only those (its empty shard and sequence fields are left out). The int32
    /// partition is written sign-extended to 64 bits, as protobuf requires.
    private static func deliveredSize(partition: Int32, offset: Int64) -> Int {
        Self.varintFieldSize(UInt64(bitPattern: Int64(partition))) + Self.varintFieldSize(UInt64(bitPattern: offset))
    }

    /// Bytes of the `results` field's entries (a one-byte tag each).
    private static func resultsSize(_ results: DeliveryResults) -> Int {
        var total = 0
        for position in results.indices {
            let body = Self.resultBodySize(inner: Self.innerSize(of: results, at: position))
            total += 1 + Writer.varintSize(UInt64(body)) + body
        }
        return total
    }

    private static func write(_ results: DeliveryResults, field: Int, to writer: inout Writer) {
        for position in results.indices {
            // A Kafka receipt from the partition and offset the results keep (see innerSize(of:at:)).
            if let (partition, offset) = results.partitionAndOffset(at: position) {
                let inner = Self.deliveredSize(partition: partition, offset: offset)
                Self.writeDelivered(partition: partition, offset: offset, shardID: "", sequenceNumber: "", inner: inner, field: field, to: &writer)
                continue
            }
            let result = results[position]
            let inner = Self.innerSize(result)
            switch result {
            case .delivered(let receipt):
                Self.writeDelivered(
                    partition: receipt.partition ?? 0, offset: receipt.offset ?? 0, shardID: receipt.shardID ?? "",
                    sequenceNumber: receipt.sequenceNumber ?? "", inner: inner, field: field, to: &writer)
            case .failed(let failure):
                Self.writeResultHead(field: field, oneof: 2, inner: inner, to: &writer)
                writer.stringField(1, failure.code)
                writer.stringField(2, failure.message)
                if failure.isRetryable { writer.varintField(3, 1) }
            }
        }
    }

    /// An `EventResult` entry of the `results` field up to its oneof message's fields: the entry's
    /// tag and length, the oneof's tag (1 `delivered`, 2 `failed`) and the message's length.
    private static func writeResultHead(field: Int, oneof: Int, inner: Int, to writer: inout Writer) {
        writer.tag(field, .lengthDelimited)
        writer.varint(UInt64(Self.resultBodySize(inner: inner)))
        writer.tag(oneof, .lengthDelimited)
        writer.varint(UInt64(inner))
    }

    /// An `EventResult` entry holding a `Delivered` message of `inner` bytes.
    private static func writeDelivered(
        partition: Int32, offset: Int64, shardID: String, sequenceNumber: String, inner: Int, field: Int, to writer: inout Writer
    ) {
        Self.writeResultHead(field: field, oneof: 1, inner: inner, to: &writer)
        writer.varintField(1, UInt64(bitPattern: Int64(partition)))
        writer.varintField(2, UInt64(bitPattern: offset))
        writer.stringField(3, shardID)
        writer.stringField(4, sequenceNumber)
    }

    /// Appends fields (numbers 1-15) in field order, proto3 defaults left out, as SwiftProtobuf does.
    struct Writer {
        var bytes: [UInt8] = []

        static func varintSize(_ value: UInt64) -> Int {
            value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
        }

        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                self.bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            self.bytes.append(UInt8(value))
        }

        mutating func tag(_ field: Int, _ wire: WireType) {
            self.bytes.append(UInt8(field << 3) | wire.rawValue)
        }

        mutating func varintField(_ field: Int, _ value: UInt64) {
            guard value != 0 else { return }
            self.tag(field, .varint)
            self.varint(value)
        }

        mutating func stringField(_ field: Int, _ text: String) {
            guard !text.isEmpty else { return }
            self.tag(field, .lengthDelimited)
            var text = text
            text.withUTF8 { utf8 in
                self.varint(UInt64(utf8.count))
                self.bytes.append(contentsOf: utf8)
            }
        }
    }
}

/// A `sluice.v1.PublishRequest` as the ingest path reads it: its events slice one buffer.
struct IncomingPublishRequest: Sendable {
    var sequence: UInt64 = 0
    var topic: String = ""
    var events: [Event] = []
}

/// A `sluice.v1.PublishAck` written from a request's results.
struct OutgoingPublishAck: Sendable {
    var sequence: UInt64
    var durable: Bool
    var results: DeliveryResults
}

/// A `sluice.v1.PublishResponse` written from a request's results.
struct OutgoingPublishResponse: Sendable {
    var accepted: UInt32
    var results: DeliveryResults
}
