import FileSink
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceConfigReader
import SluiceConnections
import SluiceCore
import SluiceGateway
import SluiceHTTP
import Testing

@Suite struct GatewaySnapshotTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-gateway-\(UUID().uuidString)")

    /// A configuration with file sink `archive` (in `dir`), one upstream and one ingest route at `path`.
    func config(
        path: String, dir: String = "a", upstreamPort: Int = 9, timeout: String = "5s", blockStyle: Bool = false, idempotency: String? = nil
    ) throws
        -> SluiceConfiguration
    {
        let directory = self.directory.appendingPathComponent(dir).path
        let file = blockStyle ? "file:\n          directory: '\(directory)'  # the same, spelled otherwise" : "file: { directory: \"\(directory)\" }"
        return try SluiceConfiguration.parse(
            yaml: """
                listeners: [{ name: main, address: "127.0.0.1:0" }]
                sinks:
                  - name: archive
                    \(file)
                upstreams:
                  - name: backend
                    endpoints: ["127.0.0.1:\(upstreamPort)"]
                    timeouts: { request: \(timeout) }
                routes:
                  - name: ingest
                    match: { path: \(path) }
                    ingest: { sink: archive, topic: events }
                """ + (idempotency.map { "\n    idempotency: \($0)" } ?? ""),
            sinkKinds: [FileSink.kind])
    }

    /// Stops what a build made (these tests never run the services).
    static func stop(_ resources: GatewayResources) async {
        for built in resources.sinks.values { await (built.sink as? FileSink)?.shutdown() }
        for built in resources.upstreams.values { await built.upstream.shutdown() }
    }

    static func identical(_ a: (any RunnableSink)?, _ b: (any RunnableSink)?) -> Bool {
        guard let a, let b else { return false }
        return (a as AnyObject) === (b as AnyObject)
    }

    func post(_ responder: GatewayResponder, _ path: String) async -> HTTPResponseStatus {
        await self.send(responder, path).status
    }

    func send(_ responder: GatewayResponder, _ path: String, idempotencyKey: String? = nil) async -> HTTPResponse {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "host", value: "sluice")
        head.headers.add(name: "content-type", value: "application/x-ndjson")
        if let idempotencyKey { head.headers.add(name: "idempotency-key", value: idempotencyKey) }
        var body = RequestBody(chunks: [ByteBuffer(string: "{\"n\":1}\n")])
        return await responder.respond(to: HTTPRequest(head: head, isHTTP2: false), body: &body)
    }

    @Test func aReloadThatKeepsARoutesIdempotencyKeepsItsKeys() async throws {
        let builder = GatewayBuilder(sinkKinds: [FileSink.kind], logger: Logger(label: "t"), environment: [:])
        let configA = try self.config(path: "/a", idempotency: "{ window: 1h }")
        let gateway = try await Gateway(configuration: configA, builder: builder, connectionCap: ClientConnectionCap())
        let responder = GatewayResponder(routes: { gateway.snapshot.load().http })
        #expect(await self.send(responder, "/a", idempotencyKey: "k").status == .ok)

        // Reloaded: the upstream's timeout changed, the route's idempotency did not.
        let configB = try self.config(path: "/a", timeout: "6s", idempotency: "{ window: 1h }")
        let kept = try await builder.resources(for: configB, reusing: gateway.resources)
        #expect(kept.idempotencyStores["ingest"]?.store as AnyObject === gateway.resources.idempotencyStores["ingest"]?.store as AnyObject)
        _ = gateway.snapshot.exchange(builder.snapshot(for: configB, resources: kept, generation: 2))
        let replay = await self.send(responder, "/a", idempotencyKey: "k")
        #expect(replay.status == .ok && replay.headers.first(name: "idempotent-replayed") == "true", "the key survived the reload")

        // Its idempotency changed: a new store, the key is new again.
        let configC = try self.config(path: "/a", idempotency: "{ window: 2h }")
        let fresh = try await builder.resources(for: configC, reusing: kept)
        _ = gateway.snapshot.exchange(builder.snapshot(for: configC, resources: fresh, generation: 3))
        let again = await self.send(responder, "/a", idempotencyKey: "k")
        #expect(again.status == .ok && again.headers[IdempotencyGuard.replayedHeader].isEmpty)
        for resources in [gateway.resources, kept, fresh] { await Self.stop(resources) }
        try? FileManager.default.removeItem(at: self.directory)
    }

    @Test func unchangedSinksAndUpstreamsAreKeptAndChangedOnesRebuilt() async throws {
        let builder = GatewayBuilder(sinkKinds: [FileSink.kind], logger: Logger(label: "t"), environment: [:])
        let first = try await builder.resources(for: try self.config(path: "/a"))
        #expect(first.made.sinks == ["archive"] && first.made.upstreams == ["backend"])

        // Another route, the same sink and upstream entries (written differently is still the same).
        let same = try await builder.resources(for: try self.config(path: "/b", blockStyle: true), reusing: first)
        #expect(same.made.sinks.isEmpty && same.made.upstreams.isEmpty)
        #expect(Self.identical(same.sinks["archive"]?.sink, first.sinks["archive"]?.sink), "the running sink is kept")
        #expect(same.upstreams["backend"]?.upstream === first.upstreams["backend"]?.upstream)

        let changed = try await builder.resources(for: try self.config(path: "/b", dir: "b", timeout: "6s"), reusing: first)
        #expect(changed.made.sinks == ["archive"] && changed.made.upstreams == ["backend"])
        #expect(!Self.identical(changed.sinks["archive"]?.sink, first.sinks["archive"]?.sink))
        for resources in [first, changed] { await Self.stop(resources) }
        try? FileManager.default.removeItem(at: self.directory)
    }

    @Test func requestsAreRoutedByTheSnapshotInTheBoxWhenTheyArrive() async throws {
        let builder = GatewayBuilder(sinkKinds: [FileSink.kind], logger: Logger(label: "t"), environment: [:])
        let configA = try self.config(path: "/a")
        let gateway = try await Gateway(configuration: configA, builder: builder, connectionCap: ClientConnectionCap())
        let responder = GatewayResponder(routes: { gateway.snapshot.load().http })
        #expect(gateway.snapshot.load().generation == 1)
        #expect(await self.post(responder, "/a") == .ok)
        #expect(await self.post(responder, "/b") == .notFound)

        let configB = try self.config(path: "/b")
        let resources = try await builder.resources(for: configB, reusing: gateway.resources)
        let previous = gateway.snapshot.exchange(builder.snapshot(for: configB, resources: resources, generation: 2))
        #expect(previous.generation == 1)
        #expect(await self.post(responder, "/b") == .ok, "the next request sees the new routes")
        #expect(await self.post(responder, "/a") == .notFound)

        await Self.stop(gateway.resources)
        let written = try FileManager.default.contentsOfDirectory(atPath: self.directory.appendingPathComponent("a").path)
            .filter { $0.hasSuffix(".ndjson") }
        let lines = try written.map { try String(contentsOf: self.directory.appendingPathComponent("a/\($0)"), encoding: .utf8) }
            .joined().split(separator: "\n")
        #expect(lines.count == 2, "both accepted events went to the one kept sink")
        try? FileManager.default.removeItem(at: self.directory)
    }
}
