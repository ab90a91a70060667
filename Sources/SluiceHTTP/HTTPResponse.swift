import NIOCore
import NIOHTTP1

/// A complete response. Sluice's own responses are small JSON documents, so they are built whole.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: HTTPResponseStatus, _ body: JSONWriter, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers.replaceOrAdd(name: "content-type", value: "application/json")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(bytes: body.bytes))
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
        return .json(status, json, headers: headers)
    }
}

/// A minimal streaming JSON writer for response bodies.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init() {}

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        self.separator()
        self.bytes.append(UInt8(ascii: "{"))
        self.needsComma = false
        body(&self)
        self.bytes.append(UInt8(ascii: "}"))
        self.needsComma = true
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        self.separator()
        self.bytes.append(UInt8(ascii: "["))
        self.needsComma = false
        body(&self)
        self.bytes.append(UInt8(ascii: "]"))
        self.needsComma = true
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
        self.bytes.append(contentsOf: String(value).utf8)
        self.needsComma = true
    }

    public mutating func field(_ name: String, _ value: Bool) {
        self.key(name)
        self.bytes.append(contentsOf: (value ? "true" : "false").utf8)
        self.needsComma = true
    }

    /// Appends already-encoded JSON as the next value.
    mutating func appendRaw(_ json: [UInt8]) {
        self.separator()
        self.bytes.append(contentsOf: json)
        self.needsComma = true
    }

    private mutating func separator() {
        if self.needsComma { self.bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func string(_ value: String) {
        let hex = Array("0123456789abcdef".utf8)
        self.bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): self.bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0..<0x20:
                self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }
}
