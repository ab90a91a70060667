import NIOConcurrencyHelpers
import NIOCore
import SluicePolicy
import Testing

@Suite struct IdempotencyKeyTests {
    @Test func bareTokensAndRFC8941StringsAreKeys() throws {
        #expect(try IdempotencyKey.parse("8e03978e-40d5-43e8-bc93-6894a57f9324").get() == "8e03978e-40d5-43e8-bc93-6894a57f9324")
        #expect(try IdempotencyKey.parse(#"  "8e03978e-40d5"  "#).get() == "8e03978e-40d5")
        #expect(try IdempotencyKey.parse(#""with space and \"quote\" and \\""#).get() == #"with space and "quote" and \"#)
        #expect(try IdempotencyKey.parse(String(repeating: "k", count: 255)).get().count == 255)
    }

    @Test func emptyLongOddOrBrokenKeysAreRefusedWithAReason() {
        for bad in ["", "  ", #""""#, "two words", #""open"#, #""a"b""#, #""bad \n escape""#, "caf\u{e9}", String(repeating: "k", count: 256), "a\"b"] {
            guard case .failure(let problem) = IdempotencyKey.parse(bad) else {
                Issue.record("accepted \(bad.debugDescription)")
                continue
            }
            #expect(!problem.message.isEmpty)
        }
    }
}

@Suite struct IdempotentRecordTests {
    @Test func aRecordSurvivesItsTextForm() {
        let fingerprint = String(repeating: "ab", count: 32)
        let records = [
            IdempotentRecord(
                fingerprint: fingerprint, status: 200, headers: [.init(name: "content-type", value: "application/json"), .init(name: "x-a", value: "b: c")],
                body: Array(#"{"accepted":2,"results":[{"partition":0,"offset":7}]}"#.utf8) + [0, 0xFF, 10], bodyBytes: 56),
            IdempotentRecord(fingerprint: fingerprint, status: 422, headers: [], body: [], bodyBytes: 0),
            IdempotentRecord(fingerprint: fingerprint, status: 200, headers: [.init(name: "content-type", value: "application/json")], body: nil, bodyBytes: 900_000),
        ]
        for record in records {
            #expect(IdempotentRecord.decode(record.encoded()) == record)
        }
        #expect(IdempotentRecord.decode("P1234") == nil)
        #expect(IdempotentRecord.decode("D1 short 200 0 0\n\n") == nil)
        #expect(IdempotentRecord.decode("D1 \(fingerprint) 200 3 1\n\n!!!") == nil, "a body that is not base64")
    }

    @Test func theFingerprintCoversEveryFieldAndItsBoundaries() {
        func digest(_ fields: [String], _ body: [String]) -> String {
            var fingerprint = RequestFingerprint()
            for field in fields { fingerprint.add(field: field) }
            for part in body { fingerprint.add(body: ByteBuffer(string: part)) }
            return fingerprint.finish()
        }
        let base = digest(["POST", "/events"], ["{\"a\":1}\n", "{\"b\":2}\n"])
        #expect(base.count == 64)
        #expect(base == digest(["POST", "/events"], ["{\"a\":1}\n{\"b\":2}\n"]), "the body's chunking does not matter")
        #expect(base != digest(["POST", "/events"], ["{\"a\":1}\n"]))
        #expect(base != digest(["POST", "/event", "s"], ["{\"a\":1}\n{\"b\":2}\n"]), "fields are length-prefixed")
        #expect(base != digest(["PUT", "/events"], ["{\"a\":1}\n{\"b\":2}\n"]))
    }
}

@Suite struct MemoryIdempotencyStoreTests {
    final class HandClock: Sendable {
        let value = NIOLockedValueBox(Duration.seconds(1000))
        func advance(_ by: Duration) { self.value.withLockedValue { $0 += by } }
    }

    static func record(_ body: Int = 10) -> IdempotentRecord {
        IdempotentRecord(fingerprint: String(repeating: "0", count: 64), status: 200, headers: [], body: Array(repeating: 0x61, count: body), bodyBytes: body)
    }

    static func ticket(_ claim: IdempotencyClaim) -> IdempotencyTicket? {
        if case .claimed(let ticket) = claim { return ticket }
        return nil
    }

    @Test func aKeyIsClaimedOnceInFlightThenAnsweredThenForgottenAfterItsWindow() async throws {
        let clock = HandClock()
        let store = MemoryIdempotencyStore(window: .seconds(60), maxKeys: 10, maxBytes: 1 << 20) { clock.value.withLockedValue { $0 } }
        let ticket = try #require(Self.ticket(await store.claim("k")))
        guard case .inFlight = await store.claim("k") else { Issue.record("a second claim while the first runs"); return }
        await store.complete(ticket, with: Self.record())
        guard case .completed(let kept) = await store.claim("k") else { Issue.record("the answer is kept"); return }
        #expect(kept == Self.record())
        clock.advance(.seconds(59))
        guard case .completed = await store.claim("k") else { Issue.record("kept for the window"); return }
        clock.advance(.seconds(1))
        #expect(Self.ticket(await store.claim("k")) != nil, "expired: the key is new again")
        #expect(store.forgottenEarly == 0)
    }

    @Test func aReleasedKeyRunsAgainAndAStaleTicketChangesNothing() async throws {
        let store = MemoryIdempotencyStore(window: .seconds(60), maxKeys: 10, maxBytes: 1 << 20)
        let first = try #require(Self.ticket(await store.claim("k")))
        await store.release(first)
        let second = try #require(Self.ticket(await store.claim("k")))
        await store.complete(first, with: Self.record(1))
        await store.release(first)
        guard case .inFlight = await store.claim("k") else { Issue.record("the stale ticket neither answered nor let go the new claim"); return }
        await store.complete(second, with: Self.record(2))
        guard case .completed(let kept) = await store.claim("k") else { Issue.record("answered"); return }
        #expect(kept.body?.count == 2)
    }

    @Test func pastMaxKeysTheOldestAnsweredKeyGoesAndKeysInFlightNever() async throws {
        let store = MemoryIdempotencyStore(window: .seconds(60), maxKeys: 3, maxBytes: 1 << 20)
        for key in ["a", "b"] {
            let ticket = try #require(Self.ticket(await store.claim(key)))
            await store.complete(ticket, with: Self.record())
        }
        _ = try #require(Self.ticket(await store.claim("running")))
        _ = try #require(Self.ticket(await store.claim("c")), "full: the oldest answered key (a) makes room")
        #expect(store.forgottenEarly == 1)
        _ = try #require(Self.ticket(await store.claim("a")), "a was forgotten: new again (and b goes)")
        #expect(store.forgottenEarly == 2)
        #expect(store.count == 3)
        // running, c and a are all in flight: nothing may be forgotten.
        guard case .full = await store.claim("d") else { Issue.record("every key in flight: full"); return }
        guard case .inFlight = await store.claim("running") else { Issue.record("kept while in flight"); return }
    }

    @Test func pastMaxBytesTheOldestAnswersGo() async throws {
        let store = MemoryIdempotencyStore(window: .seconds(60), maxKeys: 100, maxBytes: 10_000)
        for key in 0..<5 {
            let ticket = try #require(Self.ticket(await store.claim("k\(key)")))
            await store.complete(ticket, with: Self.record(3000))
        }
        #expect(store.forgottenEarly == 2, "three answers of about 3.3 KB fit in 10 KB")
        guard case .completed = await store.claim("k2") else { Issue.record("the newest three are kept"); return }
        #expect(Self.ticket(await store.claim("k0")) != nil)
    }
}
