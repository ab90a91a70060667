import NIOCore
import SluiceCore

/// Confluent REST Proxy's produce API, as producers already speak it: its paths, its request
/// bodies, and its error codes (`error_code`: the HTTP status, or the status times 100 plus a
/// sub-code). The rules live here; the HTTP adapter writes the answers.
public enum ConfluentREST {
    // MARK: Error codes (kafka-rest Errors.java and rest-utils KafkaExceptionMapper)

    /// A Kafka authentication failure.
    public static let kafkaAuthenticationErrorCode = 40101
    /// A Kafka authorization failure.
    public static let kafkaAuthorizationErrorCode = 40301
    public static let topicNotFoundErrorCode = 40401
    public static let partitionNotFoundErrorCode = 40402
    /// "Payload error": a record REST Proxy cannot turn into Kafka bytes.
    public static let invalidPayloadErrorCode = 42206
    /// A non-retriable Kafka error.
    public static let kafkaErrorCode = 50002
    /// A retriable Kafka error: the same record may succeed if sent again.
    public static let kafkaRetriableErrorCode = 50003

    /// A request REST Proxy would refuse as a whole: its HTTP status and `error_code`.
    public struct RequestError: Error, Sendable, Equatable {
        public var status: Int
        public var errorCode: Int
        public var message: String

        public init(status: Int, errorCode: Int? = nil, _ message: String) {
            self.status = status
            self.errorCode = errorCode ?? status
            self.message = message
        }
    }

    /// The `error_code` REST Proxy gives for a request Sluice refuses with `code` (a policy's
    /// refusal, a limit): authentication and authorization as Kafka's, the rest the HTTP status.
    public static func errorCode(status: Int) -> Int {
        switch status {
        case 401: return Self.kafkaAuthenticationErrorCode
        case 403: return Self.kafkaAuthorizationErrorCode
        default: return status
        }
    }

    /// The `error_code` of one record that was not written, as REST Proxy classifies the
    /// producer's exception: authentication, authorization, retriable, other.
    /// By the failure's HTTP status, which each connector sets from its backend's error (the
    /// Kafka connector: `KafkaSinkError.httpStatus`).
    public static func errorCode(of failure: DeliveryFailure) -> Int {
        if failure.isRetryable { return Self.kafkaRetriableErrorCode }
        switch failure.httpStatus {
        case 401: return Self.kafkaAuthenticationErrorCode
        case 403: return Self.kafkaAuthorizationErrorCode
        case 404: return failure.code.hasSuffix("unknown_partition") ? Self.partitionNotFoundErrorCode : Self.topicNotFoundErrorCode
        default: break
        }
        if failure.code == ErrorCode.eventTooLarge.code || failure.code == ErrorCode.schemaViolation.code { return Self.invalidPayloadErrorCode }
        return Self.kafkaErrorCode
    }

    // MARK: v2

    /// `POST /topics/{topic}` or `/topics/{topic}/partitions/{partition}`, below the route's prefix.
    public struct V2Target: Sendable, Equatable {
        public var topic: String
        public var partition: Int32?
    }

