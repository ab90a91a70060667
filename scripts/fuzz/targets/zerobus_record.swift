// libFuzzer target: the Zerobus sink's record checks (ZerobusRecordCheck.swift). A proto record
// passes the wire check only when SwiftProtobuf can read it (as unknown fields of an empty
// message), and is refused only when SwiftProtobuf cannot, or for an overlong tag: the service
// would fail the whole stream for a record it cannot parse. A JSON record's UTF-8 check agrees
// with String(validating:), and a JSON record passes exactly when it is one JSON object.
import Foundation
import SwiftProtobuf

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    let problem = ZerobusRecordCheck.protoWireProblem(bytes)
    let parses = (try? Google_Protobuf_Empty(serializedBytes: bytes)) != nil
    // The one place the check is stricter: a tag longer than five bytes (no encoder writes one;
    // SwiftProtobuf refuses it at the top level but takes it inside a group).
    let strictOnly = parses && (problem?.hasPrefix("malformed field tag") ?? false)
    if (problem == nil) != parses && !strictOnly {
        // -O drops precondition messages; say what disagreed before failing.
        FileHandle.standardError.write(Data("wire check says \(problem ?? "fine"); SwiftProtobuf says \(parses ? "fine" : "invalid")\n".utf8))
        preconditionFailure("the wire check and SwiftProtobuf disagree")
    }

    // The UTF-8 check built on the standard library's repairing path agrees with its validation.
    let validated = String(validating: bytes, as: UTF8.self)
    precondition(bytes.withUnsafeBytes(ZerobusRecordCheck.validUTF8) == validated, "the UTF-8 check disagrees with String(validating:)")

    // Foundation reads text with a NUL in its first four bytes as UTF-16 or UTF-32 (RFC 4627's
    // detection: "\0{\0}" is "{}" to it); a Zerobus JSON record is UTF-8, where NUL is never valid JSON.
    // Foundation also skips a leading UTF-8 byte order mark, which the check refuses (RFC 8259:
    // never sent, a parser may refuse it).
    if let text = validated, !bytes.prefix(4).contains(0) {
        let object = !bytes.starts(with: [0xEF, 0xBB, 0xBF]) && (try? JSONSerialization.jsonObject(with: bytes)) is [String: Any]
        precondition(ZerobusRecordCheck.isJSONObject(text, known: false) == object, "JSON object check disagrees with Foundation")
    }
    return 0
}
