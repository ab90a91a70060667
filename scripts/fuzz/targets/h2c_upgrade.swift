// libFuzzer target: the `Upgrade: h2c` head reader (SluiceHTTP's H2CUpgrade.swift).
// 1. Any bytes: scanning for the head's end and reading it never trap; the end found is the
//    first CRLF CRLF, and a head the scan refuses is never read as an upgrade.
// 2. A head read as an upgrade has a token method, an origin-form path (or `OPTIONS *`), an
//    authority, and no hop-by-hop field; its stream-1 frames are HEADERS then CONTINUATION,
//    none over 16384 bytes, and decode (with NIO's HPACK decoder, as the HTTP/2 server does)
//    to exactly its fields without touching the dynamic table.
import NIOCore
import NIOHPACK
import SluiceCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let buffer = ByteBuffer(bytes: bytes)
    let scan = H2CUpgradeRequest.scanHead(buffer.readableBytesView)
    let crlf2: [UInt8] = [13, 10, 13, 10]
    let first = bytes.count < 4 ? nil : (0...(bytes.count - 4)).first { bytes[$0..<($0 + 4)].elementsEqual(crlf2) }.map { $0 + 4 }
    var end: Int?
    switch scan {
    case .complete(let length):
        precondition(length == first, "head end \(length) but first CRLF CRLF ends at \(String(describing: first))")
        end = length
    case .incomplete:
        precondition(first == nil, "a blank line was missed")
    case .notUpgrade:
        break
    }
    // A head the scan refused is never read as an upgrade, however it ends.
    let head = bytes.prefix(end ?? first ?? bytes.count)
    guard let request = H2CUpgradeRequest(head: head, maxHeaderListSize: 64 * 1024) else { return 0 }
    precondition(end != nil, "a head the scan did not accept was read as an upgrade")
    precondition(!request.method.isEmpty && request.method.utf8.allSatisfy(HeaderFieldCheck.isTokenByte))
    precondition(request.target.hasPrefix("/") || (request.method == "OPTIONS" && request.target == "*"))
    precondition(!request.authority.isEmpty)
    let hopByHop: Set<String> = ["connection", "upgrade", "http2-settings", "host", "keep-alive", "proxy-connection", "transfer-encoding"]
    precondition(request.fields.allSatisfy { !hopByHop.contains($0.name) && $0.name == $0.name.lowercased() })

    var frames = request.headerFrames()
    var block = ByteBuffer()
    var index = 0
    while frames.readableBytes > 0 {
        precondition(frames.readableBytes >= 9, "a torn frame header")
        let length = Int(frames.readInteger(as: UInt8.self)!) << 16 | Int(frames.readInteger(as: UInt16.self)!)
        let type = frames.readInteger(as: UInt8.self)!
        let flags = frames.readInteger(as: UInt8.self)!
        let stream = frames.readInteger(as: UInt32.self)!
        precondition(length <= 16384 && stream == 1)
        precondition(type == (index == 0 ? 0x1 : 0x9))
        precondition((flags & 0x1 != 0) == (index == 0), "END_STREAM on HEADERS only")
        var payload = frames.readSlice(length: length)!
        precondition((flags & 0x4 != 0) == (frames.readableBytes == 0), "END_HEADERS on the last frame only")
        block.writeBuffer(&payload)
        index += 1
    }
    var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096, maxHeaderListSize: 1 << 20)
    let headers = try! decoder.decodeHeaders(from: &block)
    let expected = request.allFields
    precondition(headers.count == expected.count)
    for (decoded, field) in zip(headers, expected) {
        precondition(decoded.name == field.name && decoded.value == field.value && decoded.indexable == .nonIndexable)
    }
    return 0
}
