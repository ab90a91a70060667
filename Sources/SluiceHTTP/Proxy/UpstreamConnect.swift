import NIOCore
import NIOPosix

extension ClientBootstrap {
    /// Connects to an upstream endpoint: an IP literal straight to its address, a name through
    /// NIO's resolver (Happy Eyeballs over what `getaddrinfo` finds).
    ///
    /// `connect(host:port:)` resolves even `127.0.0.1`: `getaddrinfo` on a Dispatch queue, two
    /// thread hand-offs and the Happy Eyeballs state machine for every new connection. That is
    /// rare while connections are reused, but it is every request's cost while an endpoint
    /// refuses connections: ~165 µs of CPU per refused proxied request with the resolver, 141
    /// without (`Benchmarks/proxy-refused.sh`, Benchmarks/README.md "A refused endpoint").
    func connect(toHost host: String, port: Int) -> EventLoopFuture<any Channel> {
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            return self.connect(to: address)
        }
        return self.connect(host: host, port: port)
    }
}
