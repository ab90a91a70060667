import NIOCore
import SluiceCore

/// One event as the spool keeps it: its sequence number, the topic it goes to, and the event
/// whole (key, value, headers, timestamp, partition, null value).
public struct SpoolEntry: Sendable {
    public var sequence: UInt64
    public var topic: String
    public var event: Event

    public init(sequence: UInt64, topic: String, event: Event) {
        self.sequence = sequence
        self.topic = topic
        self.event = event
    }
}

/// The spool's record format, little-endian:
///
///     frame:   u32 payload length | u32 CRC-32C of the payload | payload
///     payload: u64 sequence | u8 flags | u16 topic length | topic
///              | [u32 key length | key] | u32 value length | value
///              | [i32 partition] | [i64 timestamp ms] | u16 header count
///              | per header: u16 name length | name | u32 value length | value
///     flags:   1 key, 2 null value, 4 value is JSON, 8 partition, 16 timestamp
///
/// A frame whose length runs past the data, exceeds `maxPayloadBytes`, or whose checksum or
/// layout does not hold, is not a record: the reader stops there (a torn tail, or corruption).
public enum SpoolRecord {
    static let frameHeaderBytes = 8

    /// Appends `entry`'s frame to `out`; its size in bytes.
    @discardableResult
    public static func append(_ entry: SpoolEntry, to out: inout [UInt8]) -> Int {
        let start = out.count
        out.append(contentsOf: [0, 0, 0, 0, 0, 0, 0, 0])  // length and checksum, set below
        let event = entry.event
        Self.put(entry.sequence, &out)
        var flags: UInt8 = 0
        if event.key != nil { flags |= 1 }
        if event.valueIsNull { flags |= 2 }
        if event.valueIsJSON { flags |= 4 }
        if event.partition != nil { flags |= 8 }
        if event.timestampMilliseconds != nil { flags |= 16 }
        out.append(flags)
        Self.put(UInt16(clamping: entry.topic.utf8.count), &out)
        out.append(contentsOf: entry.topic.utf8.prefix(Int(UInt16.max)))
        if let key = event.key {
            Self.put(UInt32(key.readableBytes), &out)
            out.append(contentsOf: key.readableBytesView)
        }
        Self.put(UInt32(event.value.readableBytes), &out)
        out.append(contentsOf: event.value.readableBytesView)
        if let partition = event.partition { Self.put(UInt32(bitPattern: partition), &out) }
        if let timestamp = event.timestampMilliseconds { Self.put(UInt64(bitPattern: timestamp), &out) }
        Self.put(UInt16(clamping: event.headers.count), &out)
        for header in event.headers.prefix(Int(UInt16.max)) {
            Self.put(UInt16(clamping: header.name.utf8.count), &out)
            out.append(contentsOf: header.name.utf8.prefix(Int(UInt16.max)))
            Self.put(UInt32(header.value.utf8.count), &out)
            out.append(contentsOf: header.value.utf8)
        }
        let payloadBytes = out.count - start - Self.frameHeaderBytes
        let checksum = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(start + Self.frameHeaderBytes)...])) }
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(payloadBytes).littleEndian, toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: checksum.littleEndian, toByteOffset: start + 4, as: UInt32.self)
        }
        return out.count - start
    }

    /// The frame at the start of `bytes`: the entry and the frame's size, or nil when no whole,
    /// intact record starts there.
    public static func read(_ bytes: UnsafeRawBufferPointer, maxPayloadBytes: Int) -> (entry: SpoolEntry, size: Int)? {
        guard bytes.count >= Self.frameHeaderBytes else { return nil }
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        let checksum = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        guard length <= maxPayloadBytes, length <= bytes.count - Self.frameHeaderBytes else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[Self.frameHeaderBytes..<(Self.frameHeaderBytes + length)])
        guard CRC32C.checksum(payload) == checksum, let entry = Self.decode(payload) else { return nil }
        return (entry, Self.frameHeaderBytes + length)
    }

    private static func decode(_ payload: UnsafeRawBufferPointer) -> SpoolEntry? {
        var reader = Reader(bytes: payload)
        guard let sequence = reader.u64(), let flags = reader.u8(), let topicLength = reader.u16(),
            let topicBytes = reader.bytes(Int(topicLength))
        else { return nil }
        var event = Event(value: ByteBuffer())
        if flags & 1 != 0 {
            guard let length = reader.u32(), let key = reader.bytes(Int(length)) else { return nil }
            event.key = ByteBuffer(bytes: key)
        }
        guard let valueLength = reader.u32(), let value = reader.bytes(Int(valueLength)) else { return nil }
        event.value = ByteBuffer(bytes: value)
        event.valueIsNull = flags & 2 != 0
        event.valueIsJSON = flags & 4 != 0
        if flags & 8 != 0 {
            guard let partition = reader.u32() else { return nil }
            event.partition = Int32(bitPattern: partition)
        }
        if flags & 16 != 0 {
            guard let timestamp = reader.u64() else { return nil }
            event.timestampMilliseconds = Int64(bitPattern: timestamp)
        }
        guard let count = reader.u16() else { return nil }
        for _ in 0..<count {
            guard let nameLength = reader.u16(), let name = reader.bytes(Int(nameLength)), let valueLength = reader.u32(),
                let value = reader.bytes(Int(valueLength))
            else { return nil }
            event.headers.append(EventHeader(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
        }
        guard reader.isAtEnd, flags & ~31 == 0 else { return nil }
        return SpoolEntry(sequence: sequence, topic: String(decoding: topicBytes, as: UTF8.self), event: event)
    }

    private static func put<T: FixedWidthInteger>(_ value: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        var isAtEnd: Bool { self.position == self.bytes.count }

        mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer? {
            guard count <= self.bytes.count - self.position else { return nil }
            defer { self.position += count }
            return UnsafeRawBufferPointer(rebasing: self.bytes[self.position..<(self.position + count)])
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard let raw = self.bytes(MemoryLayout<T>.size) else { return nil }
            return T(littleEndian: raw.loadUnaligned(as: T.self))
        }

        mutating func u8() -> UInt8? { self.integer(UInt8.self) }
        mutating func u16() -> UInt16? { self.integer(UInt16.self) }
        mutating func u32() -> UInt32? { self.integer(UInt32.self) }
        mutating func u64() -> UInt64? { self.integer(UInt64.self) }
    }
}
