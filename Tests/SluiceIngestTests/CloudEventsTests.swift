import NIOCore
import SluiceConfig
import SluiceCore
@testable import SluiceIngest
import Testing

@Suite struct CloudEventsTests {
    static let required: [(name: String, value: String)] = [
        ("ce-specversion", "1.0"), ("ce-id", "e-1"), ("ce-source", "/shop"), ("ce-type", "com.example.order"),
    ]

    static func header(_ event: Event, _ name: String) -> String? { event.headers.first { $0.name == name }?.value }

    @Test func contentTypesChooseTheMode() {
        #expect(CloudEvents.ContentMode(contentType: "application/cloudevents+json; charset=utf-8") == .structured)
        #expect(CloudEvents.ContentMode(contentType: "application/cloudevents-batch+json") == .batch)
        #expect(CloudEvents.ContentMode(contentType: "application/cloudevents+avro") == .unsupportedFormat("application/cloudevents+avro"))
        #expect(CloudEvents.ContentMode(contentType: "application/json") == .binary)
        #expect(CloudEvents.ContentMode(contentType: nil) == .binary)
    }

    @Test func binaryModeBecomesKafkaBinaryMode() throws {
        let headers = Self.required + [("CE-Subject", "a%20b%25%C3%A9"), ("ce-partitionkey", "cust-1"), ("ce-tenant", "acme"), ("x-other", "1")]
        let event = try CloudEvents.binary(
            headers: headers, contentType: "application/json", body: ByteBuffer(string: #"{"n":1}"#), encoding: .kafkaBinary)
        #expect(String(buffer: event.value) == #"{"n":1}"#)
        #expect(event.key.map { String(buffer: $0) } == "cust-1", "partitionkey is the record key")
        #expect(Self.header(event, "ce_subject") == "a b%é", "header values are percent-decoded")
        #expect(Self.header(event, "ce_tenant") == "acme")
        #expect(Self.header(event, "ce_id") == "e-1" && Self.header(event, "ce_specversion") == "1.0")
        #expect(Self.header(event, "content-type") == "application/json")
        #expect(Self.header(event, "ce_partitionkey") == "cust-1" && Self.header(event, "ce_datacontenttype") == nil)
        #expect(!event.headers.contains { $0.name.contains("other") })
    }

    @Test func aMissingOrWrongAttributeIsNamed() {
        for missing in ["ce-id", "ce-source", "ce-specversion", "ce-type"] {
            let headers = Self.required.filter { $0.name != missing }
            #expect(throws: IngestError(.invalidCloudEvent, "missing required attribute: \(missing.dropFirst(3))")) {
                try CloudEvents.binary(headers: headers, contentType: nil, body: ByteBuffer(), encoding: .kafkaBinary)
            }
        }
        let old = Self.required.map { $0.name == "ce-specversion" ? ($0.name, "0.3") : $0 }
        #expect(throws: IngestError(.invalidCloudEvent, "specversion \"0.3\" is not supported; send 1.0")) {
            try CloudEvents.binary(headers: old, contentType: nil, body: ByteBuffer(), encoding: .kafkaBinary)
        }
        #expect(throws: IngestError.self) {
            try CloudEvents.binary(headers: Self.required + [("ce-Bad_Name", "x")], contentType: nil, body: ByteBuffer(), encoding: .kafkaBinary)
        }
        #expect(throws: IngestError.self) {
            try CloudEvents.binary(headers: Self.required + [("ce-subject", "%zz")], contentType: nil, body: ByteBuffer(), encoding: .kafkaBinary)
        }
    }

    @Test func structuredEventsBecomeKafkaBinaryMode() throws {
        let json = try CloudEvents.structured(
            ByteBuffer(string: #"{"specversion":"1.0","id":"1","source":"/s","type":"t","count":3,"data":{"n":[1, 2]}}"#), encoding: .kafkaBinary)
        #expect(String(buffer: json.value) == #"{"n":[1, 2]}"#)
        #expect(Self.header(json, "content-type") == "application/json", "JSON data without a datacontenttype is application/json")
        #expect(Self.header(json, "ce_count") == "3")
        let text = try CloudEvents.structured(
            ByteBuffer(string: #"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi \"there\""}"#),
            encoding: .kafkaBinary)
        #expect(String(buffer: text.value) == #"hi "there""#, "a string of a non-JSON type is its text")
        let binary = try CloudEvents.structured(
            ByteBuffer(string: #"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAH/"}"#), encoding: .kafkaBinary)
        #expect(Array(buffer: binary.value) == [0, 1, 255])
        #expect(throws: IngestError.self) {
            try CloudEvents.structured(
                ByteBuffer(string: #"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#), encoding: .kafkaBinary)
        }
    }

    @Test func sinksWithoutHeadersGetTheStructuredEvent() throws {
        let input = #"{"specversion":"1.0","id":"1","source":"/s","type":"t","partitionkey":"k","data":{"n":1}}"#
        let structured = try CloudEvents.structured(ByteBuffer(string: input), encoding: .structuredJSON)
        #expect(String(buffer: structured.value) == input, "the event as sent")
        #expect(structured.key.map { String(buffer: $0) } == "k" && structured.headers.isEmpty)

        let fromBinary = try CloudEvents.binary(
            headers: Self.required, contentType: "application/json", body: ByteBuffer(string: #"{"n":1}"#), encoding: .structuredJSON)
        #expect(String(buffer: fromBinary.value)
            == #"{"specversion":"1.0","id":"e-1","source":"/shop","type":"com.example.order","datacontenttype":"application/json","data":{"n":1}}"#)
        let bytes = try CloudEvents.binary(
            headers: Self.required, contentType: "application/octet-stream", body: ByteBuffer(bytes: [0, 1, 255]), encoding: .structuredJSON)
        #expect(String(buffer: bytes.value).hasSuffix(#","data_base64":"AAH/"}"#))
    }

    @Test func aBatchHasAResultPerEventAndABadOneFailsAlone() throws {
        let body = #"[{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1},{"specversion":"1.0","id":"2","type":"t"},7]"#
        let results = try CloudEvents.batch(ByteBuffer(string: body), encoding: .kafkaBinary, maxEvents: 10)
        #expect(results.count == 3)
        if case .success(let event) = results[0] { #expect(String(buffer: event.value) == "1") } else { Issue.record("event 0 failed") }
        if case .failure(let error) = results[1] {
            #expect(error.message == "event 1: missing required attribute: source")
        } else {
            Issue.record("event 1 has no source")
        }
        if case .success = results[2] { Issue.record("a number is not an event") }
        #expect(throws: IngestError.tooManyEvents(limit: 2)) { try CloudEvents.batch(ByteBuffer(string: body), encoding: .kafkaBinary, maxEvents: 2) }
        #expect(throws: IngestError.self) { try CloudEvents.batch(ByteBuffer(string: "{}"), encoding: .kafkaBinary, maxEvents: 2) }
    }
}
