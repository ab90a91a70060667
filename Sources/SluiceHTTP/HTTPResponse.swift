import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceCore
import SluicePolicy

/// A response. Sluice's own responses are small JSON documents, built whole in `body`; a
/// proxied response streams its body from the upstream instead.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// A body written part by part after the head, each part only once the previous one has
    /// left for the client (so a slow client slows the source). When set, `body` is not sent
    /// and `headers` keep their own content-length (none: chunked over HTTP/1.1).
    public var stream: (any AsyncSequence<ByteBuffer, any Error> & Sendable)?
    /// The stream reads the rest of the request body itself while it is written (full duplex):
    /// the listener neither drains the body nor keeps the HTTP/1.1 connection afterwards.
    public var readsRequestBody = false
    /// For such a response: the events and body bytes it hands over, known when it ends (what a
    /// rate limit in events or bytes charges then, as for a gRPC stream).
    public var bodyTally: StreamTally?
    /// What the route's handler and policies tell the listener's observers (metrics, access log);
    /// never sent.
    public var facts = ExchangeFacts()
    /// Trailer fields sent after a streamed body (an upstream's answer's, such as gRPC's
    /// `grpc-status`): read once the body has ended. HTTP/1.1 carries them only in a chunked body.
    public var trailers: ResponseTrailers?
    /// A proxied request whose body is still being sent upstream while this response is
    /// written (full duplex): the listener takes the body back from it once the response is out.
    var requestBodyHandback: RequestBodyHandback?
    /// For Sluice's own error answers: the catalogue code and message (what a gRPC caller is
    /// told instead, see `asGRPCStatus`).
    var ownError: (code: String, message: String)?
    /// For a `101 Switching Protocols` from an upstream: the upstream connection the client's
    /// connection is joined to once the 101 has gone out (HTTP/1.1 only).
    var tunnel: UpgradeTunnel?

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: HTTPResponseStatus, _ body: JSONWriter, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        // The head built as one list, with its length (what the listener would add): NIO's
        // replaceOrAdd and add rebuild the list and walk each name, several times the work.
        var fields: [(String, String)] = []
        fields.reserveCapacity(headers.count + 2)
        for (name, value) in headers where !FieldName.equals(name, "content-type") && !FieldName.equals(name, "content-length") {
            fields.append((name, value))
        }
        fields.append(("content-type", "application/json"))
        fields.append(("content-length", String(body.bytes.count)))
        return HTTPResponse(status: status, headers: HTTPHeaders(fields), body: ByteBuffer(bytes: body.bytes))
    }

    /// `{"error":{"code":…,"message":…}}` with the code's HTTP status.
    public static func error(_ code: ErrorCode, message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        .error(HTTPResponseStatus(statusCode: code.httpStatus), code: code.code, message: message, headers: headers)
    }

    /// `{"error":{"code":…,"message":…}}`
    public static func error(_ status: HTTPResponseStatus, code: String, message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var json = JSONWriter()
        json.object {
            $0.key("error")
            $0.object {
                $0.field("code", code)
                $0.field("message", message)
            }
        }
        var response = HTTPResponse.json(status, json, headers: headers)
        response.ownError = (code, message)
        return response
    }

    /// Whether a request is a gRPC call (`content-type: application/grpc…`).
    static func isGRPC(_ request: HTTPRequest) -> Bool {
        guard let type = request.header("content-type")?.lowercased() else { return false }
        return type == "application/grpc" || type.hasPrefix("application/grpc+") || type.hasPrefix("application/grpc;")
    }

    /// Sluice's own error as a gRPC client reads one, as Envoy answers gRPC calls it refuses:
    /// HTTP 200, no message, and the catalogue's gRPC status (or, for a code outside it, gRPC's
    /// mapping of the HTTP status) with the message in the trailers. Other headers (Retry-After,
    /// RateLimit-*) stay.
    func asGRPCStatus() -> HTTPResponse {
        guard let (code, message) = self.ownError else { return self }
        let status = ErrorCode.named(code)?.grpcStatus ?? GRPCStatusCode(httpStatus: Int(self.status.code))
        var headers = self.headers
        headers.replaceOrAdd(name: "content-type", value: "application/grpc")
        var response = HTTPResponse(status: .ok, headers: headers)
        response.facts = self.facts
        let trailers = ResponseTrailers()
        trailers.set(["grpc-status": String(status.rawValue), "grpc-message": Self.grpcMessage(message)])
        response.trailers = trailers
        return response
    }

    /// `grpc-message`'s percent-encoding: bytes outside printable ASCII, and `%`.
    static func grpcMessage(_ message: String) -> String {
        var encoded = ""
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return encoded
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
    }
}

/// Trailer fields known only when a body ends; set once, by whoever reads that body.
public final class ResponseTrailers: Sendable {
    private let box = NIOLockedValueBox<HTTPHeaders?>(nil)

    public init() {}

    public var value: HTTPHeaders? { self.box.withLockedValue { $0 } }

    func set(_ trailers: HTTPHeaders?) {
        self.box.withLockedValue { $0 = trailers }
    }
}

