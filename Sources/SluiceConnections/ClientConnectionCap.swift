import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process-wide bound on client connections across every data-plane listener (HTTP and
/// gRPC), below the descriptor limit by a reserve: under a connection flood the admin port,
/// the sinks' and upstreams' connections and the files Sluice writes still get descriptors.
/// (Each listener's own `max_connections` applies as well.) The admin listener is not counted.
public final class ClientConnectionCap: Sendable {
    public static let shared = ClientConnectionCap()

    private let state = NIOLockedValueBox((open: 0, limit: Int.max))

    public init(limit: Int = .max) {
        self.state.withLockedValue { $0.limit = limit }
    }

    public func setLimit(_ limit: Int) {
        self.state.withLockedValue { $0.limit = limit }
    }

    public var limit: Int { self.state.withLockedValue { $0.limit } }
    public var open: Int { self.state.withLockedValue { $0.open } }

    /// Takes a place for a new connection; false when the cap is reached.
    public func admit() -> Bool {
        self.state.withLockedValue { state in
            guard state.open < state.limit else { return false }
            state.open += 1
            return true
        }
    }

    public func release() {
        self.state.withLockedValue { $0.open -= 1 }
    }

    /// Raises the soft descriptor limit to the hard one (as most servers do at start) and
    /// returns the soft limit in force.
    public static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }

    /// Raises the descriptor limit and caps client connections `reserve` below it (the rest is
    /// for sinks, upstreams, files). Returns the descriptor limit and the cap, or why the reserve
    /// leaves too little (fewer than 64 connections).
    public func limitToDescriptors(reserve: Int) -> Result<(descriptors: Int, connections: Int), ConnectionCapError> {
        let descriptors = Self.raiseDescriptorLimit()
        guard descriptors == .max || descriptors - reserve >= 64 else {
            return .failure(
                ConnectionCapError(
                    description: "process.descriptor_reserve: the descriptor limit (ulimit -n) is \(descriptors); with a reserve of \(reserve) "
                        + "fewer than 64 client connections would remain: raise the limit or lower the reserve"))
        }
        let connections = descriptors == .max ? Int.max : descriptors - reserve
        self.setLimit(connections)
        return .success((descriptors, connections))
    }
}

public struct ConnectionCapError: Error, CustomStringConvertible {
    public var description: String
}

/// One listener's open connections against its `max_connections`, then the process-wide cap:
/// the admission every data-plane listener (HTTP and gRPC) applies to an accepted connection.
public final class ListenerConnections: Sendable {
    private let open = NIOLockedValueBox(0)
    private let maxConnections: Int
    private let cap: ClientConnectionCap?

    public init(maxConnections: Int, cap: ClientConnectionCap?) {
        self.maxConnections = maxConnections
        self.cap = cap
    }

    /// Counts `channel` until it closes and returns nil; or, past either bound, closes it at once
    /// and says which bound refused it.
    public func admit(_ channel: any Channel) -> String? {
        let admitted = self.open.withLockedValue { count in
            guard count < self.maxConnections else { return false }
            count += 1
            return true
        }
        guard admitted else {
            channel.close(promise: nil)
            return "max_connections (\(self.maxConnections)) reached"
        }
        if let cap = self.cap, !cap.admit() {
            self.open.withLockedValue { $0 -= 1 }
            channel.close(promise: nil)
            return "the process's client connection cap (\(cap.limit)) reached"
        }
        channel.closeFuture.whenComplete { _ in
            self.open.withLockedValue { $0 -= 1 }
            self.cap?.release()
        }
        return nil
    }
}
