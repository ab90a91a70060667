import GRPCCore
import SluiceCore

/// `grpc.health.v1.Health`, answered from the sinks' readiness:
/// - `""` and `sluice.v1.Ingest`: SERVING when every sink behind a gRPC route reaches its backend;
/// - `sluice.sink.<name>`: that sink alone (e.g. `sluice.sink.events`);
/// - anything else: NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch).
/// Watch sends the current status, then each change (checked every second).
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    /// The running sinks, and the names of those gRPC routes use (the overall status covers
    /// these): read at each check, so a reload's sinks are the ones reported.
    private let sinks: @Sendable () -> (all: [any Sink], servedByGRPC: Set<String>)

    public init(sinks: @escaping @Sendable () -> (all: [any Sink], servedByGRPC: Set<String>)) {
        self.sinks = sinks
    }

    private func status(of service: String) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
        let (sinks, servedByGRPC) = self.sinks()
        if service.isEmpty || service == IngestService.serviceName {
            let ready = sinks.filter { servedByGRPC.contains($0.name) }.allSatisfy(\.isReady)
            return ready ? .serving : .notServing
        }
        let prefix = "sluice.sink."
        guard service.hasPrefix(prefix), let sink = sinks.first(where: { $0.name == service.dropFirst(prefix.count) }) else {
            return nil
        }
        return sink.isReady ? .serving : .notServing
    }

    public func check(
        request: Grpc_Health_V1_HealthCheckRequest,
        context: ServerContext
    ) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let status = self.status(of: request.service) else {
            throw RPCError(code: .notFound, message: "unknown service \"\(request.service)\"; try \"\", \(IngestService.serviceName) or sluice.sink.<name>")
        }
        return .with { $0.status = status }
    }

    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest,
        response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
        while !Task.isCancelled {
            let status = self.status(of: request.service) ?? .serviceUnknown
            if status != last {
                try await response.write(.with { $0.status = status })
                last = status
            }
            try await Task.sleep(for: .seconds(1))
        }
    }
}
