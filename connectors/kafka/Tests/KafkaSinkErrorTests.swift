import KafkaSink
import Testing

@Suite struct KafkaSinkErrorTests {
    @Test func classifiesDeliveryErrors() {
        // librdkafka error codes: -192 _MSG_TIMED_OUT, 10 MSG_SIZE_TOO_LARGE, 3 UNKNOWN_TOPIC_OR_PART, 29 TOPIC_AUTHORIZATION_FAILED
        let timedOut = KafkaSinkError(code: -192)
        #expect(timedOut.isRetryable)
        #expect(timedOut.deliveryFailure.httpStatus == 503)
        #expect(timedOut.deliveryFailure.code == "kafka_msg_timed_out")
        let tooLarge = KafkaSinkError(code: 10)
        #expect(!tooLarge.isRetryable)
        #expect(tooLarge.httpStatus == 413)
        #expect(KafkaSinkError(code: 3).httpStatus == 404)
        #expect(KafkaSinkError(code: 29).httpStatus == 403)
    }
}