/// The request body of a full-duplex exchange, read by its own task while the response goes
/// out, and handed back (with what it read) when that task is done.
final class RequestBodyHandback: Sendable {
    private let body: @Sendable () async -> RequestBody

    init(_ body: @escaping @Sendable () async -> RequestBody) {
        self.body = body
    }

    /// The body, once the task reading it has finished.
    func take() async -> RequestBody {
        await self.body()
    }
}

/// A minimal streaming JSON writer for response bodies.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init() {}

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        self.openObject()
        body(&self)
        self.closeObject()
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        self.openArray()
        body(&self)
        self.closeArray()
    }

    /// Opens an object whose members are written by later calls (a document written in parts);
    /// `closeObject` ends it.
    public mutating func openObject() {
        self.separator()
        self.bytes.append(UInt8(ascii: "{"))
        self.needsComma = false
    }

    public mutating func closeObject() {
        self.bytes.append(UInt8(ascii: "}"))
        self.needsComma = true
    }

    /// Opens an array whose elements are written by later calls; `closeArray` ends it.
    public mutating func openArray() {
        self.separator()
        self.bytes.append(UInt8(ascii: "["))
        self.needsComma = false
    }

    public mutating func closeArray() {
        self.bytes.append(UInt8(ascii: "]"))
        self.needsComma = true
    }

    /// Hands over the bytes written so far and goes on writing the same document (a body sent
    /// in parts).
    public mutating func takeBytes() -> [UInt8] {
        defer { self.bytes = [] }
        return self.bytes
    }

    /// Writes a key; the next value written is its value.
    public mutating func key(_ name: String) {
        self.separator()
        self.string(name)
        self.bytes.append(UInt8(ascii: ":"))
        self.needsComma = false
    }

    public mutating func field(_ name: String, _ value: String) {
        self.key(name)
        self.string(value)
        self.needsComma = true
    }

    public mutating func field<I: BinaryInteger>(_ name: String, _ value: I) {
        self.key(name)
        self.integer(Int64(value))
        self.needsComma = true
    }

    /// An integer field whose key is a literal of plain ASCII needing no escape (`"partition"`):
    /// the key's bytes are copied as they are, not escaped one by one.
    public mutating func field<I: BinaryInteger>(literal name: StaticString, _ value: I) {
        // ,"name":value
        self.appendASCII(capacity: name.utf8CodeUnitCount + 20 + 4, separated: true) { out in
            out.putKey(name)
            out.put(Int64(value))
        }
        self.needsComma = true
    }

    /// A string field whose key is a literal of plain ASCII needing no escape (`"shard_id"`): the
    /// key's bytes are copied as they are; the value is escaped like any string.
    public mutating func field(literal name: StaticString, _ value: String) {
        // ,"name":
        self.appendASCII(capacity: name.utf8CodeUnitCount + 4, separated: true) { $0.putKey(name) }
        self.string(value)
        self.needsComma = true
    }

    /// `{"first":a,"second":b}` as the next value, for literal keys of plain ASCII needing no
    /// escape, written with one append: the commonest per-event answer (`{"partition":P,"offset":O}`),
    /// where appending each piece on its own cost more than the rest of the answer.
    public mutating func integerPairObject(_ first: StaticString, _ a: Int64, _ second: StaticString, _ b: Int64) {
        // ,{"first":a,"second":b}
        self.appendASCII(capacity: first.utf8CodeUnitCount + second.utf8CodeUnitCount + 2 * 20 + 10, separated: true) { out in
            out.put(UInt8(ascii: "{"))
            out.putKey(first)
            out.put(a)
            out.put(UInt8(ascii: ","))
            out.putKey(second)
            out.put(b)
            out.put(UInt8(ascii: "}"))
        }
        self.needsComma = true
    }

    /// Writes an integer's decimal digits without going through String.
    private mutating func integer(_ value: Int64) {
        self.appendASCII(capacity: 20, separated: false) { $0.put(value) }
    }

    /// Renders at most `capacity` bytes of ASCII with `write` (an integer is at most 20: "-" and
    /// 19 digits), after the separator if `separated`, and appends them at once.
    private mutating func appendASCII(capacity: Int, separated: Bool, _ write: (inout ASCIIScratch) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity + 1) { scratch in
            var out = ASCIIScratch(base: scratch.baseAddress!)
            if separated, self.needsComma { out.put(UInt8(ascii: ",")) }
            write(&out)
            assert(out.count <= capacity + 1)
            self.bytes.append(contentsOf: UnsafeBufferPointer(start: scratch.baseAddress, count: out.count))
        }
    }

    /// Writes a string as the next value (of an array, or after `key`).
    public mutating func value(_ value: String) {
        self.separator()
        self.string(value)
        self.needsComma = true
    }

    /// Writes an integer as the next value.
    public mutating func value<I: BinaryInteger>(_ value: I) {
        self.separator()
        self.integer(Int64(value))
        self.needsComma = true
    }

    /// Writes a number as the next value (non-finite ones as null).
    public mutating func value(_ value: Double) {
        self.separator()
        self.bytes.append(contentsOf: (value.isFinite ? "\(value)" : "null").utf8)
        self.needsComma = true
    }

    public mutating func field(_ name: String, _ value: Double) {
        self.key(name)
        self.value(value)
    }

    public mutating func null() {
        self.separator()
        self.bytes.append(contentsOf: "null".utf8)
        self.needsComma = true
    }

    public mutating func field(_ name: String, _ value: Bool) {
        self.key(name)
        self.bytes.append(contentsOf: (value ? "true" : "false").utf8)
        self.needsComma = true
    }

    /// Appends already-encoded JSON as the next value.
    public mutating func appendRaw(_ json: [UInt8]) {
        self.separator()
        self.bytes.append(contentsOf: json)
        self.needsComma = true
    }

    private mutating func separator() {
        if self.needsComma { self.bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { JSONString.append($0, to: &self.bytes) }
    }

    /// Reserves room for about `count` more bytes.
    public mutating func reserveCapacity(_ count: Int) {
        self.bytes.reserveCapacity(self.bytes.count + count)
    }
}

