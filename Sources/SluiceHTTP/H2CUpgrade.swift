import Foundation
import NIOCore
import SluiceCore

/// An HTTP/1.1 request asking to continue the connection as cleartext HTTP/2
/// (`Upgrade: h2c`, RFC 7540 §3.2), accepted only when it is unambiguous: a request line
/// `METHOD /target HTTP/1.1` (or `OPTIONS * HTTP/1.1`), well-formed header fields, `Connection: Upgrade, HTTP2-Settings`,
/// exactly one valid `HTTP2-Settings`, exactly one `Host`, and no body (no `Transfer-Encoding`,
/// no `Content-Length` other than 0, no `Expect`). Anything else is not an upgrade: the
/// request is served over HTTP/1.1 by the ordinary parser, which RFC 9110 §7.8 allows
/// (a server may ignore `Upgrade`).
///
/// Once upgraded, the request becomes stream 1 of the HTTP/2 connection (RFC 7540 §3.2:
/// "the request … is assigned stream identifier 1"). `headerFrames` gives it as HTTP/2 HEADERS
/// (and CONTINUATION) frames whose header block uses HPACK literals without indexing, so the
/// server's HPACK decoder starts the client's own frames with the empty table the client
/// assumes.
struct H2CUpgradeRequest: Equatable {
    var method: String
    var target: String
    var authority: String
    /// The request's fields as they go into HTTP/2: lower-case names, without the hop-by-hop
    /// ones (`Connection` and what it names, `Upgrade`, `HTTP2-Settings`, `Host`, `Keep-Alive`,
    /// `Proxy-Connection`, `TE` other than `trailers`).
    var fields: [(name: String, value: String)]

    static func == (a: Self, b: Self) -> Bool {
        a.method == b.method && a.target == b.target && a.authority == b.authority
            && a.fields.map(\.name) == b.fields.map(\.name) && a.fields.map(\.value) == b.fields.map(\.value)
    }

    /// How far a connection's first bytes go toward a head this reader could take.
    enum HeadScan: Equatable {
        /// The head ends this many bytes in (just past its CRLF CRLF).
        case complete(Int)
        /// No blank line yet, and nothing so far rules an upgrade out.
        case incomplete
        /// A byte the strict reading refuses (a bare CR or LF, a control or non-ASCII byte)
        /// before the head's end: no upgrade, whatever follows.
        case notUpgrade
    }

    /// Scans a connection's first bytes for the end of the request head.
    static func scanHead(_ bytes: ByteBufferView) -> HeadScan {
        var index = 0
        var previous: UInt8 = 0
        var lineLength = 0
        for byte in bytes {
            index += 1
            switch byte {
            case 13:
                break
            case 10:
                guard previous == 13 else { return .notUpgrade }
                // An empty line ends the head; before the request line (RFC 9112 §2.2 lets
                // HTTP/1.1 skip it) it is not for this reader.
                if lineLength == 0 { return index > 2 ? .complete(index) : .notUpgrade }
                lineLength = 0
                previous = byte
                continue
            case 9, 32...126:
                guard previous != 13 else { return .notUpgrade }
            default:
                return .notUpgrade
            }
            if byte == 13, previous == 13 { return .notUpgrade }
            if byte != 13 { lineLength += 1 }
            previous = byte
        }
        return .incomplete
    }

    /// The upgrade request in `head` (a whole request head, CRLF CRLF included), or nil when it
    /// is not one Sluice upgrades. `maxHeaderListSize` is the HTTP/2 listener's
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a request over it is left to HTTP/1.1's limit.
    init?(head: some Collection<UInt8>, maxHeaderListSize: Int) {
        // Printable ASCII and HTAB only: anything else is HTTP/1.1's parser's to judge.
        guard head.allSatisfy({ $0 == 9 || $0 == 10 || $0 == 13 || (32...126).contains($0) }) else { return nil }
        let bytes = Array(head)
        guard bytes.count > 4, bytes.suffix(4).elementsEqual("\r\n\r\n".utf8) else { return nil }
        // (By bytes: "\r\n" is one Character to a String.)
        var lines = String(decoding: bytes.dropLast(4), as: UTF8.self).components(separatedBy: "\r\n")
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2] == "HTTP/1.1" else { return nil }
        let method = String(requestLine[0])
        let target = String(requestLine[1])
        guard !method.isEmpty, method.utf8.allSatisfy(HeaderFieldCheck.isTokenByte), method != "CONNECT",
            target.hasPrefix("/") || (method == "OPTIONS" && target == "*"),  // nghttp upgrades by `OPTIONS *`
            target.utf8.allSatisfy({ (33...126).contains($0) })
        else { return nil }

