import Foundation
import NIOCore
import SluiceCore
import SwiftProtobuf

/// One event as a Zerobus record.
enum ZerobusRecord: Sendable {
    case json(String)
    case proto(Data)

    var bytes: Int {
        switch self {
        case .json(let text): return text.utf8.count
        case .proto(let data): return data.count
        }
    }
}

extension ZerobusSinkConfig.RecordType {
    /// The event's value as a record of this type, or why it cannot be one. Checked before
    /// sending: the service answers a bad record by failing the whole stream (INVALID_ARGUMENT),
    /// which would fail every other unacknowledged record with it.
    func record(from value: ByteBuffer, isJSON: Bool, maxBytes: Int) -> Result<ZerobusRecord, DeliveryFailure> {
        guard value.readableBytes <= maxBytes else {
            return .failure(
                DeliveryFailure(
                    code: "event_too_large", message: "a Zerobus record holds at most \(maxBytes) bytes; this one has \(value.readableBytes)",
                    isRetryable: false, httpStatus: 413))
        }
        switch self {
        case .json:
            let bytes = value.readableBytesView
            guard let text = String(validating: bytes, as: UTF8.self), ZerobusRecordCheck.isJSONObject(text, known: isJSON) else {
                return .failure(
                    DeliveryFailure(
                        code: "invalid_record", message: "a Zerobus JSON record must be one JSON object (UTF-8)", isRetryable: false,
                        httpStatus: 400))
            }
            return .success(.json(text))
        case .proto:
            let data = Data(value.readableBytesView)
            if let problem = ZerobusRecordCheck.protoWireProblem(data) {
                return .failure(
                    DeliveryFailure(
                        code: "invalid_record", message: "a Zerobus proto record must be one encoded protobuf message: \(problem)",
                        isRetryable: false, httpStatus: 400))
            }
            return .success(.proto(data))
        }
    }
}

enum ZerobusRecordCheck {
    /// Whether `text` is one JSON object. `known`: already checked to be one JSON value.
    static func isJSONObject(_ text: String, known: Bool) -> Bool {
        let trimmed = text.utf8.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard trimmed.first == UInt8(ascii: "{") else { return false }
        if known { return true }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]
    }

    /// Why `data` is not well-formed protobuf wire format, or nil. Checks tags, varints and
    /// lengths (not the schema: the service does that).
    static func protoWireProblem(_ data: Data) -> String? {
        if data.isEmpty { return nil }  // all fields default
        return data.withUnsafeBytes { raw -> String? in
            let bytes = raw.bindMemory(to: UInt8.self)
            var i = 0
            func varint() -> UInt64? {
                var value: UInt64 = 0
                var shift: UInt64 = 0
                while i < bytes.count, shift < 64 {
                    let byte = bytes[i]
                    i += 1
                    value |= UInt64(byte & 0x7F) << shift
                    if byte & 0x80 == 0 { return value }
                    shift += 7
                }
                return nil
            }
            var depth = 0  // open groups
            while i < bytes.count {
                guard let tag = varint() else { return "truncated field tag at byte \(i)" }
                let field = tag >> 3
                guard field >= 1, field <= 536_870_911 else { return "field number \(field) is out of range" }
                switch tag & 7 {
                case 0:
                    guard varint() != nil else { return "truncated varint in field \(field)" }
                case 1:
                    guard i + 8 <= bytes.count else { return "truncated 64-bit value in field \(field)" }
                    i += 8
                case 2:
                    guard let length = varint(), length <= UInt64(bytes.count - i) else { return "length of field \(field) runs past the end" }
                    i += Int(length)
                case 3:
                    depth += 1
                case 4:
                    guard depth > 0 else { return "group end without start in field \(field)" }
                    depth -= 1
                case 5:
                    guard i + 4 <= bytes.count else { return "truncated 32-bit value in field \(field)" }
                    i += 4
                default:
                    return "invalid wire type \(tag & 7) in field \(field)"
                }
            }
            return depth == 0 ? nil : "unterminated group"
        }
    }
}

extension ZerobusSinkConfig.ProtoSchema {
    /// Loads `message` (package.Message) from a descriptor set written by
    /// `protoc --descriptor_set_out=FILE`. The message must be self-contained (its fields may use
    /// its own nested types, not other messages): the stream carries one DescriptorProto.
    public static func load(file: String, message: String) -> Result<Self, ZerobusConfigError> {
        guard let data = FileManager.default.contents(atPath: file) else {
            return .failure(ZerobusConfigError("cannot read descriptor set \(file)"))
        }
        let set: Google_Protobuf_FileDescriptorSet
        do {
            set = try Google_Protobuf_FileDescriptorSet(serializedBytes: data)
        } catch {
            return .failure(ZerobusConfigError("\(file) is not a descriptor set (protoc --descriptor_set_out): \(error)"))
        }
        var known: [String] = []
        for fileDescriptor in set.file {
            let prefix = fileDescriptor.package.isEmpty ? "" : fileDescriptor.package + "."
            for candidate in fileDescriptor.messageType {
                let name = prefix + candidate.name
                known.append(name)
                guard name == message else { continue }
                if let outside = Self.outsideReference(candidate, scope: "." + name) {
                    return .failure(
                        ZerobusConfigError(
                            "message \(message) uses \(outside), which is not nested in it; Zerobus takes one self-contained message"))
                }
                do {
                    let bytes: [UInt8] = try candidate.serializedBytes()
                    return .success(Self(file: file, message: message, descriptor: bytes))
                } catch {
                    return .failure(ZerobusConfigError("cannot serialize the descriptor of \(message): \(error)"))
                }
            }
        }
        let list = known.prefix(10).joined(separator: ", ")
        return .failure(ZerobusConfigError("\(file) has no top-level message \(message)" + (known.isEmpty ? "" : " (it has: \(list))")))
    }

    /// A field type outside the message (`.pkg.Other`), or nil.
    private static func outsideReference(_ message: Google_Protobuf_DescriptorProto, scope: String) -> String? {
        for field in message.field where field.hasTypeName {
            if !field.typeName.hasPrefix(scope + ".") { return String(field.typeName.dropFirst()) }
        }
        for nested in message.nestedType {
            if let outside = outsideReference(nested, scope: scope) { return outside }
        }
        return nil
    }
}

/// A Zerobus setting that cannot work.
public struct ZerobusConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
