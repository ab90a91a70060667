import Foundation
import NIOCore
import SluiceCore
import SwiftProtobuf
import Testing

@testable import ZerobusSink

@Suite struct ZerobusRecordTests {
    @Test func jsonRecordsMustBeOneObject() {
        let type = ZerobusSinkConfig.RecordType.json
        func check(_ text: String, known: Bool = false) -> String? {
            switch type.record(from: ByteBuffer(string: text), isJSON: known, maxBytes: 100) {
            case .success(.json(let value)): return value
            case .success(.proto): return "proto?"
            case .failure(let failure): return "error:" + failure.code
            }
        }
        #expect(check(#"{"a":1}"#) == #"{"a":1}"#)
        #expect(check(" \n{\"a\":[1,2]} ") == " \n{\"a\":[1,2]} ")
        #expect(check("[1]") == "error:invalid_record")
        #expect(check("\"text\"") == "error:invalid_record")
        #expect(check("{broken") == "error:invalid_record")
        #expect(check("{broken", known: true) == "{broken", "a body decoder's verdict is trusted")
        #expect(check("\u{FEFF}{\"a\":1}") == "error:invalid_record", "a byte order mark (found by fuzzing: Foundation skips it)")
        #expect(check(String(repeating: "x", count: 101)) == "error:event_too_large")
        var invalidUTF8 = ByteBuffer(string: "{\"a\":\"")
        invalidUTF8.writeBytes([0xFF, 0xFE])
        invalidUTF8.writeString("\"}")
        if case .success = type.record(from: invalidUTF8, isJSON: true, maxBytes: 100) { Issue.record("invalid UTF-8 accepted") }
    }

    /// The UTF-8 check agrees with the standard library's validation, for valid text of every
    /// width (small strings included) and for each kind of invalid sequence at each place.
    @Test func utf8CheckAgreesWithTheStandardLibrary() {
        let valid = ["", "a", "{}", "plain ascii text", "é", "ünïcødé ✓ 𝄞", String(repeating: "x", count: 300) + "€"]
        for text in valid {
            #expect(ByteBuffer(string: text).withUnsafeReadableBytes(ZerobusRecordCheck.validUTF8) == text)
        }
        let invalid: [[UInt8]] = [[0xFF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xF4, 0x90, 0x80, 0x80], [0x80], [0xF0, 0x9F, 0x98]]
        for bad in invalid {
            for prefix in ["", "ab", String(repeating: "y", count: 40)] {
                for suffix in ["", "z", "ünï"] {
                    let bytes = Array(prefix.utf8) + bad + Array(suffix.utf8)
                    var buffer = ByteBuffer()
                    buffer.writeBytes(bytes)
                    let expected = String(validating: bytes, as: UTF8.self)
                    #expect(expected == nil)
                    #expect(buffer.withUnsafeReadableBytes(ZerobusRecordCheck.validUTF8) == expected, "\(bytes)")
                }
            }
        }
    }

