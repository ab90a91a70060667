import SluiceCore
import SluiceGRPC
import SluiceHTTP

/// Everything a request is routed by — the HTTP routes, the gRPC routes and each route's policy
/// chain — as one immutable value. The gateway holds the current one in an `AtomicBox`; every
/// request reads it once and runs start to end on it, so a new snapshot (a reloaded
/// configuration) takes over between requests, never within one.
public struct GatewaySnapshot: Sendable {
    /// 1 for the configuration the process started with, then one more per snapshot swapped in.
    public let generation: Int
    public let http: HTTPRouteTable
    public let grpc: GRPCRouteTable

    public init(generation: Int, http: HTTPRouteTable, grpc: GRPCRouteTable) {
        self.generation = generation
        self.http = http
        self.grpc = grpc
    }

    /// The requests and calls running on this snapshot (both tables share one count).
    public var leases: SnapshotLeases { self.http.leases }
}
