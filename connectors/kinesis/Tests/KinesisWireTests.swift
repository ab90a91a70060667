import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import Testing

@testable import KinesisSink

/// The PutRecords JSON 1.1 wire format and error parsing.
struct KinesisWireTests {
    @Test func requestBodyIsPutRecordsJSON() throws {
        let body = KinesisClient.requestBody(
            stream: "events",
            entries: [
                PutRecordsEntry(data: ByteBuffer(string: "hello"), partitionKey: "k1"),
                PutRecordsEntry(data: ByteBuffer(bytes: [0, 255, 1]), partitionKey: "quote\"key"),
            ])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(object["StreamName"] as? String == "events")
        let records = try #require(object["Records"] as? [[String: String]])
        #expect(records.count == 2)
        #expect(records[0]["Data"].flatMap { Data(base64Encoded: $0) } == Data("hello".utf8))
        #expect(records[1]["Data"].flatMap { Data(base64Encoded: $0) } == Data([0, 255, 1]))
        #expect(records[1]["PartitionKey"] == "quote\"key")
    }

    @Test func anARNIsSentAsStreamARN() throws {
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/events"
        let body = KinesisClient.requestBody(stream: arn, entries: [PutRecordsEntry(data: ByteBuffer(string: "x"), partitionKey: "k")])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(object["StreamARN"] as? String == arn && object["StreamName"] == nil)
    }

