import AsyncHTTPClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceConfig
import SluiceCore
import SluiceTracing
import Tracing

/// A proxy route: forwards each request to an endpoint of the route's upstream (chosen by the
/// split weights and the upstream's balancing) and streams the answer back.
///
/// Request bodies are streamed: the client is read only as fast as the upstream takes the
/// bytes. A body small enough to keep (`retries.max_buffered_body_bytes`, or the mirror's
/// limit) is read first so it can be sent again or copied. Responses stream back part by part,
/// each part read from the upstream only once the previous one has gone to the client.
public final class ProxyHandler: Sendable {
    let routeName: String
    let config: ProxyConfig
    /// The split targets with their cumulative weights.
    let splits: [(upstream: Upstream, cumulativeWeight: Int)]
    let totalWeight: Int
    let mirror: Upstream?
    /// The route's matched prefix, replaced by `config.pathRewrite`.
    let matchedPrefix: String?
    let mirrorsInFlight = NIOLockedValueBox(0)
    let logger: Logger

    public init(routeName: String, config: ProxyConfig, match: RouteMatchConfig, upstreams: [String: Upstream], logger: Logger) {
        self.routeName = routeName
        self.config = config
        var cumulative = 0
        var splits: [(Upstream, Int)] = []
        for split in config.splits where split.weight > 0 {
            guard let upstream = upstreams[split.upstream] else { continue }
            cumulative += split.weight
            splits.append((upstream, cumulative))
        }
        self.splits = splits
        self.totalWeight = cumulative
        self.mirror = config.mirror.flatMap { upstreams[$0.upstream] }
        if case .prefix(let prefix) = match.path { self.matchedPrefix = prefix } else { self.matchedPrefix = nil }
        var logger = logger
        logger[metadataKey: "route"] = "\(routeName)"
        self.logger = logger
    }

    enum Failure: Error {
        case connect, reset, timeout, overloaded
        /// The request itself could not be sent (a header or URL the client library refuses, a
        /// body shorter or longer than declared): the endpoint is not at fault.
        case request
    }

    public func handle(_ request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        // A gRPC call's deadline bounds the whole exchange; the upstream is told what is left of it.
        let grpcDeadline = request.header("grpc-timeout").flatMap(GRPCTimeout.parse).map { NIODeadline.now() + $0 }
        guard let upstream = self.chooseUpstream() else {
            return .error(.noUpstream, message: "no upstream is configured for this route")
        }
        var response: HTTPResponse
        if let upgrade = self.config.upgrade, let protocols = Self.requestedUpgrade(request, allowed: upgrade.protocols) {
            response = await self.tunnel(request, protocols: protocols, to: upstream, config: upgrade)
        } else {
            response = await self.forward(request, body: &body, to: upstream, grpcDeadline: grpcDeadline)
        }
        response.facts.upstream = upstream.name
        return response
    }

