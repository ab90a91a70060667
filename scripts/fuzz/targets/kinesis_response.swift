// libFuzzer target: the Kinesis sink's PutRecords answer reader (PutRecordsResponseReader.swift),
// checked against JSON's grammar and Foundation's parser: what the reader accepts is valid JSON
// whose Records (when Foundation reads them) it read exactly; an answer Foundation reads and
// writes back, the reader reads the same (it never turns a good answer into a failed batch).
import Foundation
import NIOCore
@testable import SluiceIngest  // the debug build is compiled for testing: JSONScanner.validate

func flatStrings(_ object: Any) -> [String: String]? {
    guard let record = object as? [String: Any] else { return nil }
    var strings: [String: String] = [:]
    for (key, value) in record {
        if let text = value as? String { strings[key] = text }
    }
    return strings
}

/// The fields the reader keeps (it reads the four names Kinesis answers with, and skips others).
func result(_ object: Any) -> PutRecordsResponseReader.RecordResult? {
    guard let strings = flatStrings(object) else { return nil }
    return PutRecordsResponseReader.RecordResult(
        shardID: strings["ShardId"], sequenceNumber: strings["SequenceNumber"], errorCode: strings["ErrorCode"],
        errorMessage: strings["ErrorMessage"])
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let read = PutRecordsResponseReader.records(ByteBuffer(bytes: bytes))
    let foundation = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    if let read {
        // RFC 8259's grammar (Sluice's own validator): Foundation alone would not do, it also
        // refuses numbers out of Double's range (5e88888), which JSON allows and the reader skips.
        let valid: Bool
        do throws(JSONScanner.SyntaxError) {
            try JSONScanner.validate(bytes)
            valid = true
        } catch {
            valid = false
        }
        precondition(valid, "the reader accepted what is not JSON")
        guard let foundation else { return 0 }
        guard let list = foundation["Records"] as? [Any] else { preconditionFailure("the reader found Records Foundation did not") }
        precondition(list.count == read.count, "record counts differ")
        for (mine, theirs) in zip(read, list) {
            precondition(result(theirs) == mine, "a record's string fields differ")
        }
    }
    // Whatever Foundation reads as a PutRecords answer, written out again by a standard serializer,
    // the reader reads with the same fields (Foundation also takes trailing commas and the like;
    // the reader need not).
    if let foundation, let list = foundation["Records"] as? [Any], list.allSatisfy({ flatStrings($0) != nil }),
        let canonical = try? JSONSerialization.data(withJSONObject: foundation)
    {
        let deep = canonical.withUnsafeBytes { nestingDepth($0) } >= 32
        let again = PutRecordsResponseReader.records(ByteBuffer(bytes: canonical))
        precondition(again != nil || deep, "the reader refused a PutRecords answer Foundation wrote")
        if let again {
            precondition(again == list.map { result($0)! }, "the reader read a written answer differently")
        }
    }
    return 0
}
