import NIOCore
import SluiceCore
@testable import SluiceIngest
import Testing

@Suite struct ConfluentRESTTests {
    static func decode(
        _ text: String, _ format: ConfluentREST.V2Format = .json, partition: Int32? = nil, maxEvents: Int = 100, maxEventBytes: Int = 1000
    ) throws(ConfluentREST.RequestError) -> [ConfluentREST.V2Record] {
        try ConfluentREST.decodeV2(ByteBuffer(string: text), format: format, partition: partition, maxEvents: maxEvents, maxEventBytes: maxEventBytes)
    }

    static func events(_ records: [ConfluentREST.V2Record]) -> [Event] {
        records.compactMap {
            if case .event(let event) = $0 { return event }
            return nil
        }
    }

    static func error(_ text: String, _ format: ConfluentREST.V2Format = .json, maxEvents: Int = 100) -> ConfluentREST.RequestError? {
        do {
            _ = try Self.decode(text, format, maxEvents: maxEvents)
            return nil
        } catch {
            return error
        }
    }

    @Test func pathsNameATopicAndOptionallyAPartition() {
        #expect(ConfluentREST.v2Target("/topics/orders") == .init(topic: "orders", partition: nil))
        #expect(ConfluentREST.v2Target("/topics/orders/partitions/3") == .init(topic: "orders", partition: 3))
        for path in ["/", "/topics", "/topics/", "/topics/orders/partitions", "/topics/orders/partitions/-1", "/topics/orders/partitions/x",
                     "/topics/orders/extra", "/v3/clusters/c/topics/t/records", "topics/orders"] {
            #expect(ConfluentREST.v2Target(Substring(path)) == nil, "\(path)")
        }
    }

    @Test func contentTypesChooseTheEmbeddedFormat() {
        #expect(ConfluentREST.V2Format(contentType: "application/vnd.kafka.json.v2+json") == .json)
        #expect(ConfluentREST.V2Format(contentType: "Application/VND.kafka.binary.v2+json; charset=utf-8") == .binary)
        #expect(ConfluentREST.V2Format(contentType: "application/vnd.kafka.avro.v2+json") == .needsSchema("avro"))
        #expect(ConfluentREST.V2Format(contentType: "application/vnd.kafka.protobuf.v2+json") == .needsSchema("protobuf"))
        #expect(ConfluentREST.V2Format(contentType: "application/json") == .unsupported)
        #expect(ConfluentREST.V2Format(contentType: nil) == .unsupported)
        #expect(ConfluentREST.acceptsV2(nil))
        #expect(ConfluentREST.acceptsV2("application/vnd.kafka.v2+json, application/vnd.kafka+json; q=0.9"))
        #expect(!ConfluentREST.acceptsV2("text/html"))
    }