    /// The produce target named by `path` (the request path after the route's prefix), or nil
    /// when it names none (REST Proxy answers 404).
    public static func v2Target(_ path: Substring) -> V2Target? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard path.hasPrefix("/"), segments.count == 2 || segments.count == 4, segments.first == "topics" else { return nil }
        let parts = Array(segments)
        let topic = String(parts[1])
        guard !topic.isEmpty else { return nil }
        if parts.count == 2 { return V2Target(topic: topic, partition: nil) }
        guard parts[2] == "partitions", let partition = Int32(parts[3]), partition >= 0 else { return nil }
        return V2Target(topic: topic, partition: partition)
    }

    /// The embedded format of a v2 produce request (its Content-Type).
    public enum V2Format: Sendable, Equatable {
        /// `application/vnd.kafka.json.v2+json`: keys and values are JSON, written as their JSON text.
        case json
        /// `application/vnd.kafka.binary.v2+json`: keys and values are base64 strings.
        case binary
        /// `avro`, `jsonschema`, `protobuf`: need Schema Registry, which Sluice does not speak yet.
        case needsSchema(String)
        case unsupported

        public init(contentType: String?) {
            switch MediaType.essence(of: contentType) {
            case "application/vnd.kafka.json.v2+json": self = .json
            case "application/vnd.kafka.binary.v2+json": self = .binary
            case "application/vnd.kafka.avro.v2+json": self = .needsSchema("avro")
            case "application/vnd.kafka.jsonschema.v2+json": self = .needsSchema("jsonschema")
            case "application/vnd.kafka.protobuf.v2+json": self = .needsSchema("protobuf")
            default: self = .unsupported
            }
        }
    }

    /// The media type of v2 answers.
    public static let v2ResponseType = "application/vnd.kafka.v2+json"

    /// Whether an Accept header lets the client take a v2 answer.
    public static func acceptsV2(_ accept: String?) -> Bool {
        guard let accept, !accept.isEmpty else { return true }
        for range in accept.split(separator: ",") {
            let media = MediaType.essence(of: range)
            if ["*/*", "application/*", "application/json", "application/vnd.kafka.v2+json", "application/vnd.kafka+json"].contains(media) {
                return true
            }
        }
        return false
    }

    /// One record of a v2 request: an event to send, or one that is refused alone.
    public enum V2Record: Sendable {
        case event(Event)
        /// Larger than max_event_bytes (key and value): fails alone, the others go on.
        case tooLarge(bytes: Int)
    }

    /// Decodes a whole v2 produce body (`{"records":[{"key":…,"value":…,"partition":…}],…}`).
    /// JSON keys and values become their JSON text, exactly as sent (a string key keeps its
    /// quotes, as REST Proxy's JSON serializer writes it); binary ones their base64-decoded
    /// bytes. A null or absent value is a null record value (a tombstone); a null or absent key,
    /// no key. `partition`: the path's partition, for records that name none.
    public static func decodeV2(
        _ body: ByteBuffer, format: V2Format, partition: Int32?, maxEvents: Int, maxEventBytes: Int
    ) throws(RequestError) -> [V2Record] {
        let embedded: V2Format = format
        var records: [V2Record] = []
        var failure: RequestError?
        body.withUnsafeReadableBytes { bytes in
            do throws(RequestError) {
                records = try V2Decoder(bytes: bytes, body: body, format: embedded, partition: partition, maxEvents: maxEvents, maxEventBytes: maxEventBytes).decode()
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return records
    }
}

/// The v2 body, read with the validating scanner: values stay slices of the body.
private struct V2Decoder {
    let bytes: UnsafeRawBufferPointer
    let body: ByteBuffer
    let format: ConfluentREST.V2Format
    let partition: Int32?
    let maxEvents: Int
    let maxEventBytes: Int

    var scanner: JSONScanner { JSONScanner(bytes: self.bytes) }

    func decode() throws(ConfluentREST.RequestError) -> [ConfluentREST.V2Record] {
        do {
            try JSONScanner.validate(self.bytes)
        } catch {
            // Jackson's parse errors: 400 with the HTTP status as error_code.
            throw .init(status: 400, "the body is not valid JSON: byte \(error.offset + 1): \(error.message)")
        }
        let start = self.scanner.skipSpace(0)
        guard self.bytes[start] == UInt8(ascii: "{") else {
            throw .init(status: 422, "the body must be a JSON object with records")
        }
        var recordsRange: Range<Int>?
        for member in self.scanner.members(ofObjectAt: start) where member.name == Array("records".utf8) {
            recordsRange = member.value
        }
        guard let recordsRange, self.bytes[recordsRange.lowerBound] == UInt8(ascii: "[") else {
            throw .init(status: 422, "records: must be a non-empty array")
        }
        let elements = self.scanner.elements(ofArrayAt: recordsRange.lowerBound)
        guard !elements.isEmpty else { throw .init(status: 422, "records: must be a non-empty array") }
        guard elements.count <= self.maxEvents else {
            throw .init(status: 413, "the request holds more than max_events (\(self.maxEvents)) records")
        }
        var records: [ConfluentREST.V2Record] = []
        records.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            records.append(try self.record(index, element))
        }
        return records
    }

    private func record(_ index: Int, _ range: Range<Int>) throws(ConfluentREST.RequestError) -> ConfluentREST.V2Record {
        guard self.bytes[range.lowerBound] == UInt8(ascii: "{") else {
            throw .init(status: 422, "records[\(index)]: must be an object with key, value and partition")
        }
        var key: ByteBuffer?
        var value: ByteBuffer?
        var partition = self.partition
        for member in self.scanner.members(ofObjectAt: range.lowerBound) {
            switch member.name {
            case Array("key".utf8): key = try self.payload(member.value, "records[\(index)].key")
            case Array("value".utf8): value = try self.payload(member.value, "records[\(index)].value")
            case Array("partition".utf8):
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[member.value]), as: UTF8.self)
                if text == "null" { continue }
                guard let number = Int32(text), number >= 0 else {
                    throw .init(status: 422, "records[\(index)].partition: must be a partition number (0 or more)")
                }
                partition = number
            default:
                continue  // REST Proxy ignores what it does not know
            }
        }
        let size = (key?.readableBytes ?? 0) + (value?.readableBytes ?? 0)
        if size > self.maxEventBytes { return .tooLarge(bytes: size) }
        return .event(
            Event(
                value: value ?? ByteBuffer(), key: key, valueIsJSON: self.format == .json && value != nil, partition: partition,
                valueIsNull: value == nil))
    }

    /// A key or value: nil for JSON null; the JSON text (json) or the decoded base64 (binary).
    private func payload(_ range: Range<Int>, _ name: String) throws(ConfluentREST.RequestError) -> ByteBuffer? {
        let first = self.bytes[range.lowerBound]
        if first == UInt8(ascii: "n") { return nil }
        switch self.format {
        case .binary:
            guard first == UInt8(ascii: "\""), let (text, _) = self.scanner.decodeString(range.lowerBound) else {
                throw .init(status: 422, errorCode: ConfluentREST.invalidPayloadErrorCode, "\(name): binary data must be a base64 string")
            }
            guard let decoded = text.withUnsafeBytes({ Base64.decode($0) }) else {
                throw .init(status: 422, errorCode: ConfluentREST.invalidPayloadErrorCode, "\(name): not valid base64")
            }
            return ByteBuffer(bytes: decoded)
        default:
            return self.body.getSlice(at: self.body.readerIndex + range.lowerBound, length: range.count)
        }
    }
}
