import Foundation
import Logging
import NIOConcurrencyHelpers
import SluiceConfig
import SluiceConfigReader
import SluiceCore
@testable import SluiceIngest
import Testing

/// The registry lookup against a scripted registry: ids kept, failures remembered for
/// retry_after, registration only with auto_register, at most max_subjects kept, and producers
/// told as little as they need.
@Suite struct SchemaRegistryClientTests {
    /// A registry that answers from a script and records each call.
    final class ScriptedRegistry: Sendable {
        let calls = NIOLockedValueBox<[(url: String, body: String)]>([])
        let answer: @Sendable (String, String) throws -> (Int, String)

        init(_ answer: @escaping @Sendable (String, String) throws -> (Int, String)) {
            self.answer = answer
        }

        var transport: SchemaRegistryTransport {
            { url, body in
                let text = String(decoding: body, as: UTF8.self)
                self.calls.withLockedValue { $0.append((url, text)) }
                let (status, answer) = try self.answer(url, text)
                return (status, Array(answer.utf8))
            }
        }

        var urls: [String] { self.calls.withLockedValue { $0.map(\.url) } }
    }

    final class HandClock: Sendable {
        let now = NIOLockedValueBox(ContinuousClock.now)
        func advance(_ duration: Duration) { self.now.withLockedValue { $0 += duration } }
    }

    struct Unreachable: Error {}

