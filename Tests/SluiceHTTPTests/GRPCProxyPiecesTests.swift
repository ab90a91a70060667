import NIOCore
import NIOHTTP1
import SluiceCore
import Testing

@testable import SluiceHTTP

/// The gRPC pieces of proxy routes: `grpc-timeout` both ways, and Sluice's own errors as a
/// gRPC caller reads them.
@Suite struct GRPCProxyPiecesTests {
    @Test func grpcTimeoutParsesEveryUnitAndRefusesTheRest() {
        #expect(GRPCTimeout.parse("2H") == .hours(2))
        #expect(GRPCTimeout.parse("3M") == .minutes(3))
        #expect(GRPCTimeout.parse("10S") == .seconds(10))
        #expect(GRPCTimeout.parse("250m") == .milliseconds(250))
        #expect(GRPCTimeout.parse("99999999u") == .microseconds(99_999_999))
        #expect(GRPCTimeout.parse("1n") == .nanoseconds(1))
        // Empty, no unit, an unknown unit, a sign, more than 8 digits.
        for bad in ["", "S", "10", "10s", "-1S", "123456789S", "1.5S", " 1S"] {
            #expect(GRPCTimeout.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func whatIsLeftOfADeadlineIsSentInWholeMillisecondsRoundedUp() {
        #expect(GRPCTimeout.format(.milliseconds(1500)) == "1500m")
        #expect(GRPCTimeout.format(.microseconds(1)) == "1m")
        #expect(GRPCTimeout.format(.nanoseconds(0)) == "1m")
        #expect(GRPCTimeout.format(.hours(100_000)) == "99999999m")
    }

    @Test func sluicesOwnErrorsBecomeGRPCStatusesWithTheirHeadersKept() throws {
        let refused = HTTPResponse.error(.upstreamOverloaded, message: "the upstream is at its request limit", headers: ["retry-after": "1"])
        let grpc = refused.asGRPCStatus()
        #expect(grpc.status == .ok)
        #expect(grpc.headers.first(name: "content-type") == "application/grpc")
        #expect(grpc.headers.first(name: "retry-after") == "1")
        #expect(grpc.body.readableBytes == 0)
        let trailers = try #require(grpc.trailers?.value)
        #expect(trailers.first(name: "grpc-status") == "14")
        #expect(trailers.first(name: "grpc-message") == "the upstream is at its request limit")

        // A code outside the catalogue (a policy's own): gRPC's mapping of the HTTP status.
        let denied = HTTPResponse.error(.unauthorized, code: "custom_denial", message: "no")
        #expect(denied.asGRPCStatus().trailers?.value?.first(name: "grpc-status") == "16")

        // An upstream's answer is not Sluice's own: left as it is.
        let upstream = HTTPResponse(status: .badGateway)
        #expect(upstream.asGRPCStatus().status == .badGateway)
        #expect(upstream.asGRPCStatus().trailers == nil)
    }

    @Test func grpcMessagesArePercentEncodedOutsidePrintableASCII() {
        #expect(HTTPResponse.grpcMessage("plain text") == "plain text")
        #expect(HTTPResponse.grpcMessage("100% ü\n") == "100%25 %C3%BC%0A")
    }

    @Test func teTrailersIsRecognisedAmongOtherCodings() {
        #expect(ProxyHandler.acceptsTrailers("trailers"))
        #expect(ProxyHandler.acceptsTrailers("gzip, Trailers"))
        #expect(ProxyHandler.acceptsTrailers("deflate;q=0.5, trailers"))
        #expect(!ProxyHandler.acceptsTrailers("gzip"))
        #expect(!ProxyHandler.acceptsTrailers("trailersx"))
        #expect(!ProxyHandler.acceptsTrailers(""))
    }

    @Test func onlyGRPCContentTypesAreGRPCCalls() {
        func request(_ type: String?) -> HTTPRequest {
            var head = HTTPRequestHead(version: .http2, method: .POST, uri: "/a.B/C")
            if let type { head.headers.add(name: "content-type", value: type) }
            return HTTPRequest(head: head, isHTTP2: true)
        }
        #expect(HTTPResponse.isGRPC(request("application/grpc")))
        #expect(HTTPResponse.isGRPC(request("application/grpc+proto")))
        #expect(HTTPResponse.isGRPC(request("Application/GRPC;charset=utf-8")))
        #expect(!HTTPResponse.isGRPC(request("application/grpc-web")))
        #expect(!HTTPResponse.isGRPC(request("application/json")))
        #expect(!HTTPResponse.isGRPC(request(nil)))
    }
}