        var received: [(name: String, value: String)] = []
        for line in lines {
            // A bare LF, obs-fold or a field without a colon: not for this strict reading.
            guard let colon = line.firstIndex(of: ":"), !line.utf8.contains(10), !line.utf8.contains(13) else { return nil }
            let name = line[..<colon]
            guard !name.isEmpty, name.utf8.allSatisfy(HeaderFieldCheck.isTokenByte) else { return nil }
            let value = line[line.index(after: colon)...].trimmingSpaceAndTab()
            received.append((name.lowercased(), value))
        }
        func values(_ name: String) -> [String] { received.filter { $0.name == name }.map(\.value) }
        func tokens(_ name: String) -> [String] {
            values(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaceAndTab().lowercased() }
        }

        guard tokens("upgrade").contains("h2c") else { return nil }
        let connection = tokens("connection")
        guard connection.contains("upgrade"), connection.contains("http2-settings") else { return nil }
        let settings = values("http2-settings")
        guard settings.count == 1, Self.isSettingsPayload(settings[0]) else { return nil }
        let hosts = values("host")
        guard hosts.count == 1, !hosts[0].isEmpty, !hosts[0].contains(" ") else { return nil }
        guard values("transfer-encoding").isEmpty, values("expect").isEmpty,
            values("content-length").allSatisfy({ $0 == "0" })
        else { return nil }

        let hopByHop = Set(["connection", "upgrade", "http2-settings", "host", "keep-alive", "proxy-connection", "transfer-encoding"])
            .union(connection)
        self.method = method
        self.target = target
        self.authority = hosts[0]
        self.fields = received.filter { field in
            if hopByHop.contains(field.name) { return false }
            if field.name == "te" { return field.value.lowercased() == "trailers" }
            return true
        }
        // RFC 7541 §4.1: each field counts its name, its value and 32.
        let listSize = self.allFields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 32 }
        guard listSize <= maxHeaderListSize else { return nil }
    }

    /// Pseudo-header fields first, then the request's own.
    var allFields: [(name: String, value: String)] {
        [(":method", self.method), (":scheme", "http"), (":authority", self.authority), (":path", self.target)] + self.fields
    }

    /// The answer that switches the connection; HTTP/2's server preface follows it.
    static let switchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"

    /// Stream 1's HEADERS frame (END_STREAM: the request has no body), split into CONTINUATION
    /// frames past `maxFrameSize` (the server's SETTINGS_MAX_FRAME_SIZE, 16384 unless raised).
    func headerFrames(maxFrameSize: Int = 16384) -> ByteBuffer {
        var block = ByteBuffer()
        for field in self.allFields {
            block.writeInteger(UInt8(0))  // literal header field without indexing, new name
            Self.writeString(field.name, into: &block)
            Self.writeString(field.value, into: &block)
        }
        var frames = ByteBuffer()
        var first = true
        repeat {
            let chunk = block.readSlice(length: min(block.readableBytes, maxFrameSize))!
            let last = block.readableBytes == 0
            var flags: UInt8 = last ? 0x4 : 0  // END_HEADERS
            if first { flags |= 0x1 }  // END_STREAM
            frames.writeInteger(UInt8(truncatingIfNeeded: chunk.readableBytes >> 16))
            frames.writeInteger(UInt16(truncatingIfNeeded: chunk.readableBytes))
            frames.writeInteger(UInt8(first ? 0x1 : 0x9))  // HEADERS, then CONTINUATION
            frames.writeInteger(flags)
            frames.writeInteger(UInt32(1))  // stream 1
            frames.writeImmutableBuffer(chunk)
            first = false
        } while block.readableBytes > 0
        return frames
    }

    /// An HPACK string literal (RFC 7541 §5.2), not Huffman-coded.
    private static func writeString(_ string: String, into buffer: inout ByteBuffer) {
        let bytes = Array(string.utf8)
        writeInteger(bytes.count, prefixBits: 7, into: &buffer)
        buffer.writeBytes(bytes)
    }

    /// An HPACK integer (RFC 7541 §5.1) whose first byte's high bits are zero.
    static func writeInteger(_ value: Int, prefixBits: Int, into buffer: inout ByteBuffer) {
        let limit = (1 << prefixBits) - 1
        guard value >= limit else {
            buffer.writeInteger(UInt8(value))
            return
        }
        buffer.writeInteger(UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            buffer.writeInteger(UInt8(rest % 128 + 128))
            rest /= 128
        }
        buffer.writeInteger(UInt8(rest))
    }

    /// `token68` in the base64url alphabet whose bytes are whole SETTINGS entries (6 bytes each).
    private static func isSettingsPayload(_ value: String) -> Bool {
        let unpadded = value.utf8.reversed().drop(while: { $0 == UInt8(ascii: "=") }).reversed()
        guard unpadded.allSatisfy({ byte in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }) else { return false }
        let count = unpadded.count
        guard count % 4 != 1 else { return false }
        return (count * 3 / 4) % 6 == 0
    }
}

extension StringProtocol {
    fileprivate func trimmingSpaceAndTab() -> String {
        let scalars = self.unicodeScalars
        guard let start = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let end = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(String.UnicodeScalarView(scalars[start...end]))
    }
}