    @Test(arguments: [0, 1, 2, 3, 4, 5, 6, 768, 769, 770]) func base64MatchesFoundation(_ length: Int) {
        // (768 and more: every byte value, so every character of the alphabet, at each position.)
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
        var out: [UInt8] = []
        bytes.withUnsafeBytes { Base64.append($0, to: &out) }
        #expect(String(decoding: out, as: UTF8.self) == Data(bytes).base64EncodedString())
        // Appended after what the array holds, which stays as it was.
        var after = Array(#"{"Data":""#.utf8)
        bytes.withUnsafeBytes { Base64.append($0, to: &after) }
        #expect(String(decoding: after, as: UTF8.self) == #"{"Data":""# + Data(bytes).base64EncodedString())
    }

    @Test func randomPartitionKeysAre32HexDigitsAndDiffer() {
        let keys = (0..<100).map { _ in KinesisSink.randomPartitionKey() }
        #expect(keys.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { byte in (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) } })
        #expect(Set(keys).count == 100)
        // Every digit turns up somewhere (none is stuck, e.g. by a wrong shift).
        #expect(Set(keys.joined().utf8).count == 16)
    }

    @Test func partialFailuresKeepTheirPositions() throws {
        let body = ByteBuffer(
            string: #"""
                {"FailedRecordCount":1,"Records":[
                 {"SequenceNumber":"4955","ShardId":"shardId-000000000001"},
                 {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard"}]}
                """#)
        guard case .records(let results) = KinesisClient.parseResults(body, count: 2) else {
            Issue.record("expected per-record results")
            return
        }
        #expect(results[0] == .success(DeliveryReceiptFixture.receipt("shardId-000000000001", "4955")))
        guard case .failure(let error) = results[1] else {
            Issue.record("second record must fail")
            return
        }
        #expect(error.code == "ProvisionedThroughputExceededException" && error.isRetryable && error.isThrottling)
    }

    @Test func theResponseReaderHandlesEscapesUnknownFieldsAndRejectsGarbage() throws {
        let body = ByteBuffer(
            string: #"""
                { "EncryptionType" : "KMS", "Extra": {"a": [1, 2.5e3, true, null, {"b": "c"}]},
                  "FailedRecordCount": 1,
                  "Records": [ {"SequenceNumber": "49\u0035", "ShardId": "shardId-1", "Ignored": 7},
                               {"ErrorCode": "InternalFailure", "ErrorMessage": "say \"hi\" \u00e9"} ] }
                """#)
        let records = try #require(PutRecordsResponseReader.records(body))
        #expect(records.count == 2)
        #expect(records[0] == .init(shardID: "shardId-1", sequenceNumber: "495"))
        #expect(records[1] == .init(errorCode: "InternalFailure", errorMessage: "say \"hi\" é"))
        for garbage in ["", "[]", #"{"Records": [{"a": }]}"#, #"{"Records": [{"a": "b"}"#, #"{"FailedRecordCount": 0}"#, #"{"Records": "x"}"#,
            // Not JSON, though a lax skipper would pass over it: bad literals and numbers,
            // raw control characters, invalid UTF-8, trailing bytes.
            #"{"Records": [], "x": tru}"#, #"{"Records": [], "x": 01}"#, #"{"Records": [], "x": 1.}"#, #"{"Records": [], "x": -}"#,
            "{\"Records\": [{\"a\": \"b\u{01}\"}]}", #"{"Records": []} trailing"#] {
            #expect(PutRecordsResponseReader.records(ByteBuffer(string: garbage)) == nil, "\(garbage)")
        }
        #expect(PutRecordsResponseReader.records(ByteBuffer(string: #"{"Records": []}"#)) == [])
        var invalidUTF8 = ByteBuffer(string: #"{"Records": [{"ShardId": ""#)
        invalidUTF8.writeBytes([0xC3, 0x28])
        invalidUTF8.writeString(#""}]}"#)
        #expect(PutRecordsResponseReader.records(invalidUTF8) == nil, "invalid UTF-8 in a string")
        // Found by fuzzing against Foundation: a name given twice takes its last value, even when
        // that is not a string.
        #expect(PutRecordsResponseReader.records(ByteBuffer(string: #"{"Records": [{"ShardId": "s", "ShardId": {}}]}"#)) == [.init()])
        #expect(PutRecordsResponseReader.records(ByteBuffer(string: #"{"Records": [], "n": -0.5e+10, "t": true, "f": false, "z": null}"#)) == [])
    }

    @Test func aResultCountMismatchIsAnError() {
        let body = ByteBuffer(string: #"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#)
        guard case .failed(let error) = KinesisClient.parseResults(body, count: 2) else {
            Issue.record("a short answer must not be taken as success")
            return
        }
        #expect(error.code == "InvalidResponse")
    }

    @Test func jsonAndXMLErrorsAreParsed() {
        let json = KinesisClient.parseError(
            ByteBuffer(string: #"{"__type":"com.amazonaws.kinesis#ResourceNotFoundException","message":"Stream x not found"}"#), headers: [:])
        #expect(json.code == "ResourceNotFoundException" && json.message == "Stream x not found" && !json.isRetryable)
        let xml = KinesisClient.parseError(
            ByteBuffer(string: "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>bad &amp; wrong</Message></Error></ErrorResponse>"),
            headers: [:])
        #expect(xml.code == "SignatureDoesNotMatch" && xml.message == "bad & wrong" && !xml.isRetryable)
        let header = KinesisClient.parseError(ByteBuffer(), headers: ["x-amzn-ErrorType": "AccessDeniedException:http://internal"])
        #expect(header.code == "AccessDeniedException")
        var server = KinesisError(code: "UnknownError", message: "")
        server.status = 503
        #expect(server.isRetryable)
    }

    @Test func errorCodesBecomeStableSnakeCase() {
        #expect(KinesisSinkError.snakeCase("ProvisionedThroughputExceededException") == "provisioned_throughput_exceeded")
        #expect(KinesisSinkError.snakeCase("SignatureDoesNotMatch") == "signature_does_not_match")
        #expect(KinesisSinkError.snakeCase("KMSThrottlingException") == "kms_throttling")
        #expect(KinesisSinkError.snakeCase("KMSAccessDeniedException") == "kms_access_denied")
        #expect(KinesisSinkError.snakeCase("InternalFailure") == "internal_failure")
    }

    @Test func streamNamesAndARNsAreChecked() {
        #expect(KinesisSinkConfig.streamProblem("events-1.a_b") == nil)
        #expect(KinesisSinkConfig.streamProblem("arn:aws:kinesis:us-east-1:123456789012:stream/events") == nil)
        #expect(KinesisSinkConfig.streamProblem("bad/name") != nil)
        #expect(KinesisSinkConfig.streamProblem("arn:aws:s3:::bucket") != nil)
        #expect(KinesisSinkConfig.streamProblem(String(repeating: "a", count: 129)) != nil)
    }

    @Test func sharedCredentialsFilesAreParsed() {
        let sections = ProfileCredentialsProvider.parseINI(
            """
            # comment
            [default]
            aws_access_key_id = AKIDDEFAULT
            aws_secret_access_key=secret1
            [profile prod]
            aws_access_key_id = AKIDPROD
            aws_secret_access_key = secret2
            aws_session_token = token2
            """)
        #expect(sections["default"]?["aws_access_key_id"] == "AKIDDEFAULT")
        #expect(sections["default"]?["aws_secret_access_key"] == "secret1")
        #expect(sections["prod"]?["aws_session_token"] == "token2")
    }
}

enum DeliveryReceiptFixture {
    static func receipt(_ shard: String, _ sequence: String) -> DeliveryReceipt {
        DeliveryReceipt(shardID: shard, sequenceNumber: sequence)
    }
}