    /// The request's `Upgrade` value when it asks, over HTTP/1.1 and without a body, for a
    /// protocol the route passes through (its first token, matched without a version); nil
    /// otherwise (the request is proxied as any other, `Upgrade` dropped).
    static func requestedUpgrade(_ request: HTTPRequest, allowed: [String]) -> String? {
        guard !request.isHTTP2, request.head.version == .http1_1 else { return nil }
        let connection = request.head.headers["connection"].flatMap { $0.split(separator: ",") }
        guard connection.contains(where: { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upgrade" }) else { return nil }
        let values = request.head.headers["upgrade"]
        guard values.count == 1, let first = values[0].split(separator: ",").first else { return nil }
        let name = first.trimmingCharacters(in: .whitespaces).split(separator: "/").first.map { $0.lowercased() } ?? ""
        guard allowed.contains(name) else { return nil }
        let declared = request.header("content-length").flatMap { Int($0) } ?? 0
        guard declared == 0, request.header("transfer-encoding") == nil else { return nil }
        return values[0]
    }

    /// Passes an upgrade request to an endpoint on the client's event loop; a 101 comes back
    /// with the tunnel the listener joins the client to. One attempt (a tunnel is not replayed);
    /// the request slot and the endpoint stay taken until the tunnel closes.
    private func tunnel(_ request: HTTPRequest, protocols: String, to upstream: Upstream, config: UpgradeConfig) async -> HTTPResponse {
        guard let eventLoop = request.eventLoop else {
            return .error(.invalidRequest, message: "an upgrade is only served on an HTTP/1.1 listener connection")
        }
        guard await upstream.acquireSlot() else {
            return .error(.upstreamOverloaded, message: "the upstream is at its request limit", headers: ["retry-after": "1"])
        }
        let hashKey: String? = {
            if case .consistentHash(let header) = upstream.config.loadBalancing { return request.header(header) }
            return nil
        }()
        guard let (index, _) = upstream.pick(hashKey: hashKey, excluding: []) else {
            upstream.releaseSlot()
            return .error(.noHealthyUpstream, message: "no endpoint of the upstream is available")
        }
        let address = upstream.address(of: index)
        let prepared = self.upstreamHead(for: request, hasBody: false)
        var headers = prepared.headers
        headers.replaceOrAdd(name: "connection", value: "upgrade")
        headers.replaceOrAdd(name: "upgrade", value: protocols)
        let head = HTTPRequestHead(version: .http1_1, method: prepared.method, uri: prepared.uri, headers: headers)
        let timeouts = upstream.config.timeouts
        let started = ContinuousClock.now
        do {
            let outcome = try await UpgradeTunnel.open(
                host: address.host, port: address.port, tls: upstream.tunnelTLS, head: head, on: eventLoop,
                connectTimeout: TimeAmount(timeouts.connect), answerTimeout: TimeAmount(timeouts.request),
                idleTimeout: TimeAmount(config.idleTimeout))
            switch outcome {
            case .switched(let answer, let tunnel):
                upstream.metrics.attempt(status: 101, after: .now - started)
                var headers = Self.endToEnd(answer.headers)
                self.config.responseHeaders.apply(to: &headers)
                headers.replaceOrAdd(name: "connection", value: "upgrade")
                if let accepted = answer.headers.first(name: "upgrade") { headers.replaceOrAdd(name: "upgrade", value: accepted) }
                var response = HTTPResponse(status: .switchingProtocols, headers: headers)
                response.tunnel = tunnel
                tunnel.whenClosed {
                    upstream.finished(index, failed: false)
                    upstream.releaseSlot()
                }
                return response
            case .answered(let answer, let body):
                upstream.metrics.attempt(status: answer.status.code, after: .now - started)
                upstream.finished(index, failed: answer.status.code >= 500)
                upstream.releaseSlot()
                var headers = Self.endToEnd(answer.headers)
                headers.remove(name: "content-length")
                self.config.responseHeaders.apply(to: &headers)
                return HTTPResponse(status: answer.status, headers: headers, body: body)
            }
        } catch {
            upstream.metrics.attempt(status: 0, after: .now - started)
            upstream.releaseSlot()
            let timedOut = (error as? UpgradeTunnel.UpgradeFailed)?.reason == .timeout
            upstream.finished(index, failed: true)
            self.logger.debug("upgrade to the upstream failed", metadata: ["upstream": "\(upstream.name)", "error": "\(error)"])
            if timedOut { return .error(.upstreamTimeout, message: "the upstream did not answer in time") }
            if (error as? UpgradeTunnel.UpgradeFailed)?.reason == .answerTooLarge {
                return .error(.upstreamUnavailable, message: "the upstream's answer to the upgrade was too large")
            }
            return .error(.upstreamUnavailable, message: "the upstream could not be reached or cut the connection")
        }
    }

    /// Sends the request to an endpoint of `upstream` (again, within the retry rules) and
    /// answers with its response.
    private func forward(
        _ request: HTTPRequest, body: inout RequestBody, to upstream: Upstream, grpcDeadline: NIODeadline?
    ) async -> HTTPResponse {
        let declaredLength = request.header("content-length").flatMap { Int($0) }
        if let declaredLength, declaredLength > self.config.maxBodyBytes {
            return Self.tooLarge(self.config.maxBodyBytes)
        }

        // Decide how the body travels: none, kept whole (retries, mirror), or streamed.
        var firstPart: ByteBuffer?
        var hasBody: Bool
        if let declaredLength {
            hasBody = declaredLength > 0
        } else if request.isHTTP2 || request.header("transfer-encoding") != nil {
            // HTTP/2 says only by END_STREAM whether a body follows: look at its first part.
            do { firstPart = try await body.next() } catch { return Self.bodyReadFailed() }
            hasBody = firstPart != nil
        } else {
            hasBody = false
        }
        let retries = self.config.retries
        let keepLimit = max(
            retries.attempts > 0 ? retries.maxBufferedBodyBytes : -1,
            self.config.mirror.map { $0.maxBodyBytes } ?? -1)
        var kept: ByteBuffer?
        if !hasBody {
            kept = ByteBuffer()
        } else if let declaredLength, declaredLength <= keepLimit {
            var buffer = firstPart ?? ByteBuffer()
            do {
                while let part = try await body.next() {
                    guard buffer.readableBytes + part.readableBytes <= declaredLength else { return Self.bodyReadFailed() }
                    buffer.writeImmutableBuffer(part)
                }
            } catch {
                return Self.bodyReadFailed()
            }
            kept = buffer
            firstPart = nil
        }

        let head = self.upstreamHead(for: request, hasBody: hasBody)
        if let mirror = self.mirror, let mirrorConfig = self.config.mirror, let kept, kept.readableBytes <= mirrorConfig.maxBodyBytes {
            self.sendMirror(head, body: kept, to: mirror, config: mirrorConfig)
        }

        guard await upstream.acquireSlot() else {
            return .error(.upstreamOverloaded, message: "the upstream is at its request limit", headers: ["retry-after": "1"])
        }
        var slotHeld = true
        defer { if slotHeld { upstream.releaseSlot() } }

        let hashKey: String? = {
            if case .consistentHash(let header) = upstream.config.loadBalancing { return request.header(header) }
            return nil
        }()
        var tried: Set<Int> = []
        var attempt = 0
        // A retry counts against the budget until its attempt has an outcome.
        var retryHeld = false
        defer { if retryHeld { upstream.releaseRetry() } }
        var streamState = StreamState.notStarted(firstPart)
        while true {
            guard let (index, origin) = upstream.pick(hashKey: hashKey, excluding: tried) else {
                return .error(.noHealthyUpstream, message: "no endpoint of the upstream is available")
            }
            tried.insert(index)
            var outgoing = OutgoingRequest(
                origin: origin, endpoint: index, head: head, body: .none, declaredLength: declaredLength, eventLoop: request.eventLoop,
                streamDeadline: grpcDeadline)
            let now = NIODeadline.now()
            var deadline = now + TimeAmount(upstream.config.timeouts.request)
            if let grpcDeadline {
                guard grpcDeadline > now else {
                    upstream.finished(index, failed: false)
                    return .error(.upstreamTimeout, message: "the request's deadline passed")
                }
                deadline = min(deadline, grpcDeadline)
                outgoing.head.headers.replaceOrAdd(name: "grpc-timeout", value: GRPCTimeout.format(grpcDeadline - now))
            }

            let outcome: Result<UpstreamAnswer, any Error>
            var bodyProblem: BodyProblem?
            /// Full duplex (cleartext upstreams): the task still sending the client's body upstream.
            var duplexPump: Task<PumpedBody, Never>?
            var duplexPipe: BodyPipe?
            /// What that task read, once it ends (a rate limit in bytes charges it then).
            var duplexTally: StreamTally?
            if let kept {
                if hasBody { outgoing.body = .bytes(kept) }
                outgoing.trailers = body.trailers
                outcome = await Self.execute(outgoing, on: upstream, deadline: deadline)
            } else if upstream.http1 != nil || upstream.http2 != nil {
                // Full duplex: the body goes upstream from its own task while the answer is
                // awaited and relayed; the listener takes the body back when that task ends.
                let pipe = BodyPipe()
                outgoing.body = .stream(pipe)
                let transfer = UnsafeTransfer(body)
                body = RequestBody(chunks: [])
                let from = streamState
                let tally = StreamTally()
                duplexTally = tally
                duplexPump = Task {
                    var body = transfer.take()
                    let result = await self.pump(&body, from: from, into: pipe)
                    tally.add(events: 0, bytes: body.bytesRead)
                    tally.finish()
                    return PumpedBody(body: body, result: result)
                }
                duplexPipe = pipe
                outcome = await Self.execute(outgoing, on: upstream, deadline: deadline)
                if case .failure(let error) = outcome, let pump = duplexPump {
                    // The pipe was abandoned: the pump has stopped, or stops at its next part.
                    let pumped = await pump.value
                    body = pumped.body
                    duplexPump = nil
                    // Sent again only if the request never left (no connection, no stream): once
                    // its head is out, the endpoint may act on it, body or not.
                    let neverSent = [.connect, .overloaded].contains(Self.classify(error))
                    (streamState, bodyProblem) = Self.after(pumped.result, resendable: neverSent)
                }
            } else {
                // Streamed to AsyncHTTPClient (TLS upstreams): the upstream reads from the pipe
                // while this task reads the client; the answer is relayed once the body is sent.
                let pipe = BodyPipe()
                outgoing.body = .stream(pipe)
                async let executed = Self.execute(outgoing, on: upstream, deadline: deadline)
                let pumped = await self.pump(&body, from: streamState, into: pipe)
                outcome = await executed
                (streamState, bodyProblem) = Self.after(pumped, resendable: true)
            }

            if retryHeld {
                upstream.releaseRetry()
                retryHeld = false
            }
            if let bodyProblem {
                // The client's body was refused or broke: the upstream exchange is moot.
                // An answer is dropped unread: the client closes that connection.
                upstream.finished(index, failed: false)
                return bodyProblem == .tooLarge ? Self.tooLarge(self.config.maxBodyBytes) : Self.bodyReadFailed()
            }

            // Read where it is used: a full-duplex attempt may settle the stream state below.
            var canResend: Bool {
                if kept != nil { return true }
                if case .notStarted = streamState { return true }
                return false
            }
            switch outcome {
            case .success(let response):
                let status = Int(response.status.code)
                let failed = status >= 500
                if let pump = duplexPump {
                    if attempt < retries.attempts, self.shouldRetry(status: status), let pipe = duplexPipe, !pipe.started {
                        // Worth another attempt only if the endpoint took none of the body:
                        // stop the pump and see.
                        pipe.abandon()
                        let pumped = await pump.value
                        body = pumped.body
                        let problem: BodyProblem?
                        (streamState, problem) = Self.after(pumped.result, resendable: true)
                        if let problem {
                            upstream.finished(index, failed: false)
                            return problem == .tooLarge ? Self.tooLarge(self.config.maxBodyBytes) : Self.bodyReadFailed()
                        }
                    } else {
                        slotHeld = false
                        let ticket = AttemptTicket(upstream: upstream, endpoint: index, failed: failed)
                        var answer = await self.downstreamResponse(response, ticket: ticket, isHead: request.head.method == .HEAD)
                        answer.requestBodyHandback = RequestBodyHandback { await pump.value.body }
                        answer.bodyTally = duplexTally
                        return answer
                    }
                }
                if attempt < retries.attempts, canResend, self.shouldRetry(status: status),
                    upstream.acquireRetry(retries)
                {
                    // Dropped unread, as above.
                    upstream.finished(index, failed: failed)
                    retryHeld = true
                    await self.backoff(attempt)
                    attempt += 1
                    continue
                }
                slotHeld = false
                let ticket = AttemptTicket(upstream: upstream, endpoint: index, failed: failed)
                return await self.downstreamResponse(response, ticket: ticket, isHead: request.head.method == .HEAD)
            case .failure(let error):
                let failure = Self.classify(error)
                // Only what the endpoint did counts against it (outlier detection, ejection).
                upstream.finished(index, failed: failure != .overloaded && failure != .request)
                let condition: RetryCondition? = {
                    switch failure {
                    case .connect, .overloaded: return .connectFailure
                    case .reset: return .reset
                    case .timeout: return .timeout
                    case .request: return nil
                    }
                }()
                if attempt < retries.attempts, canResend, let condition, retries.on.contains(condition), upstream.acquireRetry(retries) {
                    retryHeld = true
                    await self.backoff(attempt)
                    attempt += 1
                    continue
                }
                self.logger.debug("upstream request failed", metadata: ["upstream": "\(upstream.name)", "error": "\(error)"])
                return Self.gatewayError(for: error)
            }
        }
    }

    // MARK: - Pieces

    private func chooseUpstream() -> Upstream? {
        guard self.totalWeight > 0 else { return nil }
        if self.splits.count == 1 { return self.splits[0].upstream }
        let roll = Int.random(in: 0..<self.totalWeight)
        return self.splits.first { roll < $0.cumulativeWeight }?.upstream
    }

    private func shouldRetry(status: Int) -> Bool {
        let on = self.config.retries.on
        if self.config.retries.statuses.contains(status) { return true }
        if on.contains(.serverError), status >= 500 { return true }
        if on.contains(.gatewayError), [502, 503, 504].contains(status) { return true }
        return false
    }

    private func backoff(_ attempt: Int) async {
        let base = self.config.retries.backoff
        guard base > .zero else { return }
        let ceiling = base * (1 << min(attempt, 6))
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        try? await Task.sleep(for: .nanoseconds(Int64.random(in: 0...max(nanoseconds, 0))))
    }

    struct UpstreamHead {
        var method: HTTPMethod
        var uri: String
        var headers: HTTPHeaders
    }

    /// The request as the upstream sees it: hop-by-hop headers gone, X-Forwarded-*, the route's
    /// header rewrite and path rewrite.
    ///
    /// The fields are read once and the upstream's list is built in that pass (a filtered copy,
    /// then a lookup and a rebuilding removal or append for each X-Forwarded-* and Host field,
    /// cost ~5,000 instructions per proxied request; NIO's `add` alone walks the name's UTF-8 to
    /// check it is ASCII).
    func upstreamHead(for request: HTTPRequest, hasBody: Bool) -> UpstreamHead {
        let incoming = request.head.headers
        var fields: [(String, String)] = []
        fields.reserveCapacity(incoming.count + 3)
        /// Names the Connection field lists: hop-by-hop for this message.
        var named: [String] = []
        var takesTrailers = false
        var hostSeen = false
        var authority: String?
        /// The X-Forwarded-For list so far (several fields are one list, RFC 9110 5.3).
        var forwardedFor: String?
        let appendsForwardedFor = request.remoteIP != nil
        // An absolute-form target's authority replaces the client's Host field; otherwise that
        // field passes as it came, and HTTP/2's :authority supplies one when there is none.
        let replacesHost = request.targetAuthority != nil
        for (name, value) in incoming {
            switch Self.role(of: name) {
            case .endToEnd:
                fields.append((name, value))
            case .hopByHop:
                continue
            case .connection:
                Self.fieldsNamed(byConnection: value, into: &named)
            case .te:
                // `TE: trailers` is hop-by-hop, but says the client takes trailers (gRPC needs
                // it upstream): passed on as the proxy's own, the only TE value HTTP/2 allows.
                if !takesTrailers { takesTrailers = Self.acceptsTrailers(value) }
            case .pseudo:
                if authority == nil, FieldName.equals(name, ":authority") { authority = value }
            case .contentLength:
                if hasBody { fields.append((name, value)) }
            case .forwardedFor:
                if !appendsForwardedFor {
                    fields.append((name, value))
                } else if let list = forwardedFor {
                    forwardedFor = list + ", " + value
                } else {
                    forwardedFor = value
                }
            case .forwardedProto:
                continue
            case .host:
                hostSeen = true
                if !replacesHost { fields.append((name, value)) }
            }
        }
        if !named.isEmpty {
            Self.remove(named, from: &fields)
            if named.contains(where: { FieldName.equals($0, "x-forwarded-for") }) { forwardedFor = nil }
        }
        if takesTrailers { fields.append(("te", "trailers")) }
        if let ip = request.remoteIP { fields.append(("x-forwarded-for", forwardedFor.map { $0 + ", " + ip } ?? ip)) }
        fields.append(("x-forwarded-proto", request.isTLS ? "https" : "http"))
        if let host = request.targetAuthority ?? (hostSeen ? nil : authority) { fields.append(("host", host)) }
        var headers = HTTPHeaders(fields)
        self.config.requestHeaders.apply(to: &headers)

        var path = request.path
        if let rewrite = self.config.pathRewrite, let prefix = self.matchedPrefix, path.hasPrefix(prefix) {
            let rest = path.dropFirst(prefix.count)
            path = rewrite.hasSuffix("/") && rest.hasPrefix("/") ? rewrite + rest.dropFirst() : rewrite + rest
            if path.isEmpty { path = "/" }
        }
        if let query = request.query { path += "?" + query }
        return UpstreamHead(method: request.head.method, uri: path, headers: headers)
    }

    /// Whether a `TE` value lists `trailers`.
    static func acceptsTrailers(_ te: String) -> Bool {
        te.split(separator: ",").contains { $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "trailers" }
    }

    /// Answers up to this size (by their content-length) are read whole and written in one go:
    /// streaming costs a few thread hops per part, which dominate for small answers.
    static let wholeAnswerLimit = 64 * 1024

    private func downstreamResponse(_ response: UpstreamAnswer, ticket: AttemptTicket, isHead: Bool) async -> HTTPResponse {
        var headers = Self.endToEnd(response.headers)
        self.config.responseHeaders.apply(to: &headers)
        var downstream = HTTPResponse(status: response.status, headers: headers)
        downstream.trailers = response.trailers
        // (Not for answers without a body: their content-length describes another answer.)
        let hasBody = !isHead && response.status.code >= 200 && response.status != .noContent && response.status != .notModified
        if hasBody, case .loop(let body) = response.body, case .whole(let bytes) = body.storage {
            // The cleartext client read it whole already (by its content-length, up to its
            // own whole-answer limit).
            downstream.body = bytes
            return downstream
        }
        if hasBody, let length = response.headers.first(name: "content-length").flatMap({ Int($0) }), length <= Self.wholeAnswerLimit {
            do {
                downstream.body = try await response.body.collect(upTo: length)
                _ = ticket  // held until the answer is read
                return downstream
            } catch {
                // Cut or timed out mid-body: nothing has gone to the client yet.
                ticket.markFailed()
                return Self.gatewayError(for: error)
            }
        }
        downstream.stream = ProxiedBody(body: response.body, ticket: ticket)
        return downstream
    }

    enum StreamState {
        /// Nothing of the body has reached an upstream; the part read but not sent, if any.
        case notStarted(ByteBuffer?)
        case finished
    }

    enum BodyProblem: Equatable { case tooLarge, readFailed }

    /// Where a body stands after its pump ended, and the client's fault if it failed. A body the
    /// endpoint took none of may be sent again when the attempt is `resendable`.
    static func after(_ pumped: PumpResult, resendable: Bool) -> (StreamState, BodyProblem?) {
        switch pumped {
        case .complete: return (.finished, nil)
        case .abandoned(let part, let pipeStarted): return (pipeStarted || !resendable ? .finished : .notStarted(part), nil)
        case .failed(let problem): return (.finished, problem)
        }
    }

    /// A full-duplex pump's end: the body it read (with its trailers) and how it stopped.
    struct PumpedBody: @unchecked Sendable {
        var body: RequestBody
        var result: PumpResult
    }

    enum PumpResult {
        case complete
        /// The upstream stopped taking the body; whether it took any, and the part it left.
        case abandoned(ByteBuffer?, pipeStarted: Bool)
        case failed(BodyProblem)
    }

    /// Reads the client's body into the pipe, part by part, at the pace the upstream takes it.
    private func pump(_ body: inout RequestBody, from state: StreamState, into pipe: BodyPipe) async -> PumpResult {
        var pending: ByteBuffer?
        if case .notStarted(let part) = state { pending = part }
        let limit = self.config.maxBodyBytes
        var total = 0
        while true {
            let part: ByteBuffer
            if let held = pending {
                part = held
                pending = nil
            } else {
                do {
                    guard let next = try await body.next() else {
                        pipe.finish(trailers: body.trailers)
                        return .complete
                    }
                    part = next
                } catch {
                    pipe.finish(throwing: ProxyBodyError.clientBodyFailed)
                    return .failed(.readFailed)
                }
            }
            total += part.readableBytes
            if total > limit {
                pipe.finish(throwing: ProxyBodyError.tooLarge)
                return .failed(.tooLarge)
            }
            guard await pipe.send(part) else {
                // A consumer still waiting on its own task (full duplex) is released too.
                pipe.finish(throwing: ProxyBodyError.abandoned)
                return .abandoned(pipe.started ? nil : part, pipeStarted: pipe.started)
            }
        }
    }

    /// One attempt as both clients take it.
    struct OutgoingRequest {
        var origin: String
        var endpoint: Int
        var head: UpstreamHead
        var body: HTTP1UpstreamClient.OutgoingBody
        var declaredLength: Int?
        /// The client's connection's loop (HTTP/1.1 listeners), where the upstream exchange runs too.
        var eventLoop: (any EventLoop)?
        /// The whole exchange's deadline (a gRPC request's `grpc-timeout`), if it has one.
        var streamDeadline: NIODeadline?
        /// The client's trailers, for a body read whole first (a streamed one carries its own).
        var trailers: HTTPHeaders?
    }

    private static func execute(_ request: OutgoingRequest, on upstream: Upstream, deadline: NIODeadline) async -> Result<UpstreamAnswer, any Error> {
        var headers = request.head.headers
        let method = request.head.method
        // A client span per attempt; the upstream continues its trace (the client's own
        // traceparent is replaced: the upstream's parent is this attempt).
        let span = RequestTracing.startChildSpan(method.rawValue, ofKind: .client)
        if let span {
            for name in RequestTracing.headerNames { headers.remove(name: name) }
            for (name, value) in RequestTracing.headers(of: span) { headers.add(name: name, value: value) }
            let url = request.origin + (request.head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.head.uri)
            span.updateAttributes { attributes in
                attributes["http.request.method"] = method.rawValue
                attributes["url.full"] = url
                attributes["sluice.upstream"] = upstream.name
                if let authority = url.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first {
                    if let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) {
                        attributes["server.address"] = String(authority[..<colon])
                        attributes["server.port"] = port
                    } else {
                        attributes["server.address"] = String(authority)
                    }
                }
            }
        }
        let started = ContinuousClock.now
        do {
            let response: UpstreamAnswer
            // The event-loop clients run the exchange on the client's own loop.
            let address = upstream.address(of: request.endpoint)
            let loop = request.eventLoop ?? MultiThreadedEventLoopGroup.currentEventLoop ?? upstream.eventLoopGroup.next()
            if let http1 = upstream.http1 {
                // Cleartext HTTP/1.1.
                let answer = try await http1.execute(
                    HTTPRequestHead(version: .http1_1, method: method, uri: request.head.uri, headers: headers), body: request.body,
                    endpoint: request.endpoint, host: address.host, port: address.port, on: loop, deadline: deadline)
                response = UpstreamAnswer(
                    status: answer.head.status, headers: answer.head.headers, body: .loop(answer.body), trailers: answer.trailers)
            } else if let http2 = upstream.http2 {
                // HTTP/2 (h2c, or h2 over TLS): a stream on the client's loop's connection, full duplex.
                var head = HTTPRequestHead(version: .http1_1, method: method, uri: request.head.uri, headers: headers)
                if case .bytes(let bytes) = request.body { head.headers.replaceOrAdd(name: "content-length", value: String(bytes.readableBytes)) }
                var exchange: HTTP2UpstreamExchange
                var answer: HTTPResponseHead
                var refusals = 0
                while true {
                    exchange = try await http2.open(
                        head, endpoint: request.endpoint, host: address.host, port: address.port, on: loop, answerDeadline: deadline,
                        streamDeadline: request.streamDeadline)
                    switch request.body {
                    case .none:
                        exchange.finish(trailers: nil)
                    case .bytes(let bytes):
                        exchange.write(.body(.byteBuffer(bytes)))
                        exchange.finish(trailers: request.trailers)
                    case .stream(let pipe):
                        let sending = exchange
                        sending.flush()
                        Task {
                            do {
                                for try await part in pipe { try await sending.send(part) }
                                sending.finish(trailers: pipe.trailers)
                            } catch {
                                // The client's body failed (or the stream did): the endpoint must not
                                // take a cut body for a whole one.
                                sending.reset()
                            }
                        }
                    }
                    do {
                        answer = try await exchange.answer()
                        break
                    } catch HTTP2UpstreamError.refused where refusals == 0 && !request.body.isStream {
                        // Refused unprocessed (a GOAWAY crossed it): once more, on a connection
                        // that takes streams; nothing of it was seen.
                        refusals += 1
                    }
                }
                if answer.headers.contains(name: "grpc-status") {
                    // gRPC's Trailers-Only answer (one HEADERS frame that ends the stream): the
                    // metadata goes on as trailers after a head of its own, which is how the
                    // listener can end a stream.
                    var trailers = HTTPHeaders()
                    var head = HTTPHeaders()
                    for (name, value) in answer.headers {
                        switch name.lowercased() {
                        case "content-type": head.add(name: name, value: value)
                        case "content-length": break
                        default: trailers.add(name: name, value: value)
                        }
                    }
                    answer.headers = head
                    exchange.trailers.set(trailers)
                }
                response = UpstreamAnswer(
                    status: answer.status, headers: answer.headers, body: .stream(HTTP2UpstreamBody(exchange: exchange)),
                    trailers: exchange.trailers)
            } else {
                var outgoing = HTTPClientRequest(url: request.origin + request.head.uri)
                outgoing.method = method
                outgoing.headers = headers
                switch request.body {
                case .none: break
                case .bytes(let bytes): outgoing.body = .bytes(bytes)
                case .stream(let pipe): outgoing.body = .stream(pipe, length: request.declaredLength.map { .known(Int64($0)) } ?? .unknown)
                }
                let answer = try await upstream.client.execute(outgoing, deadline: deadline)
                response = UpstreamAnswer(status: answer.status, headers: answer.headers, body: .client(answer.body))
            }
            upstream.metrics.attempt(status: response.status.code, after: .now - started)
            if let span {
                span.attributes["http.response.status_code"] = Int(response.status.code)
                if response.status.code >= 500 { span.setStatus(SpanStatus(code: .error)) }
                span.end()
            }
            return .success(response)
        } catch {
            upstream.metrics.attempt(status: 0, after: .now - started)
            if let span {
                span.attributes["error.type"] = "\(Self.classify(error))"
                span.setStatus(SpanStatus(code: .error))
                span.end()
            }
            // Whatever the client never took of the body, it will not take now.
            if case .stream(let pipe) = request.body { pipe.abandon() }
            return .failure(error)
        }
    }

    /// Sluice's answer for a failed exchange; it never names the endpoint.
    static func gatewayError(for error: any Error) -> HTTPResponse {
        switch Self.classify(error) {
        case .timeout:
            return .error(.upstreamTimeout, message: "the upstream did not answer in time")
        case .overloaded:
            return .error(
                .upstreamOverloaded, message: "the upstream is at its connection limit", headers: ["retry-after": "1"])
        case .connect, .reset:
            return .error(.upstreamUnavailable, message: "the upstream could not be reached or cut the connection")
        case .request:
            return .error(.invalidRequest, message: "the request cannot be passed on to the upstream")
        }
    }

    /// AsyncHTTPClient's errors (by their stable short descriptions) that the request caused.
    static let requestCausedFailures: Set<String> = [
        HTTPClientError.invalidHeaderFieldNames([]).shortDescription, HTTPClientError.invalidHeaderFieldValues([]).shortDescription,
        HTTPClientError.invalidURL.shortDescription, HTTPClientError.emptyHost.shortDescription,
        HTTPClientError.bodyLengthMismatch.shortDescription, HTTPClientError.incompatibleHeaders.shortDescription,
        HTTPClientError.traceRequestWithBody.shortDescription, HTTPClientError.chunkedSpecifiedMultipleTimes.shortDescription,
        HTTPClientError.identityCodingIncorrectlyPresent.shortDescription, HTTPClientError.contentLengthMissing.shortDescription,
    ]

    static func classify(_ error: any Error) -> Failure {
        if let error = error as? HTTP1UpstreamError {
            switch error {
            case .connectTimeout: return .connect
            case .noConnectionAvailable, .shutDown: return .overloaded
            case .responseTimeout, .readTimeout: return .timeout
            case .closedBeforeAnswer, .closedDuringAnswer, .invalidAnswer: return .reset
            case .unsendableRequest: return .request
            }
        }
        if let error = error as? HTTP2UpstreamError {
            switch error {
            case .deadlineExceeded: return .timeout
            case .streamReset: return .reset
            case .http2Refused, .refused: return .connect
            }
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout, .tlsHandshakeTimeout: return .connect
            case .getConnectionFromPoolTimeout: return .overloaded
            case .deadlineExceeded, .readTimeout: return .timeout
            default:
                return Self.requestCausedFailures.contains(error.shortDescription) ? .request : .reset
            }
        }
        if error is NIOConnectionError { return .connect }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT].contains(error.errnoCode) {
            return .connect
        }
        if case ChannelError.connectTimeout = error { return .connect }
        return .reset
    }

    /// The headers that travel past this hop: without hop-by-hop ones, those the Connection
    /// header names, and HTTP/2 pseudo-headers.
    static func endToEnd(_ headers: HTTPHeaders) -> HTTPHeaders {
        // Most messages carry none or only `Connection: keep-alive`: a look at each name, and a
        // new list only from the first field that goes (HTTPHeaders' remove rebuilds its list
        // per name).
        var kept: [(String, String)]?
        var named: [String] = []
        var index = 0
        for (name, value) in headers {
            let role = Self.role(of: name)
            if !role.isHopByHop && role != .pseudo {
                kept?.append((name, value))
            } else {
                if kept == nil {
                    var list: [(String, String)] = []
                    list.reserveCapacity(headers.count - 1)
                    for field in headers.prefix(index) { list.append((field.name, field.value)) }
                    kept = list
                }
                if role == .connection { Self.fieldsNamed(byConnection: value, into: &named) }
            }
            index += 1
        }
        guard var kept else { return headers }
        if !named.isEmpty { Self.remove(named, from: &kept) }
        return HTTPHeaders(kept)
    }

    /// Drops the fields a Connection field names (rare), wherever they stand in the message.
    static func remove(_ named: [String], from fields: inout [(String, String)]) {
        fields.removeAll { field in named.contains { FieldName.equals(field.0, $0) } }
    }

    /// The field names a `Connection` value lists, other than hop-by-hop ones (RFC 9110 7.6.1).
    static func fieldsNamed(byConnection value: String, into names: inout [String]) {
        // Over the contiguous UTF-8 (native strings, as NIO's parser makes them): a String is
        // made only for a name that is not hop-by-hop (`keep-alive` and `close` are the usual
        // values; close is an option, not a field, and dropping a field of that name is harmless).
        var value = value
        value.withUTF8 { bytes in
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count, bytes[end] != UInt8(ascii: ",") { end += 1 }
                var first = start
                var last = end
                while first < last, bytes[first] == UInt8(ascii: " ") || bytes[first] == UInt8(ascii: "\t") { first += 1 }
                while last > first, bytes[last - 1] == UInt8(ascii: " ") || bytes[last - 1] == UInt8(ascii: "\t") { last -= 1 }
                if first < last {
                    let token = UnsafeBufferPointer(rebasing: bytes[first..<last])
                    if !Self.role(of: token).isHopByHop { names.append(String(decoding: token, as: UTF8.self)) }
                }
                start = end + 1
            }
        }
    }

    /// What a field is to the proxy, by its name in any case.
    enum FieldRole {
        /// Passed on as it is.
        case endToEnd
        /// Hop-by-hop (RFC 9110 7.6.1: keep-alive, proxy-connection, proxy-authenticate,
        /// proxy-authorization, trailer, transfer-encoding, upgrade), or `expect` (answered by
        /// Sluice itself): never passed on.
        case hopByHop
        /// `connection`: hop-by-hop, and lists more fields that are.
        case connection
        /// `te`: hop-by-hop, but `trailers` in it says the client takes trailers.
        case te
        /// An HTTP/2 pseudo-field (`:authority`, `:path`...).
        case pseudo
        /// End-to-end fields the proxy sets or drops itself on the way upstream.
        case contentLength, forwardedFor, forwardedProto, host

        /// Never passed on as it came (RFC 9110 7.6.1, and `expect`).
        var isHopByHop: Bool {
            switch self {
            case .hopByHop, .connection, .te: return true
            case .endToEnd, .pseudo, .contentLength, .forwardedFor, .forwardedProto, .host: return false
            }
        }
    }

    static func role(of name: String) -> FieldRole {
        // Over the contiguous UTF-8 (native strings, as NIO's parser makes them), not
        // String.UTF8View's iterator (~220 instructions per header that way).
        var name = name
        return name.withUTF8 { Self.role(of: $0) }
    }

    static func role(of name: UnsafeBufferPointer<UInt8>) -> FieldRole {
        switch name.count {
        case 0: return .endToEnd
        case 2: if FieldName.equals(name, "te") { return .te }
        case 4: if FieldName.equals(name, "host") { return .host }
        case 6: if FieldName.equals(name, "expect") { return .hopByHop }
        case 7: if FieldName.equals(name, "trailer") || FieldName.equals(name, "upgrade") { return .hopByHop }
        case 10:
            if FieldName.equals(name, "connection") { return .connection }
            if FieldName.equals(name, "keep-alive") { return .hopByHop }
        case 14: if FieldName.equals(name, "content-length") { return .contentLength }
        case 15: if FieldName.equals(name, "x-forwarded-for") { return .forwardedFor }
        case 16: if FieldName.equals(name, "proxy-connection") { return .hopByHop }
        case 17:
            if FieldName.equals(name, "transfer-encoding") { return .hopByHop }
            if FieldName.equals(name, "x-forwarded-proto") { return .forwardedProto }
        case 18: if FieldName.equals(name, "proxy-authenticate") { return .hopByHop }
        case 19: if FieldName.equals(name, "proxy-authorization") { return .hopByHop }
        default: break
        }
        return name[0] == UInt8(ascii: ":") ? .pseudo : .endToEnd
    }

    /// Whether `name` is a hop-by-hop field (RFC 9110 7.6.1) or `expect`, in any case.
    static func isHopByHop(_ name: String) -> Bool {
        Self.role(of: name).isHopByHop
    }

    // MARK: - Mirroring

    private func sendMirror(_ head: UpstreamHead, body: ByteBuffer, to mirror: Upstream, config: MirrorConfig) {
        guard config.percent >= 100 || Int.random(in: 0..<100) < config.percent else { return }
        let admitted = self.mirrorsInFlight.withLockedValue { count in
            guard count < config.maxInFlight else { return false }
            count += 1
            return true
        }
        guard admitted else { return }
        let counter = self.mirrorsInFlight
        var head = head
        // As Envoy does: the copy's Host says it is a shadow.
        if let host = head.headers.first(name: "host") { head.headers.replaceOrAdd(name: "host", value: Self.shadowHost(host)) }
        Task {
            defer { counter.withLockedValue { $0 -= 1 } }
            guard let (index, origin) = mirror.pick(hashKey: nil, excluding: []) else { return }
            if mirror.http2 != nil {
                let copy = HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: head.headers)
                let status = try? await mirror.wholeExchange(copy, body: body, endpoint: index, timeout: TimeAmount(mirror.config.timeouts.request))
                mirror.finished(index, failed: (status ?? 500) >= 500)
                return
            }
            var request = HTTPClientRequest(url: origin + head.uri)
            request.method = head.method
            request.headers = head.headers
            if body.readableBytes > 0 { request.body = .bytes(body) }
            do {
                let response = try await mirror.client.execute(request, deadline: .now() + TimeAmount(mirror.config.timeouts.request))
                _ = try await response.body.collect(upTo: 1 << 20)
                mirror.finished(index, failed: response.status.code >= 500)
            } catch {
                mirror.finished(index, failed: true)
            }
        }
    }

    static func shadowHost(_ host: String) -> String {
        // "api.example:8080" -> "api.example-shadow:8080"
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]"), host.firstIndex(of: ":") == colon {
            return host[..<colon] + "-shadow" + host[colon...]
        }
        return host + "-shadow"
    }

    private static func tooLarge(_ limit: Int) -> HTTPResponse {
        .error(.bodyTooLarge, message: "the request body exceeds this route's limit of \(limit) bytes")
    }

    private static func bodyReadFailed() -> HTTPResponse {
        .error(.bodyReadFailed, message: "the request body could not be read")
    }
}

