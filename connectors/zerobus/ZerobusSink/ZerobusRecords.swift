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
                DeliveryFailure(.eventTooLarge, "a Zerobus record holds at most \(maxBytes) bytes; this one has \(value.readableBytes)"))
        }
        switch self {
        case .json:
            guard let text = value.withUnsafeReadableBytes(ZerobusRecordCheck.validUTF8), ZerobusRecordCheck.isJSONObject(text, known: isJSON) else {
                return .failure(
                    DeliveryFailure(.invalidRecord, "a Zerobus JSON record must be one JSON object (UTF-8)"))
            }
            return .success(.json(text))
        case .proto:
            let data = Data(value.readableBytesView)
            if let problem = ZerobusRecordCheck.protoWireProblem(data) {
                return .failure(
                    DeliveryFailure(.invalidRecord, "a Zerobus proto record must be one encoded protobuf message: \(problem)"))
            }
            return .success(.proto(data))
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