    @Test func jsonRecordsKeepTheirJSONTextAndNullValuesAreTombstones() throws {
        let records = try Self.decode(#"{"records":[{"key":"user-1","value":{"a": [1, 2]}},{"value":7,"partition":2},{"key":{"k":1},"value":null}],"value_schema":"ignored"}"#)
        let events = Self.events(records)
        #expect(events.count == 3)
        #expect(events[0].key.map { String(buffer: $0) } == #""user-1""#, "a JSON string key is written as JSON, quotes and all")
        #expect(String(buffer: events[0].value) == #"{"a": [1, 2]}"#, "the value's bytes exactly as sent")
        #expect(events[0].valueIsJSON && !events[0].valueIsNull && events[0].partition == nil)
        #expect(events[1].key == nil && String(buffer: events[1].value) == "7" && events[1].partition == 2)
        #expect(events[2].valueIsNull && events[2].value.readableBytes == 0 && events[2].key.map { String(buffer: $0) } == #"{"k":1}"#)
    }

    @Test func binaryRecordsAreBase64AndThePathsPartitionIsTheDefault() throws {
        let records = try Self.decode(
            #"{"records":[{"key":"a2V5","value":"AAH/"},{"value":"aGk=","partition":0}]}"#, .binary, partition: 5)
        let events = Self.events(records)
        #expect(events.count == 2)
        #expect(events[0].key.map { Array(buffer: $0) } == Array("key".utf8))
        #expect(Array(buffer: events[0].value) == [0x00, 0x01, 0xFF])
        #expect(!events[0].valueIsJSON)
        #expect(events[0].partition == 5, "the path's partition")
        #expect(events[1].partition == 0, "the record's own partition wins")
        #expect(String(buffer: events[1].value) == "hi")
    }

    @Test func aRecordOverMaxEventBytesFailsAloneAndTheOthersStay() throws {
        let big = String(repeating: "x", count: 2000)
        let records = try Self.decode(#"{"records":[{"value":1},{"value":"\#(big)"},{"value":3}]}"#)
        #expect(records.count == 3)
        guard case .tooLarge(let bytes) = records[1] else {
            Issue.record("expected the second record to be too large")
            return
        }
        #expect(bytes == 2002)
        #expect(Self.events(records).count == 2)
    }

    @Test func wholeRequestErrorsAreREST_ProxysStatusesAndCodes() {
        #expect(Self.error("{not json")?.status == 400)
        #expect(Self.error("[1,2]")?.status == 422)
        #expect(Self.error(#"{"records":[]}"#)?.message == "records: must be a non-empty array")
        #expect(Self.error(#"{"value_schema":"x"}"#)?.status == 422)
        #expect(Self.error(#"{"records":[1]}"#)?.status == 422)
        #expect(Self.error(#"{"records":[{"value":1,"partition":-2}]}"#)?.message.hasPrefix("records[0].partition") == true)
        let notBase64 = Self.error(#"{"records":[{"value":"not base64!"}]}"#, .binary)
        #expect(notBase64?.status == 422 && notBase64?.errorCode == ConfluentREST.invalidPayloadErrorCode)
        #expect(Self.error(#"{"records":[{"value":{"a":1}}]}"#, .binary)?.errorCode == ConfluentREST.invalidPayloadErrorCode)
        #expect(Self.error(#"{"records":[{"value":1},{"value":2}]}"#, maxEvents: 1)?.status == 413)
    }

    @Test func recordFailuresGetREST_ProxysCodes() {
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(code: "kafka_topic_authorization_failed", message: "", isRetryable: false, httpStatus: 403)) == 40301)
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(code: "kafka_sasl_authentication_failed", message: "", isRetryable: false, httpStatus: 401)) == 40101)
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(code: "kafka_unknown_partition", message: "", isRetryable: false, httpStatus: 404)) == 40402)
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(code: "kafka_unknown_topic_or_part", message: "", isRetryable: false, httpStatus: 404)) == 40401)
        #expect(ConfluentREST.errorCode(of: .queueFull(sink: "s")) == 50003)
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(code: "kafka_msg_size_too_large", message: "", isRetryable: false, httpStatus: 413)) == 50002)
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(.eventTooLarge, "big")) == 42206)
        #expect(ConfluentREST.errorCode(status: 401) == 40101 && ConfluentREST.errorCode(status: 403) == 40301)
        #expect(ConfluentREST.errorCode(status: 429) == 429)
    }
}

@Suite struct Base64DecodingTests {
    static func decode(_ text: String) -> [UInt8]? { Array(text.utf8).withUnsafeBytes { Base64.decode($0) } }

    @Test func decodesWhatTheEncoderWrites() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            var encoded: [UInt8] = []
            bytes.withUnsafeBytes { Base64.append($0, to: &encoded) }
            #expect(encoded.withUnsafeBytes { Base64.decode($0) } == bytes)
        }
    }

    @Test func refusesWhatIsNotPaddedStandardBase64() {
        for text in ["a", "abc", "ab=c", "a===", "ab-_", "YQ==YQ==", "YQ= =", "Y Q=="] {
            #expect(Self.decode(text) == nil, "\(text)")
        }
        #expect(Self.decode("YQ==") == Array("a".utf8))
        #expect(Self.decode("YWI=") == Array("ab".utf8))
    }
}
