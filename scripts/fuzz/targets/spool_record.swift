// libFuzzer target: the spool's record format (SluiceSpool's SpoolRecord.swift and CRC32C.swift).
// 1. Any bytes: reading never crashes, and what reads as a record writes back to a record that
//    reads the same.
// 2. A record built from the input (topic, key, value, headers, partition, timestamp, flags
//    from its bytes) reads back whole; with its last byte cut, or any one byte flipped, it
//    does not read at all (a torn or corrupted record is never replayed).
import NIOCore
import SluiceCore

func same(_ a: SpoolEntry, _ b: SpoolEntry) -> Bool {
    a.sequence == b.sequence && a.topic == b.topic && a.event.value == b.event.value && a.event.key == b.event.key
        && a.event.headers == b.event.headers && a.event.valueIsJSON == b.event.valueIsJSON && a.event.valueIsNull == b.event.valueIsNull
        && a.event.partition == b.event.partition && a.event.timestampMilliseconds == b.event.timestampMilliseconds
}

func frame(_ entry: SpoolEntry) -> [UInt8] {
    var out: [UInt8] = []
    SpoolRecord.append(entry, to: &out)
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let maxPayload = 1 << 16

    if let (entry, used) = bytes.withUnsafeBytes({ SpoolRecord.read($0, maxPayloadBytes: maxPayload) }) {
        precondition(used <= bytes.count)
        let again = frame(entry)
        let back = again.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: maxPayload) }
        precondition(back.map { same($0.entry, entry) && $0.size == again.count } == true, "a record read does not write back the same")
    }

    guard bytes.count >= 3 else { return 0 }
    let flags = bytes[0]
    let topicLength = Int(bytes[1] % 32)
    var rest = bytes.dropFirst(2)
    let topic = String(decoding: rest.prefix(topicLength), as: UTF8.self)
    rest = rest.dropFirst(topicLength)
    let keyLength = Int(rest.first ?? 0) % 16
    let key = flags & 1 != 0 ? ByteBuffer(bytes: rest.dropFirst().prefix(keyLength)) : nil
    if flags & 1 != 0 { rest = rest.dropFirst(1 + keyLength) }
    var event = Event(value: ByteBuffer(bytes: rest), key: key, valueIsJSON: flags & 4 != 0, valueIsNull: flags & 2 != 0 && rest.isEmpty)
    if flags & 8 != 0 { event.partition = Int32(flags) - 100 }
    if flags & 16 != 0 { event.timestampMilliseconds = Int64(size) * -7_919 }
    for index in 0..<Int(flags >> 5) { event.headers.append(EventHeader(name: "h\(index)", value: String(decoding: rest.prefix(index * 3), as: UTF8.self))) }
    let entry = SpoolEntry(sequence: UInt64(size) << 20 | UInt64(flags), topic: topic, event: event)
    let written = frame(entry)
    let read = written.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: maxPayload) }
    precondition(read.map { same($0.entry, entry) && $0.size == written.count } == true, "a written record does not read back whole")
    precondition(written.dropLast().withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: maxPayload) } == nil, "a cut record reads")
    var flipped = written
    flipped[Int(flags) % flipped.count] ^= 0x20
    precondition(flipped.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: maxPayload) } == nil, "a corrupted record reads")
    return 0
}