    @Test func protoRecordsMustBeWellFormedWireFormat() {
        #expect(ZerobusRecordCheck.protoWireProblem(Data()) == nil)
        // field 1 "hi", field 2 varint 150, field 3 fixed64, field 4 fixed32, group 5 with field 1 varint inside
        let good = Data([0x0A, 0x02, 0x68, 0x69, 0x10, 0x96, 0x01, 0x19] + [UInt8](repeating: 0, count: 8) + [0x25, 0, 0, 0, 0, 0x2B, 0x08, 0x01, 0x2C])
        #expect(ZerobusRecordCheck.protoWireProblem(good) == nil)
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x0A, 0x05, 0x41])) != nil, "length past the end")
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x10, 0x96])) != nil, "truncated varint")
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x07, 0x00])) != nil, "wire type 7")
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x00, 0x00])) != nil, "field 0")
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x2B, 0x08, 0x01])) != nil, "unterminated group")
        // Found by fuzzing against SwiftProtobuf: a group ended by another field's end tag, and a
        // six-byte (overlong) tag.
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x2B, 0x08, 0x01, 0x34])) != nil, "group 5 ended as group 6")
        #expect(ZerobusRecordCheck.protoWireProblem(Data([0x8D, 0x8D, 0x8D, 0x8D, 0x8D, 0x00, 0, 0, 0, 0])) != nil, "overlong tag")
        #expect(ZerobusRecordCheck.protoWireProblem(Data("{\"json\": true}".utf8)) != nil, "JSON is not protobuf")
        // Found by fuzzing: groups nested past protobuf parsers' depth limit of 100 (the record is one).
        let depth = ZerobusRecordCheck.maxGroupDepth
        func nested(_ n: Int) -> Data { Data([UInt8](repeating: 0x0B, count: n) + [UInt8](repeating: 0x0C, count: n)) }
        #expect(ZerobusRecordCheck.protoWireProblem(nested(depth)) == nil)
        #expect(ZerobusRecordCheck.protoWireProblem(nested(depth + 1)) != nil, "groups nested too deep")
    }

    @Test func tableNamesHaveThreeParts() {
        #expect(ZerobusSinkConfig.tableProblem("main.events.clicks") == nil)
        #expect(ZerobusSinkConfig.tableProblem("main.events") != nil)
        #expect(ZerobusSinkConfig.tableProblem("a..c") != nil)
        #expect(ZerobusSinkConfig.tableProblem("a.b.c.d") != nil)
        #expect(ZerobusSinkConfig.tableProblem("a.b c.d") != nil)
        #expect(ZerobusSinkConfig.tableProblem("a.b.\u{7}") != nil)
    }

    @Test func theWorkspaceIDDefaultsToTheEndpointsFirstLabel() {
        var config = ZerobusSinkConfig(
            endpoint: URL(string: "https://1234567890123456.zerobus.us-west-2.cloud.databricks.com")!,
            workspaceURL: URL(string: "https://dbc-1.cloud.databricks.com")!, clientID: "sp", clientSecret: .environment("S"))
        #expect(config.effectiveWorkspaceID == "1234567890123456")
        #expect(config.usesTLS)
        config.workspaceID = "42"
        #expect(config.effectiveWorkspaceID == "42")
    }

    /// A descriptor set as `protoc --descriptor_set_out` writes it.
    func descriptorSet(_ messages: [Google_Protobuf_DescriptorProto]) throws -> String {
        let set = Google_Protobuf_FileDescriptorSet.with {
            $0.file = [.with {
                $0.name = "shop.proto"
                $0.package = "shop"
                $0.messageType = messages
            }]
        }
        let path = NSTemporaryDirectory() + "zb-\(UUID().uuidString).desc"
        try Data(try set.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func aSelfContainedMessageLoadsFromADescriptorSet() throws {
        let click = Google_Protobuf_DescriptorProto.with {
            $0.name = "Click"
            $0.field = [
                .with { $0.name = "user"; $0.number = 1; $0.type = .string; $0.label = .optional },
                .with { $0.name = "kind"; $0.number = 2; $0.type = .enum; $0.typeName = ".shop.Click.Kind"; $0.label = .optional },
                .with { $0.name = "where"; $0.number = 3; $0.type = .message; $0.typeName = ".shop.Other"; $0.label = .optional },
            ]
            $0.enumType = [.with { $0.name = "Kind"; $0.value = [.with { $0.name = "VIEW"; $0.number = 0 }] }]
        }
        var selfContained = click
        selfContained.field.removeLast()
        let path = try self.descriptorSet([selfContained, .with { $0.name = "Other" }])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let schema = try ZerobusSinkConfig.ProtoSchema.load(file: path, message: "shop.Click").get()
        #expect(try Google_Protobuf_DescriptorProto(serializedBytes: schema.descriptor) == selfContained)

        guard case .failure(let missing) = ZerobusSinkConfig.ProtoSchema.load(file: path, message: "shop.Nope") else {
            Issue.record("unknown message loaded")
            return
        }
        #expect(missing.description.contains("shop.Click, shop.Other"))

        let outside = try self.descriptorSet([click, .with { $0.name = "Other" }])
        defer { try? FileManager.default.removeItem(atPath: outside) }
        guard case .failure(let error) = ZerobusSinkConfig.ProtoSchema.load(file: outside, message: "shop.Click") else {
            Issue.record("a message using another message loaded")
            return
        }
        #expect(error.description.contains("shop.Other"))

        let garbage = NSTemporaryDirectory() + "zb-\(UUID().uuidString).desc"
        try Data("not a descriptor set".utf8).write(to: URL(fileURLWithPath: garbage))
        defer { try? FileManager.default.removeItem(atPath: garbage) }
        if case .success = ZerobusSinkConfig.ProtoSchema.load(file: garbage, message: "shop.Click") { Issue.record("garbage loaded") }
    }
}
