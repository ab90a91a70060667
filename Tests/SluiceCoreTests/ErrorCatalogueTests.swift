import SluiceCore
import Testing

@Suite struct ErrorCatalogueTests {
    @Test func everyCodeIsDeclaredOnceAndFoundByName() {
        let names = ErrorCode.all.map(\.code)
        #expect(Set(names).count == names.count, "a code declared twice")
        for code in ErrorCode.all {
            #expect(ErrorCode.named(code.code) == code)
            #expect(code.code.allSatisfy { $0.isLowercase || $0 == "_" }, "\(code.code) is not snake_case")
        }
        #expect(ErrorCode.named("kafka_msg_size_too_large") == nil, "backend codes are the connectors' own")
    }

    /// Retryable codes are answered 5xx (and retried), the client's mistakes 4xx.
    @Test func retryableCodesAreServerSideAndRequestErrorsClientSide() {
        for code in ErrorCode.all {
            if code.isRetryable {
                #expect(code.httpStatus >= 500 || code.httpStatus == 429, "\(code.code)")
            } else if code.grpcStatus == .invalidArgument || code.grpcStatus == .notFound {
                #expect((400..<500).contains(code.httpStatus), "\(code.code)")
            }
        }
        #expect(DeliveryFailure(.unknownTopic, "x").httpStatus == 404)
        #expect(ErrorCode.unknownTopic.grpcStatus == .notFound)
    }
}
