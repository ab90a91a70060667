import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import ServiceLifecycle
import SluiceConfigReader
import SluiceCore

/// Delivers events to a Zerobus Ingest service (Databricks): one long-lived `EphemeralStream`
/// per table, records sent with consecutive offsets, and an event delivered only when
/// `durability_ack_up_to_offset` covers it. See `TableStream` for recovery.
///
/// Backpressure: each event holds its share of the sink's in-flight budget until it is acknowledged
/// or failed, and a table's stream has at most `max_in_flight_records` unacknowledged records, so a
/// slow service stalls the requests feeding it instead of growing a queue.
///
/// Delivery is at-least-once: after a stream fails, every record it had not acknowledged is sent
/// again on a new stream, so a record whose ack was lost is stored twice.
public final class ZerobusSink: TunableSink {
    public let name: String
    public var budget: InFlightBudget { self.ledger.budget }
    let ledger: DeliveryLedger
    public let settleTimeout: Duration?
    /// `config.deliveryTimeout` in nanoseconds: added to every event's take time.
    private let deliveryTimeoutNanoseconds: Int64

    public var messagingSystem: String { "databricks_zerobus" }
    let config: ZerobusSinkConfig
    /// The configuration with the batching knobs as they are now (`PATCH /sinks/{name}`).
    let live: SluiceCore.AtomicBox<ZerobusSinkConfig>
    let tokens: ZerobusTokenProvider
    let client: Databricks_Zerobus_Zerobus.Client<HTTP2ClientTransport.Posix>
    let health = ZerobusHealth()
    let logger: Logger
    private let grpc: GRPCClient<HTTP2ClientTransport.Posix>
    private let httpClient: HTTPClient
    private let flushTimeout: Duration
    /// Tables one sink streams to at once (each holds a stream, a little memory and a task).
    static let maxTables = 256
    private let streams = WorkerRegistry<TableStream>(limit: maxTables)

