import NIOCore
import SluiceConfig
import SluiceCore

/// CloudEvents 1.0 over HTTP (binary, structured and batched content modes), written out in the
/// Kafka protocol binding's binary mode (`ce_` headers, `content-type`, the data as the value,
/// `partitionkey` as the key) or, for sinks without headers, as the structured JSON event.
public enum CloudEvents {
    /// How an HTTP request carries its events (its Content-Type).
    public enum ContentMode: Equatable, Sendable {
        /// Attributes in `ce-*` headers, the body is the data.
        case binary
        /// `application/cloudevents+json`: one event, attributes and data in a JSON object.
        case structured
        /// `application/cloudevents-batch+json`: a JSON array of structured events.
        case batch
        /// `application/cloudevents+FORMAT` for a format other than JSON.
        case unsupportedFormat(String)

        public init(contentType: String?) {
            let media = MediaType.essence(of: contentType)
            switch media {
            case "application/cloudevents+json": self = .structured
            case "application/cloudevents-batch+json": self = .batch
            default:
                if media.hasPrefix("application/cloudevents") {
                    self = .unsupportedFormat(media)
                } else {
                    self = .binary
                }
            }
        }
    }

    static let required = ["id", "source", "specversion", "type"]

    /// One event from a binary-mode request: `ce-*` headers (values percent-decoded, as the HTTP
    /// binding writes them), Content-Type as `datacontenttype`, the body as the data.
    public static func binary(
        headers: [(name: String, value: String)], contentType: String?, body: ByteBuffer, encoding: CloudEventsEncoding
    ) throws(IngestError) -> Event {
        var attributes: [(name: String, value: String)] = []
        for (name, value) in headers {
            let lower = name.lowercased()
            guard lower.hasPrefix("ce-") else { continue }
            let attribute = String(lower.dropFirst(3))
            try Self.checkName(attribute)
            guard let decoded = PercentEncoding.decode(Array(value.utf8)) else {
                throw IngestError(.invalidCloudEvent, "header \(name): a malformed percent-encoding or invalid UTF-8")
            }
            guard !attributes.contains(where: { $0.name == attribute }) else {
                throw IngestError(.invalidCloudEvent, "attribute \(attribute) is given twice")
            }
            attributes.append((attribute, decoded))
        }
        if let contentType, !attributes.contains(where: { $0.name == "datacontenttype" }) {
            attributes.append(("datacontenttype", contentType))
        }
        try Self.checkRequired(attributes)
        let data: Data? = body.readableBytes == 0 ? nil : .bytes(body)
        return try Self.event(attributes: attributes, data: data, structured: nil, encoding: encoding)
    }

