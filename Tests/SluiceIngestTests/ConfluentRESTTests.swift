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
        #expect(ConfluentREST.errorCode(of: DeliveryFailure(.schemaViolation, "line 1: /: type")) == 42206, "an event the route's schema refuses is a bad payload")
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

@Suite struct ConfluentV3Tests {
    static func record(_ text: String, maxEventBytes: Int = 1000) -> Result<ConfluentREST.V3Record, ConfluentREST.RecordError> {
        ConfluentREST.decodeV3Record(ByteBuffer(string: text), maxEventBytes: maxEventBytes, now: 1_000)
    }

    @Test func pathsNameClusterTopicAndOperation() {
        #expect(ConfluentREST.v3Target("/v3/clusters/lkc-1/topics/orders/records") == .init(clusterID: "lkc-1", topic: "orders", operation: .records))
        #expect(ConfluentREST.v3Target("/v3/clusters/lkc-1/topics/orders/records:batch")?.operation == .batch)
        for path in ["/v3/clusters/lkc-1/topics/orders", "/v3/clusters//topics/orders/records", "/v3/clusters/c/topics/t/records/x", "/topics/orders"] {
            #expect(ConfluentREST.v3Target(Substring(path)) == nil, "\(path)")
        }
    }

    @Test func recordsTakeBinaryJSONAndStringDataHeadersPartitionAndTimestamp() throws {
        let record = try Self.record(
            #"{"partition_id":2,"timestamp":"2026-01-02T03:04:05.678+01:00","headers":[{"name":"h","value":"aGk="},{"name":"empty"}],"key":{"type":"STRING","data":"k é"},"value":{"type":"JSON","data":{"a": [1]}}}"#
        ).get()
        #expect(record.event.partition == 2)
        #expect(record.timestamp == RFC3339.milliseconds("2026-01-02T02:04:05.678Z") && record.event.timestampMilliseconds == record.timestamp)
        #expect(record.event.headers == [EventHeader(name: "h", value: "hi"), EventHeader(name: "empty", value: "")])
        #expect(record.event.key.map { String(buffer: $0) } == "k é" && record.key?.type == .string && record.key?.size == 4)
        #expect(String(buffer: record.event.value) == #"{"a": [1]}"# && record.value?.type == .json && record.event.valueIsJSON)
        let binary = try Self.record(#"{"value":{"type":"BINARY","data":"AAH/"}}"#).get()
        #expect(Array(buffer: binary.event.value) == [0, 1, 255] && binary.key == nil && binary.timestamp == 1_000, "now, when none is given")
        let tombstone = try Self.record(#"{"key":{"type":"STRING","data":"k"}}"#).get()
        #expect(tombstone.event.valueIsNull && tombstone.value == nil)
        // Found by the fuzz target: a member given twice counts once, the last one, whole.
        let twice = try Self.record(#"{"value":{"type":"BINARY","data":"AAH/"},"value":{"type":"JSON"},"key":{"type":"STRING","data":"k"},"key":null}"#).get()
        #expect(twice.event.valueIsNull && twice.event.value.readableBytes == 0 && twice.value?.size == 0 && twice.value?.type == .json)
        #expect(twice.event.key == nil && twice.key == nil)
    }

    @Test func aRecordThatCannotBeWrittenSaysWhy() {
        func message(_ text: String) -> String? {
            if case .failure(let error) = Self.record(text, maxEventBytes: 10) { return "\(error.errorCode) \(error.message)" }
            return nil
        }
        #expect(message(#"{"value":{"data":1}}"#)?.hasPrefix("400 value: no type needs Schema Registry") == true)
        #expect(message(#"{"value":{"type":"AVRO","data":1}}"#)?.hasPrefix("400 value: type AVRO needs Schema Registry") == true)
        #expect(message(#"{"value":{"type":"JSON","data":1,"schema_id":3}}"#)?.hasPrefix("400 value: type JSON") == true)
        #expect(message(#"{"value":{"type":"BINARY","data":"@@"}}"#) == "400 value.data: type BINARY takes a base64 string")
        #expect(message(#"{"value":{"type":"STRING","data":1}}"#) == "400 value.data: type STRING takes a string")
        #expect(message(#"{"timestamp":"yesterday"}"#)?.hasPrefix("400 timestamp") == true)
        #expect(message(#"{"headers":[{"name":"h","value":"/w=="}]}"#)?.hasPrefix("400 headers: this gateway carries header values as UTF-8") == true)
        #expect(message(#"{"value":{"type":"STRING","data":"more than ten bytes"}}"#)?.hasPrefix("413 ") == true)
        #expect(message("[1]") == "400 a record is a JSON object")
    }

    @Test func batchesNeedDistinctIdsAndSomeEntries() throws {
        func error(_ text: String, max: Int = 10) -> String? {
            do {
                _ = try ConfluentREST.decodeV3Batch(ByteBuffer(string: text), maxEntries: max, maxEventBytes: 100, now: 0)
                return nil
            } catch {
                return "\(error.status) \(error.errorCode) \(error.message)"
            }
        }
        #expect(error(#"{"entries":[]}"#) == "422 42208 Empty batch.")
        #expect(error(#"{}"#) == "422 42208 Request body is empty. Data is required.")
        #expect(error(#"{"entries":[{"id":"a"},{"id":"a"}]}"#) == "422 42208 Batch entry IDs are not distinct.")
        #expect(error(#"{"entries":[{"value":{"type":"STRING","data":"x"}}]}"#) == "422 42208 Batch entry identifier is not a valid string.")
        #expect(error(#"{"entries":[{"id":"a"},{"id":"b"}]}"#, max: 1)?.hasPrefix("422 42208 Too many entries") == true)
        let entries = try ConfluentREST.decodeV3Batch(
            ByteBuffer(string: #"{"entries":[{"id":"a","value":{"type":"STRING","data":"x"}},{"id":"b","value":{"type":"AVRO"}}]}"#),
            maxEntries: 10, maxEventBytes: 100, now: 0)
        #expect(entries.map(\.id) == ["a", "b"])
        if case .failure = entries[0].record { Issue.record("entry a is good") }
        if case .success = entries[1].record { Issue.record("entry b needs a schema") }
    }

    @Test func theSplitterFindsEachRecordWhereverTheReadsCut() throws {
        let stream = #"{"a":"}{\"x"} {"b":[1,{"c":2}]}"# + "\n" + #"{"d":"\\"}"#
        let bytes = Array(stream.utf8)
        for size in 1...bytes.count {
            var splitter = ConcatenatedJSONSplitter(maxValueBytes: 100)
            var values: [ByteBuffer] = []
            var offset = 0
            while offset < bytes.count {
                try splitter.feed(ByteBuffer(bytes: bytes[offset..<min(bytes.count, offset + size)]), into: &values)
                offset += size
            }
            try splitter.finish()
            #expect(values.map { String(buffer: $0) } == [#"{"a":"}{\"x"}"#, #"{"b":[1,{"c":2}]}"#, #"{"d":"\\"}"#], "reads of \(size)")
        }
        var values: [ByteBuffer] = []
        var splitter = ConcatenatedJSONSplitter(maxValueBytes: 8)
        #expect(throws: ConcatenatedJSONSplitter.SplitError.tooLarge) { try splitter.feed(ByteBuffer(string: #"{"a":"0123456789"#), into: &values) }
        splitter = ConcatenatedJSONSplitter(maxValueBytes: 100)
        #expect(throws: ConcatenatedJSONSplitter.SplitError.notAnObject) { try splitter.feed(ByteBuffer(string: #"{"a":1} 7"#), into: &values) }
        #expect(values.map { String(buffer: $0) } == [#"{"a":1}"#], "the record before the bad byte is kept")
        splitter = ConcatenatedJSONSplitter(maxValueBytes: 100)
        try splitter.feed(ByteBuffer(string: #"{"a":"#), into: &values)
        #expect(throws: ConcatenatedJSONSplitter.SplitError.truncated) { try splitter.finish() }
    }

    @Test func timestampsReadAndWriteRFC3339() {
        #expect(RFC3339.milliseconds("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.milliseconds("2026-12-03T10:15:30.1Z") == 1_796_292_930_100)
        #expect(RFC3339.milliseconds("2026-12-03T11:15:30.123456+01:00") == 1_796_292_930_123)
        #expect(RFC3339.string(milliseconds: 1_796_292_930_123) == "2026-12-03T10:15:30.123Z")
        #expect(RFC3339.string(milliseconds: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        for text in ["2026-12-03", "2026-13-03T10:15:30Z", "2026-12-03T10:15:30", "2026-12-03T10:15:30.Z", "2026-12-03T10:15:30Zx"] {
            #expect(RFC3339.milliseconds(text) == nil, "\(text)")
        }
        for milliseconds: Int64 in [0, 1, 999, 86_400_000, 1_796_292_930_123, 4_102_444_800_000] {
            #expect(RFC3339.milliseconds(RFC3339.string(milliseconds: milliseconds)) == milliseconds)
        }
    }
}
