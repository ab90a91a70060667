import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import ServiceLifecycle
import SluiceConfigReader
import SluiceCore

/// Delivers events to Amazon Kinesis Data Streams with PutRecords, signed with SigV4.
///
/// Batching: events for one stream gather into a batch that is sent when it reaches
/// `max_batch_records` / `max_batch_bytes` or has waited `linger`, so batches fill from
/// concurrent requests. An event over a service limit (1 MiB data + key, key 1-256
/// characters) is refused at once, never sent to fail later.
///
/// Delivery: an event is delivered when PutRecords returns its shard and sequence number.
/// Entries that fail with a retryable error (throttling, internal failure, network) are sent
/// again — only those — with exponential backoff and full jitter, until `delivery_timeout`;
/// the rest fail at once with the AWS error code. Retries may reorder events of one partition
/// key (as with any PutRecords client).
///
/// Backpressure: each event holds its share of the sink's in-flight budget until it is settled,
/// retries included, so a throttled stream stalls the requests feeding it instead of growing a
/// queue. Throttling also halves the stream's concurrent calls (regrown by one per clean call).
public final class KinesisSink: TunableSink {
    public let name: String
    public var budget: InFlightBudget { self.ledger.budget }
    let ledger: DeliveryLedger
    public let settleTimeout: Duration?
    /// `config.deliveryTimeout` in nanoseconds: added to every event's take time.
    private let deliveryTimeoutNanoseconds: Int64

    public var messagingSystem: String { "aws_kinesis" }
    let config: KinesisSinkConfig
    /// The configuration with the batching knobs as they are now (`PATCH /sinks/{name}` changes
    /// them): what the pumps read for every batch.
    let live: SluiceCore.AtomicBox<KinesisSinkConfig>
    let client: KinesisClient
    let httpClient: HTTPClient
    let health = KinesisHealth()
    private let logger: Logger
    private let flushTimeout: Duration
    /// Streams one sink keeps batches for at once (each costs a little memory and a task).
    static let maxStreams = 1024
    private let pumps = WorkerRegistry<StreamPump>(limit: maxStreams)

