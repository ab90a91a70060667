import NIOCore
import SluiceCore

/// Encodes one event as one line of the file sink's NDJSON format.
enum NDJSONLineEncoder {
    static func append(_ event: Event, topic: String, timestamp: Int64, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"ts":"#.utf8)
        out.append(contentsOf: String(timestamp).utf8)
        out.append(contentsOf: #","topic":"#.utf8)
        JSONString.append(topic.utf8, to: &out)
        out.append(contentsOf: #","key":"#.utf8)
        if let key = event.key {
            key.withUnsafeReadableBytes { JSONString.append($0, to: &out) }
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(contentsOf: #","headers":{"#.utf8)
        for (i, header) in event.headers.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONString.append(header.name.utf8, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONString.append(header.value.utf8, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        if event.valueIsJSON {
            out.append(contentsOf: #","value":"#.utf8)
            event.value.withUnsafeReadableBytes { raw in
                // A JSON value never contains a raw newline outside strings, and strings
                // cannot hold one unescaped; trim surrounding whitespace only.
                var start = 0
                var end = raw.count
                while start < end, isSpace(raw[start]) { start += 1 }
                while end > start, isSpace(raw[end - 1]) { end -= 1 }
                for i in start..<end {
                    let byte = raw[i]
                    // Pretty-printed JSON may contain newlines between tokens; keep one line.
                    out.append(byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") ? UInt8(ascii: " ") : byte)
                }
            }
        } else {
            out.append(contentsOf: #","value_base64":""#.utf8)
            event.value.withUnsafeReadableBytes { Base64.append($0, to: &out) }
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: "}\n".utf8)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}
