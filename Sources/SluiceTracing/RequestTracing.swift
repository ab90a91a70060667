import Instrumentation
import Synchronization
import Tracing

/// Request tracing, through swift-distributed-tracing's global tracer (the executable bootstraps
/// swift-otel's when `tracing:` is configured, then calls `enable()`). Every helper here does
/// nothing — no context lookup, no span, no allocation — until then, so the data path pays for
/// tracing only when it is on.
public enum RequestTracing {
    private static let enabled = Atomic<Bool>(false)

    /// Whether spans are made and trace context is carried.
    @inlinable
    public static var isEnabled: Bool { self.enabledFlag }

    @usableFromInline
    static var enabledFlag: Bool { Self.enabled.load(ordering: .relaxed) }

    /// Turns tracing on, once the global tracer is bootstrapped.
    public static func enable() {
        Self.enabled.store(true, ordering: .sequentiallyConsistent)
    }

    /// The W3C trace context header names: what a client's request may carry in, and what
    /// Sluice writes into records and proxied requests.
    public static let headerNames: Set<String> = ["traceparent", "tracestate"]

    /// Starts a span for a request or call that came in, continuing the trace its headers (or
    /// metadata) carry: `header(name)` gives a header's first value. nil when tracing is off.
    public static func startServerSpan(_ name: String, header: @escaping @Sendable (String) -> String?) -> (any Span)? {
        guard self.isEnabled else { return nil }
        var context = InstrumentationContext.topLevel
        InstrumentationSystem.instrument.extract(HeaderLookup(header), into: &context, using: HeaderLookupExtractor())
        return startSpan(name, context: context, ofKind: .server)
    }

    /// Starts a span of `kind` under the current task's span (the request's). nil when tracing is off.
    public static func startChildSpan(_ name: String, ofKind kind: SpanKind) -> (any Span)? {
        guard self.isEnabled else { return nil }
        return startSpan(name, context: InstrumentationContext.current ?? .topLevel, ofKind: kind)
    }

    /// The trace context headers of `span` (`traceparent`, and `tracestate` when there is one),
    /// as the configured propagator writes them.
    public static func headers(of span: any Span) -> [(name: String, value: String)] {
        var carrier: [(name: String, value: String)] = []
        InstrumentationSystem.instrument.inject(span.context, into: &carrier, using: PairInjector())
        return carrier
    }

    /// The trace id of `span` (32 lower-case hex digits), read from its `traceparent`.
    public static func traceID(of span: any Span) -> String? {
        guard let parent = self.headers(of: span).first(where: { $0.name == "traceparent" })?.value else { return nil }
        let fields = parent.split(separator: "-")
        guard fields.count >= 4, fields[1].utf8.count == 32 else { return nil }
        return String(fields[1])
    }

    /// Runs `body` with `span` as the task's current span (children start under it); just runs
    /// it when there is none.
    public static func withCurrent<T>(_ span: (any Span)?, _ body: () async throws -> T) async rethrows -> T {
        guard let span else { return try await body() }
        return try await InstrumentationContext.$current.withValue(span.context, operation: body)
    }
}

/// A request's headers as a closure (HTTP headers and gRPC metadata alike).
public struct HeaderLookup: Sendable {
    let first: @Sendable (String) -> String?

    public init(_ first: @escaping @Sendable (String) -> String?) {
        self.first = first
    }
}

struct HeaderLookupExtractor: Extractor {
    func extract(key: String, from carrier: HeaderLookup) -> String? {
        carrier.first(key.lowercased())
    }
}

struct PairInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(name: String, value: String)]) {
        carrier.append((key.lowercased(), value))
    }
}