    public init(config: ZerobusSinkConfig, context: SinkContext) throws {
        self.name = context.name
        var logger = context.logger
        logger[metadataKey: "sink"] = "\(context.name)"
        self.logger = logger
        self.config = config
        self.live = SluiceCore.AtomicBox(config)
        self.ledger = context.ledger
        self.flushTimeout = context.flushTimeout
        let environment = context.environment
        // The ticker fails overdue events within a quarter second of their deadline.
        self.settleTimeout = config.deliveryTimeout + .seconds(1)
        self.deliveryTimeoutNanoseconds = MonotonicInstant.nanoseconds(of: config.deliveryTimeout)

        let secret = try config.clientSecret.read(what: "Zerobus client secret", environment: environment)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        var http = HTTPClient.Configuration(tlsConfiguration: tls)
        http.timeout = .init(connect: .seconds(5))
        http.redirectConfiguration = .disallow
        // No client spans of its own: the request's producer span stands for the send, and calls
        // made off the request path would each start a trace of their own.
        http.tracing.tracer = nil
        self.httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        self.tokens = ZerobusTokenProvider(
            workspaceURL: config.workspaceURL, workspaceID: config.effectiveWorkspaceID, clientID: config.clientID, clientSecret: secret,
            httpClient: self.httpClient)

        let host = config.endpoint.host ?? "localhost"
        let port = config.endpoint.port ?? (config.usesTLS ? 443 : 80)
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if config.usesTLS {
            security = .tls { tls in
                if let ca = config.caFile { tls.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
            }
        } else {
            security = .plaintext
        }
        var transportConfig = HTTP2ClientTransport.Posix.Config.defaults
        transportConfig.connection.maxIdleTime = nil
        transportConfig.connection.keepalive = .init(time: .seconds(30), timeout: .seconds(10), allowWithoutCalls: false)
        let transport: HTTP2ClientTransport.Posix
        do {
            // An IP literal is its own target: as a DNS target it would be sent as the TLS server
            // name, which TLS forbids (the certificate is then checked against the address).
            let target: any ResolvableTarget
            let octets = host.split(separator: ".", omittingEmptySubsequences: false)
            if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) {
                target = ResolvableTargets.IPv4.ipv4(host: host, port: port)
            } else if host.contains(":") {
                target = ResolvableTargets.IPv6.ipv6(host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port)
            } else {
                target = ResolvableTargets.DNS.dns(host: host, port: port)
            }
            transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: transportConfig)
        } catch {
            try? self.httpClient.syncShutdown()
            throw error
        }
        self.grpc = GRPCClient(transport: transport)
        self.client = Databricks_Zerobus_Zerobus.Client(wrapping: self.grpc)
        logger.info(
            "zerobus sink created",
            metadata: [
                "endpoint": "\(config.endpoint.absoluteString)", "workspace_url": "\(config.workspaceURL.absoluteString)",
                "client_id": "\(config.clientID)", "tls": "\(config.usesTLS)",
            ])
    }

    /// A route's `topic` names the table: catalog.schema.table.
    public func destinationProblem(_ destination: String) -> String? {
        ZerobusSinkConfig.tableProblem(destination)
    }

    public var isReady: Bool {
        !self.streams.isClosed && self.health.isHealthy
    }

    public func enqueue(
        _ events: [Event], topic: String, tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant
    ) async -> Int {
        await self.ledger.admit(
            events, tracker: tracker, firstIndex: firstIndex, deadline: deadline, chunk: self.live.load().maxBatchRecords
        ) { slot, event, held -> ZerobusEntry? in
            switch self.config.recordType.record(from: event.value, isJSON: event.valueIsJSON, maxBytes: self.config.maxRecordBytes) {
            case .success(let record):
                return ZerobusEntry(record: record, held: held, deadline: MonotonicInstant.now.advanced(byNanoseconds: self.deliveryTimeoutNanoseconds))
            case .failure(let failure):
                self.ledger.refuse(tracker: tracker, slot: slot, with: failure)
                return nil
            }
        } hand: { entries in
            await self.hand(entries, to: topic)
        }
    }

    /// Gives entries (holding budget) to their table's stream; fails them if there is none.
    private func hand(_ entries: [ZerobusEntry], to table: String) async {
        while true {
            guard let stream = self.stream(for: table) else {
                let failure = self.streams.isClosed ? DeliveryFailure.shuttingDown(sink: self.name) : Self.tooManyTables
                for entry in entries {
                    self.ledger.settle(entry.held, with: .failed(failure))
                }
                return
            }
            if await stream.add(entries) { return }
            self.retire(stream)  // it retired between lookup and add: use a new one
        }
    }

    static let tooManyTables = DeliveryFailure(.zerobusTooManyTables, "this sink already streams to \(maxTables) tables")

    private func stream(for table: String) -> TableStream? {
        self.streams.worker(for: table) { TableStream(table: $0, context: self.streamContext) }
    }

    /// Forgets a stream that closed for being idle, and its table's token (a table named by a
    /// request may never come again).
    public var tunables: [SinkTunable] {
        let live = self.live.load()
        return [
            SinkTunable(
                path: ["max_in_flight_records"], value: String(live.maxInFlightRecords),
                help: "records sent on a table's stream and not yet acknowledged (1 to 1,000,000)"),
            SinkTunable(path: ["batch", "max_records"], value: String(live.maxBatchRecords), help: "records per message (1 to 10,000)"),
            SinkTunable(path: ["batch", "max_bytes"], value: ByteSize.format(live.maxBatchBytes), help: "bytes per message (1KiB up to the record limit)"),
        ]
    }

    /// Takes the batching knobs of `settings`; a stream uses them from its next batch on.
    public func retune(to settings: any SinkSettings) async throws(SinkTuningError) {
        guard let settings = settings as? ZerobusSinkConfig else {
            throw SinkTuningError(field: "", message: "not the settings of a zerobus sink")
        }
        var next = self.live.load()
        next.maxInFlightRecords = settings.maxInFlightRecords
        next.maxBatchRecords = settings.maxBatchRecords
        next.maxBatchBytes = settings.maxBatchBytes
        self.live.exchange(next)
    }

    /// What the sink's table streams may use of it.
    private var streamContext: TableStreamContext {
        TableStreamContext(
            sinkName: self.name, ledger: self.ledger, client: self.client, tokens: self.tokens, health: self.health, config: self.config, live: self.live,
            logger: self.logger,
            logRefusal: { [weak self] failure, table in self?.logRefusal(failure, table: table) },
            retire: { [weak self] stream in self?.retire(stream) })
    }

    func retire(_ stream: TableStream) {
        if self.streams.retire(stream, key: stream.table) { self.tokens.forget(table: stream.table) }
    }

    private let refusalLog = LogThrottle(interval: .seconds(60))

    /// Logs records the service refused for good (at most once a minute per code and table).
    func logRefusal(_ failure: DeliveryFailure, table: String) {
        guard self.refusalLog.isDue("\(table)|\(failure.code)") else { return }
        self.logger.error("zerobus refused records; failing them", metadata: ["table": "\(table)", "error": "\(failure.message)"])
    }

    // MARK: - Lifecycle

    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.grpc.runConnections() }
            // Readiness: with a fixed table, ask for its token at start (a wrong client secret shows
            // before the first event) and again while that fails; while streams fail to open, try
            // opening them again without waiting for traffic.
            try? await cancelWhenGracefulShutdown { [self] in
                let table = self.config.table.flatMap { ZerobusSinkConfig.tableProblem($0) == nil ? $0 : nil }
                var reported: String?
                while !Task.isCancelled {
                    if let table, reported == nil || !self.health.tokenWorks {
                        do {
                            _ = try await self.tokens.token(for: table)
                            self.health.tokenSucceeded()
                            if reported != "" { self.logger.info("zerobus sink ready") }
                            reported = ""
                        } catch {
                            self.health.tokenFailed(permanent: (error as? ZerobusTokenError)?.isPermanent ?? false)
                            if reported != "\(error)" {
                                self.logger.warning("zerobus token not available; sink not ready", metadata: ["error": "\(error)"])
                                reported = "\(error)"
                            }
                        }
                    }
                    if self.health.tokenWorks, !self.health.isHealthy {
                        for stream in self.streams.some(8) { await stream.probe() }
                    }
                    try await Task.sleep(for: .seconds(2))
                }
            }
            await self.shutdown()
        }
    }

    /// Sends what is queued and waits for its acks, at most `flushTimeout`; then fails what is left
    /// as retryable, half-closes every stream and closes the connection.
    public func shutdown() async {
        let streams = self.streams.close()
        for stream in streams { await stream.close() }
        let drained = await finishes(within: self.flushTimeout) {
            for stream in streams { await stream.drained() }
        }
        if !drained {
            for stream in streams { await stream.abort() }
            self.logger.warning("zerobus sink: flush timeout passed; unacknowledged events failed as retryable")
        }
        await withTaskGroup(of: Void.self) { group in
            for stream in streams { group.addTask { await stream.stop() } }
        }
        self.grpc.beginGracefulShutdown()
        try? await self.httpClient.shutdown()
        self.logger.info("zerobus sink flushed")
    }
}

/// Whether the sink can deliver: not after three stream attempts in a row failed, nor while the
/// token endpoint refuses the client; again after a stream opens or a token is issued.
final class ZerobusHealth: Sendable {
    private struct State {
        var failures = 0
        var refused = false
        var tokenWorks = true
    }
    private let state = NIOLockedValueBox(State())

    var isHealthy: Bool { self.state.withLockedValue { $0.failures < 3 && !$0.refused && $0.tokenWorks } }
    var tokenWorks: Bool { self.state.withLockedValue { $0.tokenWorks } }

    func succeeded() { self.state.withLockedValue { $0 = State() } }

    /// - Parameter permanent: the credentials were refused.
    func failed(permanent: Bool) {
        self.state.withLockedValue { state in
            state.failures += 1
            if permanent { state.refused = true }
        }
    }

    func tokenSucceeded() {
        self.state.withLockedValue { state in
            state.tokenWorks = true
            state.refused = false
        }
    }

    func tokenFailed(permanent: Bool) {
        self.state.withLockedValue { state in
            state.tokenWorks = false
            if permanent { state.refused = true }
        }
    }
}