    /// One structured-mode event: the JSON object `bytes` (already read whole).
    public static func structured(_ body: ByteBuffer, encoding: CloudEventsEncoding) throws(IngestError) -> Event {
        var failure: IngestError?
        var event: Event?
        body.withUnsafeReadableBytes { bytes in
            do throws(IngestError) {
                do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(bytes) } catch {
                    throw IngestError.invalidJSON(line: nil, error)
                }
                let scanner = JSONScanner(bytes: bytes)
                let start = scanner.skipSpace(0)
                let end = (try? scanner.skipValue(start, depth: 0)) ?? bytes.count
                event = try Self.structuredEvent(scanner, start..<end, in: body, encoding: encoding)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return event!
    }

    /// A batch: one result per array element, in order (a bad element fails alone). Throws when
    /// the body is not a JSON array or holds more than `maxEvents`.
    public static func batch(_ body: ByteBuffer, encoding: CloudEventsEncoding, maxEvents: Int) throws(IngestError) -> [Result<Event, IngestError>] {
        var failure: IngestError?
        var results: [Result<Event, IngestError>] = []
        body.withUnsafeReadableBytes { bytes in
            do throws(IngestError) {
                let elements: [Range<Int>]?
                do throws(JSONScanner.SyntaxError) { elements = try JSONScanner.topLevelArrayElements(bytes) } catch {
                    throw IngestError.invalidJSON(line: nil, error)
                }
                guard let elements else { throw IngestError(.invalidCloudEvent, "a batch is a JSON array of structured events") }
                guard elements.count <= maxEvents else { throw IngestError.tooManyEvents(limit: maxEvents) }
                let scanner = JSONScanner(bytes: bytes)
                results.reserveCapacity(elements.count)
                for (index, range) in elements.enumerated() {
                    do throws(IngestError) {
                        results.append(.success(try Self.structuredEvent(scanner, range, in: body, encoding: encoding)))
                    } catch {
                        results.append(.failure(IngestError(error.code, "event \(index): \(error.message)")))
                    }
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return results
    }

    // MARK: - structured events

    private static func structuredEvent(
        _ scanner: JSONScanner, _ range: Range<Int>, in body: ByteBuffer, encoding: CloudEventsEncoding
    ) throws(IngestError) -> Event {
        let bytes = scanner.bytes
        guard bytes[range.lowerBound] == UInt8(ascii: "{") else {
            throw IngestError(.invalidCloudEvent, "a structured event is a JSON object")
        }
        var attributes: [(name: String, value: String)] = []
        var data: Data?
        for member in scanner.members(ofObjectAt: range.lowerBound) {
            let name = String(decoding: member.name, as: UTF8.self)
            let first = bytes[member.value.lowerBound]
            switch name {
            case "data":
                guard data == nil else { throw IngestError(.invalidCloudEvent, "an event has data or data_base64, not both") }
                if first == UInt8(ascii: "n") { continue }
                data = .json(body.getSlice(at: body.readerIndex + member.value.lowerBound, length: member.value.count)!)
            case "data_base64":
                guard data == nil else { throw IngestError(.invalidCloudEvent, "an event has data or data_base64, not both") }
                guard first == UInt8(ascii: "\""), let (text, _) = scanner.decodeString(member.value.lowerBound),
                    let decoded = text.withUnsafeBytes({ Base64.decode($0) })
                else {
                    throw IngestError(.invalidCloudEvent, "data_base64 must be a base64 string")
                }
                data = .bytes(ByteBuffer(bytes: decoded))
            default:
                try Self.checkName(name)
                if first == UInt8(ascii: "n") { continue }  // an absent attribute
                let value: String
                if first == UInt8(ascii: "\"") {
                    guard let (decoded, _) = scanner.decodeString(member.value.lowerBound) else {
                        throw IngestError(.invalidCloudEvent, "attribute \(name): not a valid string")
                    }
                    value = String(decoding: decoded, as: UTF8.self)
                } else if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
                    throw IngestError(.invalidCloudEvent, "attribute \(name): must be a string, number or boolean")
                } else {
                    value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[member.value]), as: UTF8.self)
                }
                attributes.append((name, value))
            }
        }
        try Self.checkRequired(attributes)
        // The JSON format: data that is a JSON value, with no datacontenttype, is application/json.
        if case .json = data, !attributes.contains(where: { $0.name == "datacontenttype" }) {
            attributes.append(("datacontenttype", "application/json"))
        }
        let structured = body.getSlice(at: body.readerIndex + range.lowerBound, length: range.count)
        return try Self.event(attributes: attributes, data: data, structured: structured, encoding: encoding)
    }

    /// An event's data: bytes as sent (binary mode, data_base64), or a JSON value (`data`).
    enum Data {
        case bytes(ByteBuffer)
        case json(ByteBuffer)
    }

    static func isJSON(_ contentType: String?) -> Bool {
        let media = MediaType.essence(of: contentType)
        return media == "application/json" || media == "text/json" || media.hasSuffix("+json")
    }

    private static func event(
        attributes: [(name: String, value: String)], data: Data?, structured: ByteBuffer?, encoding: CloudEventsEncoding
    ) throws(IngestError) -> Event {
        let contentType = attributes.first { $0.name == "datacontenttype" }?.value
        let key = attributes.first { $0.name == "partitionkey" }.map { ByteBuffer(string: $0.value) }
        switch encoding {
        case .kafkaBinary:
            // Kafka protocol binding, binary mode: ce_ headers, content-type, the data as the value.
            var headers: [EventHeader] = []
            headers.reserveCapacity(attributes.count)
            // Every attribute as a header (partitionkey too, beside the key), as the binding says.
            for (name, value) in attributes where name != "datacontenttype" {
                headers.append(EventHeader(name: "ce_" + name, value: value))
            }
            if let contentType { headers.append(EventHeader(name: "content-type", value: contentType)) }
            var value = ByteBuffer()
            var valueIsJSON = false
            switch data {
            case .bytes(let bytes)?:
                value = bytes
            case .json(let json)?:
                // A JSON string as data of a non-JSON type is that text; any other JSON value, its JSON.
                if !Self.isJSON(contentType), json.getInteger(at: json.readerIndex, as: UInt8.self) == UInt8(ascii: "\""),
                    let text = json.withUnsafeReadableBytes({ JSONScanner(bytes: $0).decodeString(0)?.0 })
                {
                    value = ByteBuffer(bytes: text)
                } else {
                    value = json
                    valueIsJSON = true
                }
            case nil:
                break
            }
            return Event(value: value, key: key, headers: headers, valueIsJSON: valueIsJSON)
        case .structuredJSON:
            if let structured { return Event(value: structured, key: key, valueIsJSON: true) }
            // From binary mode: the JSON format's object, data as JSON when it is, else base64.
            var out: [UInt8] = [UInt8(ascii: "{")]
            var first = true
            for (name, value) in attributes {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONString.append(Array(name.utf8), to: &out)
                out.append(UInt8(ascii: ":"))
                JSONString.append(Array(value.utf8), to: &out)
            }
            if case .bytes(let bytes)? = data {
                let json = Self.isJSON(contentType) && bytes.withUnsafeReadableBytes { raw in (try? JSONScanner.validate(raw)) != nil }
                out.append(contentsOf: Array(json ? #","data":"#.utf8 : #","data_base64":""#.utf8))
                bytes.withUnsafeReadableBytes { raw in
                    if json { out.append(contentsOf: raw) } else { Base64.append(raw, to: &out) }
                }
                if !json { out.append(UInt8(ascii: "\"")) }
            }
            out.append(UInt8(ascii: "}"))
            return Event(value: ByteBuffer(bytes: out), key: key, valueIsJSON: true)
        }
    }

    // MARK: - rules

    /// Attribute names: lower-case ASCII letters and digits (CloudEvents 1.0, "Attribute Naming Convention").
    static func checkName(_ name: String) throws(IngestError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) }) else {
            throw IngestError(.invalidCloudEvent, "attribute name \"\(name)\": only a-z and 0-9")
        }
    }

    static func checkRequired(_ attributes: [(name: String, value: String)]) throws(IngestError) {
        for name in Self.required {
            guard let value = attributes.first(where: { $0.name == name })?.value, !value.isEmpty else {
                throw IngestError(.invalidCloudEvent, "missing required attribute: \(name)")
            }
        }
        let version = attributes.first { $0.name == "specversion" }!.value
        guard version == "1.0" else {
            throw IngestError(.invalidCloudEvent, "specversion \"\(version)\" is not supported; send 1.0")
        }
    }
}