enum ProxyBodyError: Error {
    case tooLarge
    case clientBodyFailed
    /// The exchange ended (or will be tried again) before the body was all sent.
    case abandoned
}

/// One answered attempt: the endpoint stays counted as busy (least request) and the request
/// slot held (circuit breaking) until the response body has been passed on or dropped.
final class AttemptTicket: Sendable {
    let upstream: Upstream
    let endpoint: Int
    private let failed: NIOLockedValueBox<Bool>

    init(upstream: Upstream, endpoint: Int, failed: Bool) {
        self.upstream = upstream
        self.endpoint = endpoint
        self.failed = NIOLockedValueBox(failed)
    }

    func markFailed() {
        self.failed.withLockedValue { $0 = true }
    }

    deinit {
        self.upstream.finished(self.endpoint, failed: self.failed.withLockedValue { $0 })
        self.upstream.releaseSlot()
    }
}

/// An upstream's answer, from any of the clients.
struct UpstreamAnswer: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: Body
    /// Its trailers, once the body has been read (HTTP/2 upstreams).
    var trailers: ResponseTrailers?

    enum Body: Sendable {
        /// From AsyncHTTPClient (TLS upstreams).
        case client(HTTPClientResponse.Body)
        /// From the event-loop HTTP/1.1 client (cleartext upstreams).
        case loop(HTTP1UpstreamBody)
        /// From the h2c client (cleartext HTTP/2 upstreams).
        case stream(HTTP2UpstreamBody)

        func collect(upTo limit: Int) async throws -> ByteBuffer {
            switch self {
            case .client(let body): try await body.collect(upTo: limit)
            case .loop(let body): try await body.collect(upTo: limit)
            case .stream(let body): try await body.collect(upTo: limit)
            }
        }
    }
}

