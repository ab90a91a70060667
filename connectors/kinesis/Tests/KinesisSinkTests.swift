import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import SluiceCore
import Testing

@testable import KinesisSink

/// What the sink refuses before anything is sent, and where credentials come from.
struct KinesisSinkTests {
    /// A sink whose endpoint nobody listens on: anything it tried to send would fail later as a
    /// retryable connection error, so an immediate non-retryable answer proves nothing was sent.
    static func sink() throws -> KinesisSink {
        try KinesisSink(
            config: KinesisSinkConfig(
                region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:9")!,
                credentials: .static(accessKeyID: .literal("AKID"), secretAccessKey: .environment("S"), sessionToken: nil),
                deliveryTimeout: .seconds(30)),
            context: SinkContext(
                name: "k", budget: InFlightBudget(maxBytes: 64 << 20, maxEvents: 1000), flushTimeout: .seconds(1), logger: Logger(label: "test"),
                environment: ["S": "secret"]))
    }

    @Test func eventsOverTheServiceLimitsAreRefusedBeforeSending() async throws {
        let sink = try Self.sink()
        let tracker = DeliveryTracker()
        let events = [
            Event(value: ByteBuffer(repeating: 0x61, count: 1024 * 1024), key: ByteBuffer(string: "k")),  // data + key > 1 MiB
            Event(value: ByteBuffer(string: "x"), key: ByteBuffer(string: String(repeating: "é", count: 257))),  // 257 characters
            Event(value: ByteBuffer(string: "x"), key: ByteBuffer(bytes: [0xFF, 0xFE])),  // not UTF-8
        ]
        let first = tracker.reserve(events.count)
        tracker.seal()
        let queued = await sink.enqueue(events, topic: "s", tracker: tracker, firstIndex: first, deadline: .now + .seconds(1))
        #expect(queued == 3)
        let results = await tracker.results(deadline: .now + .seconds(2), unsettled: .notAttempted)
        let codes = results.map { result -> String in
            if case .failed(let failure) = result, !failure.isRetryable { return failure.code }
            return "\(result)"
        }
        #expect(codes == ["event_too_large", "invalid_partition_key", "invalid_partition_key"])
        #expect(sink.budget.inFlight.bytes == 0, "refused events give their budget back")
        await sink.shutdown()
    }

    @Test func aKeyOf256CharactersIsAccepted() throws {
        let sink = try Self.sink()
        let key = String(repeating: "é", count: 256)
        #expect(try sink.partitionKey(for: Event(value: ByteBuffer(string: "x"), key: ByteBuffer(string: key))).get() == key)
        // Without a key: random, 1 to 32 hex digits, different each time.
        let a = try sink.partitionKey(for: Event(value: ByteBuffer(string: "x"))).get()
        let b = try sink.partitionKey(for: Event(value: ByteBuffer(string: "x"))).get()
        #expect(a != b && (1...32).contains(a.count) && a.allSatisfy(\.isHexDigit))
        try sink.httpClient.syncShutdown()
    }

    @Test func theDefaultChainPrefersEnvironmentThenWebIdentityThenTheSharedFile() throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { try? client.syncShutdown() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("credentials")
        try "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n[prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = s2\n"
            .write(to: file, atomically: true, encoding: .utf8)

        func source(_ environment: [String: String]) throws -> String {
            try CredentialsResolver.provider(for: .defaultChain, region: "us-east-1", environment: environment, httpClient: client).source
        }
        let shared = ["AWS_SHARED_CREDENTIALS_FILE": file.path]
        let webIdentity = ["AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"]
        let keys = ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s0"]
        #expect(try source(shared.merging(webIdentity) { $1 }.merging(keys) { $1 }).contains("AKIDENV"))
        #expect(try source(shared.merging(webIdentity) { $1 }).contains("web identity"))
        #expect(try source(shared).contains("profile \"default\""))
        #expect(try source(shared.merging(["AWS_PROFILE": "prod"]) { $1 }).contains("profile \"prod\""))
        #expect(throws: CredentialsError.self) { try source(["HOME": directory.path]) }
        #expect(throws: CredentialsError.self) { try source(shared.merging(["AWS_PROFILE": "missing"]) { $1 }) }
    }

    @Test func aProfileIsReadAgainWhenTheFileChanges() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-creds-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "[default]\naws_access_key_id = AKIDOLD\naws_secret_access_key = old\n".write(to: file, atomically: true, encoding: .utf8)
        let provider = try ProfileCredentialsProvider(path: file.path, profile: "default")
        #expect(try await provider.credentials().accessKeyID == "AKIDOLD")
        try "[default]\naws_access_key_id = AKIDNEW\naws_secret_access_key = new\n".write(to: file, atomically: true, encoding: .utf8)
        // A different modification time (atomic writes replace the file; make sure the clock moved).
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(5)], ofItemAtPath: file.path)
        #expect(try await provider.credentials().accessKeyID == "AKIDNEW")
    }

    @Test func secretsFromEnvironmentAndFilesNeverFromTheirNames() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-secret-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "file-secret\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(try CredentialsResolver.read(.file(file.path), what: "secret", environment: [:]) == "file-secret")
        #expect(try CredentialsResolver.read(.environment("X"), what: "secret", environment: ["X": "env-secret"]) == "env-secret")
        do {
            _ = try CredentialsResolver.read(.environment("UNSET_VAR"), what: "secret access key", environment: [:])
            Issue.record("an unset variable must be an error")
        } catch {
            #expect("\(error)".contains("UNSET_VAR"))
        }
    }
}