    static func client(
        _ registry: ScriptedRegistry, clock: HandClock = HandClock(), _ tweak: (inout SchemaRegistryConfig) -> Void = { _ in }
    ) -> SchemaRegistryClient {
        var config = SchemaRegistryConfig(url: "http://registry:8081", schemaType: "AVRO", schema: #"{"type":"string","doc":"a \"quoted\" word"}"#)
        tweak(&config)
        return SchemaRegistryClient(config: config, logger: Logger(label: "t"), transport: registry.transport, clock: { clock.now.withLockedValue { $0 } })
    }

    @Test func anIdIsLookedUpOncePerSubjectAndKept() async {
        let registry = ScriptedRegistry { _, _ in (200, #"{"subject":"orders-value","id":42,"version":3,"schema":"\"string\""}"#) }
        let client = Self.client(registry)
        #expect(await client.schemaID(topic: "orders") == .success(42))
        #expect(await client.schemaID(topic: "orders") == .success(42))
        #expect(registry.urls == ["http://registry:8081/subjects/orders-value"])
        let body = registry.calls.withLockedValue { $0.first?.body }
        #expect(body == #"{"schema":"{\"type\":\"string\",\"doc\":\"a \\\"quoted\\\" word\"}"}"#, "the Avro text, escaped, and no schemaType")
    }

    @Test func concurrentRequestsForOneSubjectShareOneCall() async {
        let registry = ScriptedRegistry { _, _ in
            Thread.sleep(forTimeInterval: 0.05)
            return (200, #"{"id":7}"#)
        }
        let client = Self.client(registry)
        let ids = await withTaskGroup(of: Result<UInt32, IngestError>.self) { group in
            for _ in 0..<8 { group.addTask { await client.schemaID(topic: "orders") } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(ids.count == 8 && ids.allSatisfy { $0 == .success(7) })
        #expect(registry.urls.count == 1)
    }

    @Test func anUnregisteredSchemaFailsUntilRetryAfterAndIsNotRegisteredUnlessAsked() async {
        let registered = NIOLockedValueBox(false)
        let registry = ScriptedRegistry { _, _ in
            registered.withLockedValue { $0 } ? (200, #"{"id":9}"#) : (404, #"{"error_code":40403,"message":"Schema not found"}"#)
        }
        let clock = HandClock()
        let client = Self.client(registry, clock: clock) { $0.retryAfter = .seconds(5) }
        guard case .failure(let error) = await client.schemaID(topic: "orders") else {
            Issue.record("an unregistered schema fails")
            return
        }
        #expect(error.code == .schemaNotRegistered)
        #expect(error.code.isRetryable && error.code.httpStatus == 503)
        #expect(error.message.contains(#"subject "orders-value""#) && !error.message.contains("registry:8081"), "\(error.message)")
        registered.withLockedValue { $0 = true }
        #expect(await client.schemaID(topic: "orders") == .failure(error), "remembered for retry_after")
        #expect(registry.urls.count == 1)
        clock.advance(.seconds(6))
        #expect(await client.schemaID(topic: "orders") == .success(9))
        #expect(registry.urls == ["http://registry:8081/subjects/orders-value", "http://registry:8081/subjects/orders-value"])
    }

    @Test func autoRegisterRegistersWhatTheSubjectLacksAndReportsARefusal() async {
        let registry = ScriptedRegistry { url, _ in
            if url.hasSuffix("/versions") { return url.contains("legacy") ? (409, #"{"error_code":409,"message":"incompatible"}"#) : (200, #"{"id":12}"#) }
            return (404, #"{"error_code":40401,"message":"Subject not found"}"#)
        }
        let client = Self.client(registry) {
            $0.autoRegister = true
            $0.schemaType = "PROTOBUF"
            $0.schema = "syntax = \"proto3\";\nmessage Order { string id = 1; }\n"
        }
        #expect(await client.schemaID(topic: "orders") == .success(12))
        #expect(registry.urls == ["http://registry:8081/subjects/orders-value", "http://registry:8081/subjects/orders-value/versions"])
        let body = registry.calls.withLockedValue { $0.last?.body }
        #expect(body == #"{"schema":"syntax = \"proto3\";\nmessage Order { string id = 1; }\n","schemaType":"PROTOBUF"}"#)
        guard case .failure(let refused) = await client.schemaID(topic: "legacy") else {
            Issue.record("a refused registration fails")
            return
        }
        #expect(refused.code == .schemaNotRegistered)
        #expect(refused.message.contains("incompatible with the subject's schemas"), "\(refused.message)")
    }

    @Test func anUnreachableOrConfusedRegistryIsUnavailableAndSaysNoMoreThanThat() async {
        let unreachable = Self.client(ScriptedRegistry { _, _ in throw Unreachable() })
        guard case .failure(let error) = await unreachable.schemaID(topic: "orders") else {
            Issue.record("an unreachable registry fails")
            return
        }
        #expect(error.code == .schemaRegistryUnavailable && error.code.isRetryable)
        #expect(!error.message.contains("registry:8081") && !error.message.contains("Unreachable"), "\(error.message)")
        for (status, body) in [(500, #"{"error_code":50001,"message":"store"}"#), (401, "{}"), (200, #"{"no":"id"}"#), (200, #"{"id":-1}"#)] {
            let client = Self.client(ScriptedRegistry { _, _ in (status, body) })
            guard case .failure(let failure) = await client.schemaID(topic: "orders") else {
                Issue.record("\(status) \(body) is not an id")
                continue
            }
            #expect(failure.code == .schemaRegistryUnavailable, "\(status) \(body)")
        }
    }

    @Test func subjectsFollowTheTemplateAreOneEncodedPathSegmentAndAreBounded() async {
        let registry = ScriptedRegistry { url, _ in (200, #"{"id":1}"#) }
        let client = Self.client(registry) {
            $0.subject = try! ParameterTemplate.parse("shop.{topic}").get()
            $0.maxSubjects = 2
        }
        for topic in ["a", "b/c d", "a", "e", "a"] { _ = await client.schemaID(topic: topic) }
        #expect(
            registry.urls == [
                "http://registry:8081/subjects/shop.a", "http://registry:8081/subjects/shop.b%2Fc%20d", "http://registry:8081/subjects/shop.e",
                "http://registry:8081/subjects/shop.a",
            ], "a forgotten when e came in past max_subjects, so asked for again")
    }
}
