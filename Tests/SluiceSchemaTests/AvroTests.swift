import SluiceSchema
import Testing

/// Avro's binary encoding of JSON events, byte for byte as the specification writes it.
@Suite struct AvroTests {
    static let order = try! AvroSchema.compile(
        try! JSONParser.parse(
            #"""
            {"type": "record", "name": "Order", "namespace": "shop", "fields": [
              {"name": "id", "type": "long"},
              {"name": "sku", "type": "string"},
              {"name": "note", "type": ["null", "string"], "default": null},
              {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}, "default": "NEW"},
              {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
              {"name": "attributes", "type": {"type": "map", "values": "int"}, "default": {}},
              {"name": "amount", "type": "double"},
              {"name": "paid", "type": "boolean"},
              {"name": "next", "type": ["null", "Order"], "default": null}
            ]}
            """#))

    static func encode(_ text: String) -> Result<[UInt8], SchemaViolation> {
        Self.order.encode(try! JSONParser.parse(text))
    }

    @Test func fieldsAreWrittenInSchemaOrderWithZigzagVarintsAndBlocks() throws {
        let bytes = try Self.encode(
            #"{"paid": true, "amount": 1.5, "sku": "ab", "id": -3, "note": "x", "status": "PAID", "tags": ["t"], "attributes": {"k": 64}}"#
        ).get()
        let expected: [UInt8] =
            [0x05]  // id -3 zigzag = 5
            + [0x04, 0x61, 0x62]  // "ab"
            + [0x02, 0x02, 0x78]  // union branch 1 (string), "x"
            + [0x02]  // PAID = 1
            + [0x02, 0x02, 0x74, 0x00]  // one block of one item "t", end
            + [0x02, 0x02, 0x6B, 0x80, 0x01, 0x00]  // one entry "k" -> 64 (zigzag 128 = 0x80 0x01), end
            + [0, 0, 0, 0, 0, 0, 0xF8, 0x3F]  // 1.5 little-endian
            + [0x01]  // true
            + [0x00]  // next: null (branch 0)
        #expect(bytes == expected)
    }

    @Test func defaultsFillMissingFieldsAndUnionsTakeTheFittingBranchOrTheirTag() throws {
        let minimal = try Self.encode(#"{"id": 1, "sku": "", "amount": 0, "paid": false}"#).get()
        #expect(minimal == [0x02, 0x00, 0x00, 0x00, 0x00, 0x00] + [0, 0, 0, 0, 0, 0, 0, 0] + [0x00, 0x00])
        let nested = try Self.encode(#"{"id": 1, "sku": "", "amount": 0, "paid": false, "next": {"shop.Order": {"id": 2, "sku": "", "amount": 0, "paid": false}}}"#).get()
        #expect(nested.count == minimal.count + minimal.count, "the nested record after its branch index")
        #expect(nested[nested.count - minimal.count - 1] == 0x02, "branch 1: Order")
    }

    @Test func whatDoesNotFitIsNamedWithItsPointer() {
        func problem(_ text: String) -> String? {
            if case .failure(let violation) = Self.encode(text) { return violation.description }
            return nil
        }
        #expect(problem(#"{"sku": "a", "amount": 1, "paid": true}"#) == #"/: avro: missing field "id" of record shop.Order (it has no default)"#)
        #expect(problem(#"{"id": 1.5, "sku": "a", "amount": 1, "paid": true}"#) == "/id: avro: expected a long (64-bit integer), got 1.5")
        #expect(problem(#"{"id": 1, "sku": "a", "amount": 1, "paid": true, "status": "LOST"}"#)
            == #"/status: avro: "LOST" is not a symbol of enum shop.Status (NEW, PAID)"#)
        #expect(problem(#"{"id": 1, "sku": "a", "amount": 1, "paid": true, "extra": 1}"#) == #"/extra: avro: record shop.Order has no field "extra""#)
        #expect(problem(#"{"id": 1, "sku": "a", "amount": 1, "paid": true, "tags": [1]}"#) == "/tags/0: avro: expected string, got number")
        #expect(problem(#"{"id": 1, "sku": "a", "amount": 1, "paid": true, "note": 5}"#) == "/note: avro: the value fits no branch of the union (null, string)")
    }

    @Test func aSchemaThatIsNotAvroIsRefused() {
        #expect(throws: SchemaCompileError.self) { try AvroSchema.compile(try JSONParser.parse(#"{"type": "record", "fields": []}"#)) }
        #expect(throws: SchemaCompileError.self) { try AvroSchema.compile(try JSONParser.parse(#""Unknown""#)) }
        #expect(throws: SchemaCompileError.self) { try AvroSchema.compile(try JSONParser.parse(#"{"type": "enum", "name": "E"}"#)) }
    }
}