/// An upstream response body passed on to the client, holding its attempt's ticket.
struct ProxiedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let body: UpstreamAnswer.Body
    let ticket: AttemptTicket

    func makeAsyncIterator() -> Iterator {
        switch self.body {
        case .client(let body): Iterator(base: .client(body.makeAsyncIterator()), ticket: self.ticket)
        case .loop(let body): Iterator(base: .loop(body.makeAsyncIterator()), ticket: self.ticket)
        case .stream(let body): Iterator(base: .stream(body.makeAsyncIterator()), ticket: self.ticket)
        }
    }

    struct Iterator: AsyncIteratorProtocol {
        enum Base {
            case client(HTTPClientResponse.Body.AsyncIterator)
            case loop(HTTP1UpstreamBody.Iterator)
            case stream(HTTP2UpstreamBody.Iterator)
        }
        var base: Base
        let ticket: AttemptTicket

        mutating func next() async throws -> ByteBuffer? {
            switch self.base {
            case .client(var iterator):
                defer { self.base = .client(iterator) }
                return try await iterator.next(isolation: #isolation)
            case .loop(var iterator):
                defer { self.base = .loop(iterator) }
                return try await iterator.next()
            case .stream(var iterator):
                defer { self.base = .stream(iterator) }
                return try await iterator.next()
            }
        }
    }
}

extension HeaderRewrite {
    /// Removes, then sets (replacing any value of the same name).
    func apply(to headers: inout HTTPHeaders) {
        for name in self.remove { headers.remove(name: name) }
        for (name, value) in self.set { headers.replaceOrAdd(name: name, value: value) }
    }
}