    public init(config: KinesisSinkConfig, context: SinkContext) throws {
        self.name = context.name
        var logger = context.logger
        logger[metadataKey: "sink"] = "\(context.name)"
        self.logger = logger
        self.config = config
        self.live = SluiceCore.AtomicBox(config)
        self.ledger = context.ledger
        self.flushTimeout = context.flushTimeout
        let environment = context.environment
        // An in-flight answer arrives within the request timeout of the delivery deadline.
        self.settleTimeout = config.deliveryTimeout + config.requestTimeout
        self.deliveryTimeoutNanoseconds = MonotonicInstant.nanoseconds(of: config.deliveryTimeout)

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        var http = HTTPClient.Configuration(tlsConfiguration: tls)
        http.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: config.maxConnections)
        http.timeout = .init(connect: .seconds(5))
        http.decompression = .disabled
        http.redirectConfiguration = .disallow
        // No client spans of its own: the request's producer span stands for the send, and calls
        // made off the request path would each start a trace of their own.
        http.tracing.tracer = nil
        self.httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        let credentials: any AWSCredentialsProvider
        do {
            credentials = try CredentialsResolver.provider(
                for: config.credentials, region: config.region, environment: environment, httpClient: self.httpClient)
        } catch {
            try? self.httpClient.syncShutdown()
            throw error
        }
        self.client = KinesisClient(
            endpoint: config.effectiveEndpoint, region: config.region, credentials: credentials, httpClient: self.httpClient,
            requestTimeout: config.requestTimeout)
        logger.info(
            "kinesis sink created",
            metadata: [
                "endpoint": "\(config.effectiveEndpoint.absoluteString)", "region": "\(config.region)", "credentials": "\(credentials.source)",
            ])
    }

    /// A route's `topic` names the stream: a name or an ARN.
    public func destinationProblem(_ destination: String) -> String? {
        KinesisSinkConfig.streamProblem(destination)
    }

    public var isReady: Bool {
        !self.pumps.isClosed && self.health.isHealthy
    }

    public func enqueue(
        _ events: [Event], topic: String, tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant
    ) async -> Int {
        await self.ledger.admit(
            events, tracker: tracker, firstIndex: firstIndex, deadline: deadline, chunk: self.live.load().maxBatchRecords
        ) { slot, event, held -> StreamPump.Entry? in
            let partitionKey: String
            switch self.partitionKey(for: event) {
            case .success(let key): partitionKey = key
            case .failure(let failure):
                self.ledger.refuse(tracker: tracker, slot: slot, with: failure)
                return nil
            }
            let bytes = event.value.readableBytes + partitionKey.utf8.count
            if bytes > KinesisSinkConfig.maxRecordBytes {
                self.ledger.refuse(
                    tracker: tracker, slot: slot,
                    with: DeliveryFailure(
                        .eventTooLarge, "a Kinesis record holds at most 1 MiB of data and partition key; this one has \(bytes) bytes"))
                return nil
            }
            return StreamPump.Entry(
                data: event.value, partitionKey: partitionKey, bytes: bytes, held: held,
                deadline: MonotonicInstant.now.advanced(byNanoseconds: self.deliveryTimeoutNanoseconds))
        } hand: { entries in
            await self.hand(entries, to: topic)
        }
    }

    /// Gives entries (holding budget) to their stream's pump; fails them if there is none.
    private func hand(_ entries: [StreamPump.Entry], to stream: String) async {
        while true {
            guard let pump = self.pump(for: stream) else {
                let failure = self.pumps.isClosed ? DeliveryFailure.shuttingDown(sink: self.name) : Self.tooManyStreams
                for entry in entries { self.ledger.settle(entry.held, with: .failed(failure)) }
                return
            }
            if await pump.add(entries) { return }
            self.retire(pump)  // it retired between lookup and add: use a new one
        }
    }

    /// Forgets a pump that stopped for being idle.
    func retire(_ pump: StreamPump) {
        self.pumps.retire(pump, key: pump.stream)
    }

    private let refusalLog = LogThrottle(interval: .seconds(60))

    /// Logs a call Kinesis refused for good (at most once a minute per error code and stream).
    func logRefusal(_ error: KinesisError, stream: String, records: Int) {
        guard self.refusalLog.isDue("\(stream)|\(error.code)") else { return }
        self.logger.error(
            "kinesis refused PutRecords; failing its records", metadata: ["stream": "\(stream)", "error": "\(error)", "records": "\(records)"])
    }

    static let tooManyStreams = DeliveryFailure(.kinesisTooManyStreams, "this sink already writes to \(maxStreams) streams")

    private func pump(for stream: String) -> StreamPump? {
        self.pumps.worker(for: stream) { stream in
            let pump = StreamPump(stream: stream, context: self.pumpContext)
            Task { await pump.run() }
            return pump
        }
    }

    /// The event's key as the partition key; without one, the configured fallback.
    func partitionKey(for event: Event) -> Result<String, DeliveryFailure> {
        if let key = event.key, key.readableBytes > 0 {
            guard let text = key.getString(at: key.readerIndex, length: key.readableBytes), text.utf8.count == key.readableBytes else {
                return .failure(
                    DeliveryFailure(.invalidPartitionKey, "a Kinesis partition key must be UTF-8 text"))
            }
            // (Characters are counted only when the bytes could be too many: counting them is
            // grapheme breaking, per event.)
            guard key.readableBytes <= KinesisSinkConfig.maxPartitionKeyLength || text.count <= KinesisSinkConfig.maxPartitionKeyLength else {
                return .failure(
                    DeliveryFailure(.invalidPartitionKey, "a Kinesis partition key has 1 to 256 characters; this one has \(text.count)"))
            }
            return .success(text)
        }
        switch self.config.partitionKey {
        case .fixed(let key): return .success(key)
        case .random, .template:  // a template is rendered by the route; nothing left to render here
            return .success(Self.randomPartitionKey())
        }
    }

    /// 32 random hex digits (128 bits: spread evenly over the shards' hash ranges), written in
    /// one string allocation.
    static func randomPartitionKey() -> String {
        var generator = SystemRandomNumberGenerator()
        let halves = (generator.next() as UInt64, generator.next() as UInt64)
        return String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for k in 0..<16 {
                let shift = UInt64(60 - 4 * k)
                buffer[k] = digits.utf8Start[Int(halves.0 >> shift & 0xF)]
                buffer[16 + k] = digits.utf8Start[Int(halves.1 >> shift & 0xF)]
            }
            return 32
        }
    }

    // MARK: - Lifecycle

    public func run() async throws {
        // Probe at start (so readiness reflects bad credentials before the first event) and
        // again while unhealthy (so readiness recovers without traffic).
        try? await cancelWhenGracefulShutdown { [self] in
            var reported: String?
            while !Task.isCancelled {
                if !self.health.isHealthy || reported == nil {
                    if let error = await self.client.probe() {
                        self.health.failed(error, probe: true)
                        if reported != error.code {
                            self.logger.warning("kinesis endpoint not usable; sink not ready", metadata: ["error": "\(error)"])
                            reported = error.code
                        }
                    } else {
                        self.health.succeeded()
                        if reported != "" { self.logger.info("kinesis sink ready") }
                        reported = ""
                    }
                }
                try await Task.sleep(for: self.health.isHealthy ? .seconds(5) : .seconds(1))
            }
        }
        await self.shutdown()
    }

    /// Sends what is queued (ignoring linger) and waits for it, at most `flushTimeout`; then
    /// fails what is left as retryable and closes the connections.
    public func shutdown() async {
        let pumps = self.pumps.close()
        for pump in pumps { await pump.close() }
        let drained = await finishes(within: self.flushTimeout) {
            for pump in pumps { await pump.drained() }
        }
        if !drained {
            for pump in pumps { await pump.abort() }
            self.logger.warning("kinesis sink: flush timeout passed; undelivered events failed as retryable")
        }
        try? await self.httpClient.shutdown()
        self.logger.info("kinesis sink flushed")
    }

    // MARK: - Tuning

    public var tunables: [SinkTunable] {
        let live = self.live.load()
        return [
            SinkTunable(path: ["max_batch_records"], value: String(live.maxBatchRecords), help: "records per PutRecords call (1 to 500)"),
            SinkTunable(path: ["max_batch_bytes"], value: ByteSize.format(live.maxBatchBytes), help: "bytes per PutRecords call (1KiB to 5MiB)"),
            SinkTunable(path: ["linger"], value: DurationText.format(live.linger), help: "how long a batch waits for more records (at most 10s)"),
            SinkTunable(
                path: ["max_concurrent_requests"], value: String(live.maxConcurrentRequests),
                help: "PutRecords calls in flight per stream (1 to 256; halved on throttling)"),
        ]
    }

    /// Takes the batching knobs of `settings`; batches being gathered use them from their next
    /// decision on, calls in flight finish as they are.
    public func retune(to settings: any SinkSettings) async throws(SinkTuningError) {
        guard let settings = settings as? KinesisSinkConfig else {
            throw SinkTuningError(field: "", message: "not the settings of a kinesis sink")
        }
        var next = self.live.load()
        next.maxBatchRecords = settings.maxBatchRecords
        next.maxBatchBytes = settings.maxBatchBytes
        next.linger = settings.linger
        next.maxConcurrentRequests = settings.maxConcurrentRequests
        self.live.exchange(next)
    }

    // MARK: - Pumps

    /// What the sink's pumps may use of it.
    private var pumpContext: StreamPumpContext {
        StreamPumpContext(
            sinkName: self.name, ledger: self.ledger, client: self.client, health: self.health, config: self.config, live: self.live,
            logRefusal: { [weak self] error, stream, records in self?.logRefusal(error, stream: stream, records: records) },
            retire: { [weak self] pump in self?.retire(pump) })
    }
}

/// Whether Kinesis has been answering: not healthy after three calls in a row failed on the
/// network or with a 5xx, or after a call was refused for its credentials; healthy again after
/// the next call that succeeds.
final class KinesisHealth: Sendable {
    private let state = NIOLockedValueBox((failures: 0, credentialsRefused: false))

    var isHealthy: Bool { self.state.withLockedValue { $0.failures < 3 && !$0.credentialsRefused } }

    func succeeded() { self.state.withLockedValue { $0 = (0, false) } }

    /// - Parameter probe: a failed probe counts as three failed calls (it is sent only to decide).
    func failed(_ error: KinesisError, probe: Bool = false) {
        self.state.withLockedValue { state in
            if Self.refusesCredentials(error) {
                state.credentialsRefused = true
            } else if error.code == "ConnectionError" || error.code == "Timeout" || (error.status ?? 0) >= 500 {
                state.failures += probe ? 3 : 1
            }
        }
    }

    /// Errors that say the credentials themselves (not one stream's permissions) are no good.
    static func refusesCredentials(_ error: KinesisError) -> Bool {
        [
            "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignatureException",
            "MissingAuthenticationTokenException", "InvalidClientTokenId", "CredentialsUnavailable",
        ].contains(error.code)
    }
}
