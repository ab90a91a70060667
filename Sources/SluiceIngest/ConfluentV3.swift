import NIOCore
import SluiceCore

/// Confluent REST Proxy v3 produce (`api/v3/openapi.yaml`: `produceRecord`, `produceRecordsBatch`).
extension ConfluentREST {
    public enum V3Operation: Sendable, Equatable {
        /// `.../records`: one record, or a stream of concatenated records.
        case records
        /// `.../records:batch`: `entries[]` with ids, answered 207.
        case batch
    }

    /// `POST /v3/clusters/{cluster_id}/topics/{topic_name}/records[:batch]`, below the route's prefix.
    public struct V3Target: Sendable, Equatable {
        public var clusterID: String
        public var topic: String
        public var operation: V3Operation
    }

    public static func v3Target(_ path: Substring) -> V3Target? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard path.hasPrefix("/"), parts.count == 6, parts[0] == "v3", parts[1] == "clusters", parts[3] == "topics",
            !parts[2].isEmpty, !parts[4].isEmpty
        else { return nil }
        switch parts[5] {
        case "records": return V3Target(clusterID: parts[2], topic: parts[4], operation: .records)
        case "records:batch": return V3Target(clusterID: parts[2], topic: parts[4], operation: .batch)
        default: return nil
        }
    }

    /// The type of a v3 key or value, as the request named it and the answer repeats it.
    public enum V3DataType: String, Sendable {
        case binary = "BINARY"
        case json = "JSON"
        case string = "STRING"
    }

    /// One decoded v3 record: the event, and what the answer says of its key and value.
    public struct V3Record: Sendable {
        public var event: Event
        public var key: (size: Int, type: V3DataType)?
        public var value: (size: Int, type: V3DataType)?
        /// The record's timestamp (milliseconds), as written to Kafka and answered.
        public var timestamp: Int64
    }

    /// A record refused alone (v3 answers it with its own `error_code`).
    public struct RecordError: Error, Sendable, Equatable {
        public var errorCode: Int
        public var message: String

        public init(_ errorCode: Int, _ message: String) {
            self.errorCode = errorCode
            self.message = message
        }
    }

    /// Decodes one ProduceRequest, the JSON object `range` of the validated text `bytes`, whose
    /// bytes start at `base` in `body`. `now`: the timestamp of a record that names none.
    static func decodeV3Record(
        _ scanner: JSONScanner, _ range: Range<Int>, in body: ByteBuffer, base: Int, maxEventBytes: Int, now: Int64
    ) throws(RecordError) -> V3Record {
        let bytes = scanner.bytes
        guard bytes[range.lowerBound] == UInt8(ascii: "{") else { throw RecordError(400, "a record is a JSON object") }
        var record = V3Record(event: Event(value: ByteBuffer(), valueIsNull: true), key: nil, value: nil, timestamp: now)
        for member in scanner.members(ofObjectAt: range.lowerBound) {
            let first = bytes[member.value.lowerBound]
            switch member.name {
            case Array("partition_id".utf8):
                if first == UInt8(ascii: "n") { continue }
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[member.value]), as: UTF8.self)
                guard let partition = Int32(text), partition >= 0 else { throw RecordError(400, "partition_id: must be a partition number (0 or more)") }
                record.event.partition = partition
            case Array("timestamp".utf8):
                if first == UInt8(ascii: "n") { continue }
                guard first == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(member.value.lowerBound),
                    let milliseconds = RFC3339.milliseconds(String(decoding: text, as: UTF8.self))
                else { throw RecordError(400, "timestamp: must be an RFC 3339 date-time, like 2026-12-03T10:15:30.123Z") }
                record.timestamp = milliseconds
            case Array("headers".utf8):
                if first == UInt8(ascii: "n") { continue }
                guard first == UInt8(ascii: "[") else { throw RecordError(400, "headers: must be an array of {name, value}") }
                for element in scanner.elements(ofArrayAt: member.value.lowerBound) {
                    record.event.headers.append(try Self.header(scanner, element))
                }
            // A member given twice: the last one counts (as Jackson reads it), whole.
            case Array("key".utf8):
                let decoded = try Self.data(scanner, member.value, in: body, base: base, "key")
                record.event.key = decoded?.0
                record.key = decoded.map { ($0.0?.readableBytes ?? 0, $0.1) }
            case Array("value".utf8):
                let decoded = try Self.data(scanner, member.value, in: body, base: base, "value")
                record.event.value = decoded?.0 ?? ByteBuffer()
                record.event.valueIsNull = decoded?.0 == nil
                record.event.valueIsJSON = decoded?.0 != nil && decoded?.1 == .json
                record.value = decoded.map { ($0.0?.readableBytes ?? 0, $0.1) }
            default:
                continue
            }
        }
        record.event.timestampMilliseconds = record.timestamp
        if record.event.size > maxEventBytes {
            throw RecordError(413, "the record's key, value and headers are \(record.event.size) bytes, more than max_event_bytes (\(maxEventBytes))")
        }
        return record
    }

    /// `{"name":…,"value":base64}`: Sluice carries header values as text, so they must be UTF-8.
    private static func header(_ scanner: JSONScanner, _ range: Range<Int>) throws(RecordError) -> EventHeader {
        guard scanner.bytes[range.lowerBound] == UInt8(ascii: "{") else { throw RecordError(400, "headers: each is an object {name, value}") }
        var name: String?
        var value = ""
        for member in scanner.members(ofObjectAt: range.lowerBound) {
            let first = scanner.bytes[member.value.lowerBound]
            if member.name == Array("name".utf8) {
                guard first == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(member.value.lowerBound), !text.isEmpty else {
                    throw RecordError(400, "headers: name must be a non-empty string")
                }
                name = String(decoding: text, as: UTF8.self)
            } else if member.name == Array("value".utf8), first != UInt8(ascii: "n") {
                guard first == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(member.value.lowerBound),
                    let decoded = text.withUnsafeBytes({ Base64.decode($0) })
                else { throw RecordError(400, "headers: value must be base64") }
                guard let utf8 = String(validating: decoded, as: UTF8.self) else {
                    throw RecordError(400, "headers: this gateway carries header values as UTF-8 text; this one is not")
                }
                value = utf8
            }
        }
        guard let name else { throw RecordError(400, "headers: name is required") }
        return EventHeader(name: name, value: value)
    }

    /// A key or value object `{type, data}`: nil when absent or null; (nil, type) for null data.
    private static func data(
        _ scanner: JSONScanner, _ range: Range<Int>, in body: ByteBuffer, base: Int, _ what: String
    ) throws(RecordError) -> (ByteBuffer?, V3DataType)? {
        let bytes = scanner.bytes
        if bytes[range.lowerBound] == UInt8(ascii: "n") { return nil }
        guard bytes[range.lowerBound] == UInt8(ascii: "{") else { throw RecordError(400, "\(what): must be an object {type, data}") }
        var type: V3DataType?
        var typeName: String?
        var schema = false
        var data: Range<Int>?
        for member in scanner.members(ofObjectAt: range.lowerBound) {
            switch member.name {
            case Array("type".utf8):
                guard let (text, _) = scanner.decodeString(member.value.lowerBound) else { throw RecordError(400, "\(what).type: must be a string") }
                typeName = String(decoding: text, as: UTF8.self)
                type = V3DataType(rawValue: typeName!)
            case Array("data".utf8):
                data = member.value
            case Array("subject".utf8), Array("schema_id".utf8), Array("schema_version".utf8), Array("schema".utf8),
                Array("subject_name_strategy".utf8):
                if bytes[member.value.lowerBound] != UInt8(ascii: "n") { schema = true }
            default:
                continue
            }
        }
        guard let type, !schema else {
            let named = typeName.map { "type \($0)" } ?? (schema ? "a schema" : "no type")
            throw RecordError(400, "\(what): \(named) needs Schema Registry, which this gateway does not speak yet; use type BINARY, JSON or STRING")
        }
        guard let data, bytes[data.lowerBound] != UInt8(ascii: "n") else { return (nil, type) }
        switch type {
        case .json:
            return (body.getSlice(at: base + data.lowerBound, length: data.count)!, type)
        case .string:
            guard bytes[data.lowerBound] == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(data.lowerBound) else {
                throw RecordError(400, "\(what).data: type STRING takes a string")
            }
            return (ByteBuffer(bytes: text), type)
        case .binary:
            guard bytes[data.lowerBound] == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(data.lowerBound),
                let decoded = text.withUnsafeBytes({ Base64.decode($0) })
            else { throw RecordError(400, "\(what).data: type BINARY takes a base64 string") }
            return (ByteBuffer(bytes: decoded), type)
        }
    }

    /// Decodes one record held whole in `text` (a JSON object of the stream).
    public static func decodeV3Record(_ text: ByteBuffer, maxEventBytes: Int, now: Int64) -> Result<V3Record, RecordError> {
        text.withUnsafeReadableBytes { bytes in
            do throws(RecordError) {
                do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(bytes) } catch {
                    throw RecordError(400, "not valid JSON: byte \(error.offset + 1): \(error.message)")
                }
                let scanner = JSONScanner(bytes: bytes)
                let start = scanner.skipSpace(0)
                let end = (try? scanner.skipValue(start, depth: 0)) ?? bytes.count
                return .success(
                    try Self.decodeV3Record(scanner, start..<end, in: text, base: text.readerIndex, maxEventBytes: maxEventBytes, now: now))
            } catch {
                return .failure(error)
            }
        }
    }

    /// One entry of a `records:batch` body: its id and the record, or why the record is refused.
    public struct V3BatchEntry: Sendable {
        public var id: String
        public var record: Result<V3Record, RecordError>
    }

    /// Decodes a `records:batch` body (`{"entries":[{"id":…,…}]}`); the whole request is refused
    /// (422, error_code 42208) when it is empty, has more than `maxEntries`, or repeats an id.
    public static func decodeV3Batch(_ body: ByteBuffer, maxEntries: Int, maxEventBytes: Int, now: Int64) throws(RequestError) -> [V3BatchEntry] {
        var entries: [V3BatchEntry] = []
        var failure: RequestError?
        body.withUnsafeReadableBytes { bytes in
            do throws(RequestError) {
                do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(bytes) } catch {
                    throw RequestError(status: 400, "the body is not valid JSON: byte \(error.offset + 1): \(error.message)")
                }
                let scanner = JSONScanner(bytes: bytes)
                let start = scanner.skipSpace(0)
                guard bytes[start] == UInt8(ascii: "{"),
                    let list = scanner.members(ofObjectAt: start).first(where: { $0.name == Array("entries".utf8) })?.value,
                    bytes[list.lowerBound] == UInt8(ascii: "[")
                else { throw RequestError(status: 422, errorCode: Self.produceBatchErrorCode, "Request body is empty. Data is required.") }
                let elements = scanner.elements(ofArrayAt: list.lowerBound)
                guard !elements.isEmpty else { throw RequestError(status: 422, errorCode: Self.produceBatchErrorCode, "Empty batch.") }
                guard elements.count <= maxEntries else {
                    throw RequestError(status: 422, errorCode: Self.produceBatchErrorCode, "Too many entries in batch (at most \(maxEntries)).")
                }
                var seen: Set<String> = []
                for element in elements {
                    var id: String?
                    if bytes[element.lowerBound] == UInt8(ascii: "{"),
                        let idRange = scanner.members(ofObjectAt: element.lowerBound).first(where: { $0.name == Array("id".utf8) })?.value,
                        let (text, _) = scanner.decodeString(idRange.lowerBound), (1...Self.batchIDMaximumLength).contains(text.count)
                    {
                        id = String(decoding: text, as: UTF8.self)
                    }
                    guard let id else {
                        throw RequestError(status: 422, errorCode: Self.produceBatchErrorCode, "Batch entry identifier is not a valid string.")
                    }
                    guard seen.insert(id).inserted else {
                        throw RequestError(status: 422, errorCode: Self.produceBatchErrorCode, "Batch entry IDs are not distinct.")
                    }
                    let record: Result<V3Record, RecordError>
                    do throws(RecordError) {
                        record = .success(
                            try Self.decodeV3Record(scanner, element, in: body, base: body.readerIndex, maxEventBytes: maxEventBytes, now: now))
                    } catch {
                        record = .failure(error)
                    }
                    entries.append(V3BatchEntry(id: id, record: record))
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return entries
    }

    public static let produceBatchErrorCode = 42208
    public static let batchIDMaximumLength = 80
}

/// Splits a stream of concatenated JSON values (v3 streaming mode) as its bytes arrive, holding
/// at most one partial value, of at most `maxValueBytes`.
public struct ConcatenatedJSONSplitter {
    let maxValueBytes: Int
    private var carry = ByteBuffer()
    private var depth = 0
    private var inString = false
    private var escaped = false
    /// Bytes of `carry` already scanned.
    private var scanned = 0

    public init(maxValueBytes: Int) {
        self.maxValueBytes = maxValueBytes
    }

    public enum SplitError: Error, Equatable {
        /// Something other than a JSON object between values.
        case notAnObject
        /// A value longer than `maxValueBytes`.
        case tooLarge
        /// The stream ended inside a value.
        case truncated
    }

    /// Feeds the next bytes; appends every complete value (an object; its exact bytes).
    public mutating func feed(_ chunk: ByteBuffer, into values: inout [ByteBuffer]) throws(SplitError) {
        var chunk = chunk
        self.carry.writeBuffer(&chunk)
        var failure: SplitError?
        var completed: [Int] = []
        self.carry.withUnsafeReadableBytes { bytes in
            var i = self.scanned
            while i < bytes.count {
                let c = bytes[i]
                if self.depth == 0 {
                    switch c {
                    case 0x20, 0x09, 0x0A, 0x0D:
                        i += 1
                        continue
                    case UInt8(ascii: "{"):
                        break
                    default:
                        failure = .notAnObject
                        self.scanned = i
                        return
                    }
                }
                if self.inString {
                    if self.escaped {
                        self.escaped = false
                    } else if c == UInt8(ascii: "\\") {
                        self.escaped = true
                    } else if c == UInt8(ascii: "\"") {
                        self.inString = false
                    }
                } else if c == UInt8(ascii: "\"") {
                    self.inString = true
                } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                    self.depth += 1
                } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    self.depth -= 1
                    if self.depth == 0 { completed.append(i + 1) }
                }
                i += 1
            }
            self.scanned = i
        }
        // Cut the completed values out, leading whitespace skipped (those before a failure too).
        var start = 0
        for end in completed {
            let slice = self.carry.getSlice(at: self.carry.readerIndex + start, length: end - start)!
            values.append(Self.trimmedLeading(slice))
            start = end
        }
        if start > 0 {
            self.carry.moveReaderIndex(forwardBy: start)
            self.scanned -= start
            self.carry.discardReadBytes()
        }
        if let failure { throw failure }
        if self.depth > 0, self.carry.readableBytes > self.maxValueBytes { throw .tooLarge }
        if self.depth == 0, self.carry.readableBytes > 0, self.carry.readableBytesView.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
            self.carry.clear()
            self.scanned = 0
        }
    }

    /// The stream has ended: nothing may be left half-read.
    public func finish() throws(SplitError) {
        if self.depth > 0 || self.inString { throw .truncated }
    }

    private static func trimmedLeading(_ buffer: ByteBuffer) -> ByteBuffer {
        var buffer = buffer
        while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), [0x20, 0x09, 0x0A, 0x0D].contains(byte) {
            buffer.moveReaderIndex(forwardBy: 1)
        }
        return buffer
    }
}
