import Foundation
import KinesisSink
import Testing

/// HTTP ingest into Kinesis through the real binary: moto and MiniStack (emulators nobody here
/// wrote, both checking SigV4) and the project's fault-injecting endpoint
/// (scripts/testing/kinesis_fault_server.py) for partial failures, throttling and STS.
@Suite(.timeLimit(.minutes(6))) struct KinesisIngestTests {
    static let peerScript = packageRoot.appendingPathComponent("scripts/testing/kinesis_peer.py").path
    static let faultScript = packageRoot.appendingPathComponent("scripts/testing/kinesis_fault_server.py").path

    struct Key: Decodable {
        var id: String
        var secret: String
    }

    struct StoredRecord: Decodable {
        var shard: String
        var sequence: String
        var partition_key: String
        var data: String
        var predicted_shard: String
    }

    /// moto with SigV4 enforced after the 4 IAM calls of `kinesis_peer.py setup`.
    static func moto() async throws -> PeerProcess {
        try await PeerProcess("moto", ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "{PORT}"], environment: ["INITIAL_NO_AUTH_ACTION_COUNT": "4"])
    }

    static func setUp(_ peer: PeerProcess, stream: String, shards: Int) async throws -> Key {
        let result = try await runProgram("python3", [Self.peerScript, "setup", peer.endpoint, stream, String(shards)])
        guard result.status == 0, let key = try? JSONDecoder().decode(Key.self, from: Data(result.stdout.utf8)) else {
            throw HarnessError("kinesis_peer.py setup failed: \(result.stderr)\n\(peer.logText)")
        }
        return key
    }

    static func read(_ peer: PeerProcess, stream: String, key: Key) async throws -> [StoredRecord] {
        let result = try await runProgram("python3", [Self.peerScript, "read", peer.endpoint, stream, key.id, key.secret])
        struct Records: Decodable { var records: [StoredRecord] }
        guard result.status == 0, let records = try? JSONDecoder().decode(Records.self, from: Data(result.stdout.utf8)) else {
            throw HarnessError("kinesis_peer.py read failed: \(result.stderr)")
        }
        return records.records
    }

    static func config(endpoint: String, stream: String, extra: String = "", credentials: String) -> String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        sinks:
          - name: stream
            kinesis:
              region: us-east-1
              endpoint: "\(endpoint)"
              stream: \(stream)
              credentials: \(credentials)
        \(extra.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
        routes:
          - name: events
            match: { path: /events }
            ingest: { sink: stream, key: "json:/user" }
          - name: named
            match: { path: "/streams/{name}" }
            ingest: { sink: stream, topic: "{name}" }
        """
    }

    struct Result: Decodable {
        var shard_id: String?
        var sequence_number: String?
        var error: Failure?
        struct Failure: Decodable {
            var code: String
            var message: String
            var retryable: Bool
        }
    }

    static func results(_ response: CurlResponse) throws -> [Result] {
        struct Body: Decodable { var results: [Result] }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(response.body.utf8)) else {
            throw HarnessError("not an ingest answer (\(response.status)): \(response.body)")
        }
        return body.results
    }

    @Test func motoGetsEveryAckedEventOnTheShardItsPartitionKeyPredicts() async throws {
        let moto = try await Self.moto()
        let key = try await Self.setUp(moto, stream: "events", shards: 4)
        // One PutRecords at a time: moto numbers a shard's records with max + 1 on its threaded
        // server, so two concurrent calls can give two records one sequence number (and keep one).
        let sluice = try await SluiceProcess(
            config: Self.config(
                endpoint: moto.endpoint, stream: "events", extra: "max_concurrent_requests: 1",
                credentials: "{ access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }"),
            environment: ["TEST_SECRET": key.secret])
        // 300 events: most keyed by user (40 keys), every tenth without a key (random partition key).
        let lines = (0..<300).map { i in i % 10 == 0 ? #"{"n":\#(i)}"# : #"{"user":"u\#(i % 40)","n":\#(i)}"# }
        let response = try await curl(
            ["-X", "POST", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/events"], body: Data(lines.joined(separator: "\n").utf8))
        #expect(response.status == 200, "\(response.body)")
        let results = try Self.results(response)
        #expect(results.count == 300 && results.allSatisfy { $0.error == nil }, "\(response.body.prefix(500))")

        let stored = try await Self.read(moto, stream: "events", key: key)
        let bySequence = Dictionary(stored.map { ("\($0.shard)/\($0.sequence)", $0) }, uniquingKeysWith: { a, _ in a })
        for (i, result) in results.enumerated() {
            let record = bySequence["\(result.shard_id ?? "")/\(result.sequence_number ?? "")"]
            #expect(record?.data == lines[i], "event \(i) acked at \(result.shard_id ?? "?")/\(result.sequence_number ?? "?") is not there")
            #expect(record?.shard == record?.predicted_shard, "event \(i) is not on the shard MD5(partition key) predicts")
            if i % 10 != 0 { #expect(record?.partition_key == "u\(i % 40)") }
        }
        #expect(stored.count == 300)
        #expect(Set(stored.map(\.shard)).count == 4, "keys spread over every shard")

        // A stream named by the client that does not exist: refused, not retried.
        let missing = try await curl(["-X", "POST", "-d", #"{"x":1}"#, "\(sluice.baseURL)/streams/no-such-stream"])
        #expect(missing.status == 404)
        #expect(try Self.results(missing).first?.error?.code == "kinesis_resource_not_found")
        // An invalid stream name never leaves Sluice.
        let invalid = try await curl(["-X", "POST", "-d", #"{"x":1}"#, "\(sluice.baseURL)/streams/bad:name"])
        #expect(invalid.status == 400 && invalid.body.contains("invalid_topic"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func aWrongSecretIsRefusedAtOnceAndMarksTheSinkNotReady() async throws {
        let moto = try await Self.moto()
        let key = try await Self.setUp(moto, stream: "events", shards: 1)
        let sluice = try await SluiceProcess(
            config: Self.config(
                endpoint: moto.endpoint, stream: "events", extra: "delivery_timeout: 120s",
                credentials: "{ access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }"),
            environment: ["TEST_SECRET": key.secret + "x"], waitUntilReady: false)
        var response: CurlResponse?
        for _ in 0..<100 {
            if let answer = try? await curl(["-X", "POST", "-H", "content-type: application/json", "-d", #"{"user":"a"}"#, "\(sluice.baseURL)/events"]), answer.status != 0 {
                response = answer
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let answer = try #require(response)
        // Answered long before the 120 s delivery timeout: a bad signature is not retried.
        #expect(answer.status == 502, "\(answer.body)")
        let error = try #require(try Self.results(answer).first?.error)
        #expect(error.code == "kinesis_signature_does_not_match" && !error.retryable)
        #expect(!sluice.log.contains(key.secret), "the secret must never be logged")
        let ready = try await curl(["http://127.0.0.1:\(sluice.adminPort)/ready"])
        #expect(ready.status == 503 && ready.body.contains(#""stream":"not_ready""#), "\(ready.body)")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func ministackChecksSignaturesExpiryAndKeys() async throws {
        let ministack = try await PeerProcess(
            "ministack", ["ministack"],
            environment: ["AUTH": "true", "BIND_HOST": "127.0.0.1", "GATEWAY_PORT": "{PORT}", "SERVICES": "kinesis,iam,sts", "IOT_MTLS_PORT": "0"])
        let key = try await Self.setUp(ministack, stream: "events", shards: 2)

        // Through Sluice with the IAM user's key: delivered where MiniStack says.
        let good = try await SluiceProcess(
            config: Self.config(
                endpoint: ministack.endpoint, stream: "events", credentials: "{ access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }"),
            environment: ["TEST_SECRET": key.secret])
        let lines = (0..<50).map { #"{"user":"m\#($0 % 7)","n":\#($0)}"# }
        let response = try await curl(["-X", "POST", "-H", "content-type: application/x-ndjson", "\(good.baseURL)/events"], body: Data(lines.joined(separator: "\n").utf8))
        #expect(response.status == 200, "\(response.body)")
        let acked = Set(try Self.results(response).map { "\($0.shard_id ?? "")/\($0.sequence_number ?? "")" })
        let stored = try await Self.read(ministack, stream: "events", key: key)
        #expect(Set(stored.map { "\($0.shard)/\($0.sequence)" }).isSuperset(of: acked) && acked.count == 50)
        #expect(stored.allSatisfy { $0.shard == $0.predicted_shard })
        #expect(try await good.terminate() == 0)

        // A key MiniStack does not know: refused, not retried.
        let unknown = try await SluiceProcess(
            config: Self.config(
                endpoint: ministack.endpoint, stream: "events", credentials: "{ access_key_id: AKIAUNKNOWN0000000000, secret_access_key_env: TEST_SECRET }"),
            environment: ["TEST_SECRET": "not-a-secret"], waitUntilReady: false)
        try await Task.sleep(for: .seconds(1))
        let refused = try await curl(["-X", "POST", "-H", "content-type: application/json", "-d", #"{"user":"a"}"#, "\(unknown.baseURL)/events"])
        #expect(refused.status == 502, "\(refused.body)")
        #expect(try Self.results(refused).first?.error?.code == "kinesis_unrecognized_client")
        #expect(try await unknown.terminate() == 0)

        // Our signer with a clock 10 minutes slow: MiniStack refuses the expired signature, and
        // accepts the same request signed now (so it is the time that is refused).
        func put(signedAt date: Date) async throws -> CurlResponse {
            let body = #"{"Records":[{"Data":"eA==","PartitionKey":"p"}],"StreamName":"events"}"#
            let headers = [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "Kinesis_20131202.PutRecords")]
            let signed = SigV4Signer(region: "us-east-1", service: "kinesis").sign(
                method: "POST", host: "127.0.0.1:\(ministack.port)", path: "/", headers: headers,
                payloadSHA256: SigV4Signer.hexSHA256(Data(body.utf8)), credentials: AWSCredentials(accessKeyID: key.id, secretAccessKey: key.secret),
                date: date)
            let all = headers.map { "\($0.0): \($0.1)" } + signed.headers.map { "\($0.name): \($0.value)" }
            return try await curl(["-X", "POST", ministack.endpoint + "/"] + all.flatMap { ["-H", $0] }, body: Data(body.utf8))
        }
        let expired = try await put(signedAt: Date().addingTimeInterval(-600))
        #expect(expired.status == 400 || expired.status == 403, "\(expired.status) \(expired.body)")
        #expect(expired.body.contains("InvalidSignatureException") && expired.body.lowercased().contains("expired"), "\(expired.body)")
        await #expect(try put(signedAt: Date()).status == 200)
    }

    struct FaultStats: Decodable {
        var calls: Int
        var attempts: [String: Int]
        var stored: [Stored]
        var sts_calls: Int
        var signature_failures: Int
        struct Stored: Decodable {
            var data: String
            var shard: String
            var sequence: String
        }
    }

    static func faultServer() async throws -> PeerProcess {
        try await PeerProcess("kinesis-fault", ["python3", Self.faultScript, "{PORT}", "AKIDFAULT", "fault-secret"])
    }

    static func stats(_ server: PeerProcess) async throws -> FaultStats {
        let response = try await curl([server.endpoint + "/_stats"])
        return try JSONDecoder().decode(FaultStats.self, from: Data(response.body.utf8))
    }

    @Test func onlyFailedEntriesAreRetriedAndNoFailedEventIsAnswered2xx() async throws {
        let server = try await Self.faultServer()
        let sluice = try await SluiceProcess(
            config: Self.config(
                endpoint: server.endpoint, stream: "events", extra: "delivery_timeout: 3s\nlinger: 50ms",
                credentials: "{ access_key_id: AKIDFAULT, secret_access_key_env: TEST_SECRET }"),
            environment: ["TEST_SECRET": "fault-secret"])
        let kinds = ["ok", "fault:throttle-once", "fault:internal-twice", "fault:kms-denied", "fault:throttle-always"]
        let lines = (0..<100).map { i in #"{"user":"u\#(i)","e":"\#(kinds[i % kinds.count]) \#(i)"}"# }
        let response = try await curl(
            ["-X", "POST", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/events"], body: Data(lines.joined(separator: "\n").utf8))
        let results = try Self.results(response)
        #expect(results.count == 100)
        // Some events failed retryable: the request as a whole is not a success.
        #expect(response.status == 503, "\(response.body.prefix(300))")

        let stats = try await Self.stats(server)
        let stored = Dictionary(stats.stored.map { ($0.data, $0) }, uniquingKeysWith: { a, _ in a })
        for (i, line) in lines.enumerated() {
            let attempts = stats.attempts[line] ?? 0
            switch kinds[i % kinds.count] {
            case "ok":
                #expect(attempts == 1, "a record that succeeded was sent \(attempts) times")
                #expect(results[i].error == nil && results[i].sequence_number == stored[line]?.sequence)
            case "fault:throttle-once":
                #expect(attempts == 2)
                #expect(results[i].error == nil && results[i].sequence_number == stored[line]?.sequence)
            case "fault:internal-twice":
                #expect(attempts == 3)
                #expect(results[i].error == nil && results[i].shard_id == stored[line]?.shard)
            case "fault:kms-denied":
                #expect(attempts == 1, "a non-retryable failure is not retried")
                #expect(results[i].error?.code == "kinesis_kms_access_denied" && results[i].error?.retryable == false)
            default:
                #expect(attempts > 2, "throttled records are retried until the delivery timeout")
                #expect(results[i].error?.code == "kinesis_provisioned_throughput_exceeded" && results[i].error?.retryable == true)
                #expect(stored[line] == nil)
            }
        }
        // Nothing answered delivered that the endpoint did not store.
        for (i, result) in results.enumerated() where result.error == nil {
            #expect(stored[lines[i]] != nil)
        }
        #expect(stats.signature_failures == 0)
        #expect(try await sluice.terminate() == 0)
    }

    @Test func throttledCallsHoldTheBudgetSoIngressStallsAndThenRecovers() async throws {
        let server = try await Self.faultServer()
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: stream
                    max_in_flight_events: 20
                    kinesis: { region: us-east-1, endpoint: "\(server.endpoint)", stream: events, delivery_timeout: 60s,
                               credentials: { access_key_id: AKIDFAULT, secret_access_key_env: TEST_SECRET } }
                routes:
                  - name: events
                    match: { path: /events }
                    ingest: { sink: stream, max_wait: 500ms }
                """,
            environment: ["TEST_SECRET": "fault-secret"])
        // Every call is throttled for a while: the 20 events in flight keep their budget.
        _ = try await curl(["-X", "POST", "-d", #"{"throttle_calls": 1000000}"#, server.endpoint + "/_faults"])
        let first = Task { try await curl(["-X", "POST", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/events"], body: Data((0..<20).map { #"{"n":\#($0)}"# }.joined(separator: "\n").utf8)) }
        var inFlight = 0
        var sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"])
        for _ in 0..<100 {
            sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"])
            inFlight = (sinks.json["stream"] as? [String: Any])?["in_flight_events"] as? Int ?? -1
            if inFlight == 20 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(inFlight == 20, "\(sinks.body)")
        // A second request finds no room and is refused after max_wait instead of queueing.
        let second = try await curl(["-X", "POST", "-d", #"{"n":"late"}"#, "\(sluice.baseURL)/events"])
        #expect(second.status == 503 && second.body.contains("sink_saturated"), "\(second.body)")
        // Throttling ends: the held events go through, once each.
        _ = try await curl(["-X", "POST", "-d", #"{"throttle_calls": 0}"#, server.endpoint + "/_faults"])
        let answer = try await first.value
        #expect(answer.status == 200, "\(answer.body)")
        let stats = try await Self.stats(server)
        #expect(stats.stored.count == 20)
        #expect(stats.calls > 2, "throttled calls were retried")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func webIdentityCredentialsComeFromSTSAndAreRenewedBeforeExpiry() async throws {
        let server = try await Self.faultServer()
        let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-wi-\(UUID().uuidString)")
        try "eyJhbGciOiJSUzI1NiJ9.k8s-service-account-token.sig\n".write(to: tokenFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tokenFile) }
        // The default chain, as on EKS: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, STS endpoint overridden.
        let sluice = try await SluiceProcess(
            config: Self.config(endpoint: server.endpoint, stream: "events", credentials: "{}"),
            environment: [
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/sluice", "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path,
                "AWS_ENDPOINT_URL_STS": server.endpoint, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
            ])
        // The issued credentials expire in 302 s and are renewed 300 s ahead: a few seconds of
        // traffic must see several sessions, every call signed with a token STS issued.
        for round in 0..<4 {
            let response = try await curl(["-X", "POST", "-H", "content-type: application/json", "-d", #"{"user":"a","round":\#(round)}"#, "\(sluice.baseURL)/events"])
            #expect(response.status == 200, "\(response.body)")
            try await Task.sleep(for: .milliseconds(1500))
        }
        let stats = try await Self.stats(server)
        #expect(stats.stored.count == 4)
        #expect(stats.sts_calls >= 2, "temporary credentials are renewed before they expire (\(stats.sts_calls) STS calls)")
        #expect(stats.signature_failures == 0)
        #expect(sluice.log.contains("web identity"))
        #expect(!sluice.log.contains("fault-secret") && !sluice.log.contains("session-1-"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func aPartitionKeyTemplateKeysEventsThatHaveNone() async throws {
        let server = try await Self.faultServer()
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: stream
                    kinesis: { region: us-east-1, endpoint: "\(server.endpoint)", stream: events, partition_key: "tenant-{tenant}",
                               credentials: { access_key_id: AKIDFAULT, secret_access_key_env: TEST_SECRET } }
                routes:
                  - name: tenants
                    match: { path: "/tenants/{tenant}/events" }
                    ingest: { sink: stream, key: "json:/user" }
                """,
            environment: ["TEST_SECRET": "fault-secret"])
        let body = #"{"user":"u1","n":1}"# + "\n" + #"{"n":2}"#
        let response = try await curl(
            ["-X", "POST", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/tenants/acme/events"], body: Data(body.utf8))
        #expect(response.status == 200, "\(response.body)")
        let stats = try await curl([server.endpoint + "/_stats"])
        struct Stats: Decodable {
            var stored: [Stored]
            struct Stored: Decodable {
                var data: String
                var partition_key: String
            }
        }
        let stored = try JSONDecoder().decode(Stats.self, from: Data(stats.body.utf8)).stored
        let keys = Dictionary(stored.map { ($0.data, $0.partition_key) }, uniquingKeysWith: { a, _ in a })
        #expect(keys[#"{"user":"u1","n":1}"#] == "u1", "an event's own key wins")
        #expect(keys[#"{"n":2}"#] == "tenant-acme", "an event without a key gets the rendered template")
        #expect(try await sluice.terminate() == 0)
    }
}