/// Writes ASCII into memory its caller sized (see `JSONWriter.appendASCII`).
private struct ASCIIScratch {
    let base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0

    init(base: UnsafeMutablePointer<UInt8>) {
        self.base = base
    }

    @inline(__always)
    mutating func put(_ byte: UInt8) {
        self.base[self.count] = byte
        self.count += 1
    }

    /// `"name":` for a key of plain ASCII that needs no escape.
    @inline(__always)
    mutating func putKey(_ name: StaticString) {
        assert(name.hasPointerRepresentation)
        let length = name.utf8CodeUnitCount
        assert(UnsafeBufferPointer(start: name.utf8Start, count: length).allSatisfy {
            $0 >= 0x20 && $0 < 0x80 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\")
        })
        self.put(UInt8(ascii: "\""))
        (self.base + self.count).update(from: name.utf8Start, count: length)
        self.count += length
        self.put(UInt8(ascii: "\""))
        self.put(UInt8(ascii: ":"))
    }

    /// An integer's decimal digits.
    @inline(__always)
    mutating func put(_ value: Int64) {
        if value < 0 { self.put(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits = 1
        var rest = magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        var position = self.count + digits
        repeat {
            position -= 1
            self.base[position] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        self.count += digits
    }
}

/// A handler's answer as the route's policies see it: the response, and what a rate limit in
/// events or bytes charges.
public struct HandledRequest: PolicyResponse {
    public var response: HTTPResponse
    /// Events the request handed to a sink.
    public var eventCount: Int
    /// Request body bytes read.
    public var bytesRead: Int

    public init(response: HTTPResponse, eventCount: Int, bytesRead: Int) {
        self.response = response
        self.eventCount = eventCount
        self.bytesRead = bytesRead
    }

    /// A request handled whole is finished at once; one whose answer reads its body as it
    /// streams (`HTTPResponse.bodyTally`) when that stream ends, with what it handed over.
    public func whenFinished(_ body: @escaping @Sendable (_ events: Int, _ bytes: Int) async -> Void) async {
        if let tally = self.response.bodyTally {
            tally.whenFinished(body)
        } else {
            await body(self.eventCount, self.bytesRead)
        }
    }

    public mutating func setHeader(name: String, value: String) {
        self.response.headers.replaceOrAdd(name: name, value: value)
    }
}

/// What a streamed request handed over, told to whoever waits once the stream ends.
public final class StreamTally: Sendable {
    private struct State {
        var events = 0
        var bytes = 0
        var eventBytes = 0
        var finished = false
        var waiting: [@Sendable (Int, Int) async -> Void] = []
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// `events` handed to the sink (`eventBytes` of them), `bytes` of request body read.
    public func add(events: Int, eventBytes: Int = 0, bytes: Int) {
        self.state.withLockedValue {
            $0.events += events
            $0.eventBytes += eventBytes
            $0.bytes += bytes
        }
    }

    /// What was handed over so far: events, their bytes, and request body bytes read.
    public var totals: (events: Int, eventBytes: Int, bodyBytes: Int) {
        self.state.withLockedValue { ($0.events, $0.eventBytes, $0.bytes) }
    }

    /// Calls `body` with the totals once the stream has ended (now, if it has).
    public func whenFinished(_ body: @escaping @Sendable (_ events: Int, _ bytes: Int) async -> Void) {
        let totals: (Int, Int)? = self.state.withLockedValue { state in
            guard state.finished else {
                state.waiting.append(body)
                return nil
            }
            return (state.events, state.bytes)
        }
        if let (events, bytes) = totals { Task { await body(events, bytes) } }
    }

    /// The stream has ended: tells everyone waiting.
    public func finish() {
        let (waiting, events, bytes) = self.state.withLockedValue { state in
            state.finished = true
            defer { state.waiting = [] }
            return (state.waiting, state.events, state.bytes)
        }
        guard !waiting.isEmpty else { return }
        Task {
            for body in waiting { await body(events, bytes) }
        }
    }
}
