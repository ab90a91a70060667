import CRdKafka
import SluiceCore

/// A librdkafka error, classified for clients.
public struct KafkaSinkError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let name: String
    public let reason: String

    /// The error for a librdkafka `rd_kafka_resp_err_t` code.
    public init(code: Int32) {
        self.init(rd_kafka_resp_err_t(rawValue: code))
    }

    init(_ err: rd_kafka_resp_err_t) {
        self.code = err.rawValue
        self.name = String(cString: rd_kafka_err2name(err))
        self.reason = String(cString: rd_kafka_err2str(err))
    }

    /// Whether the same event may succeed if sent again later.
    public var isRetryable: Bool {
        switch self.name {
        case "_MSG_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_PURGE_QUEUE",
            "_PURGE_INFLIGHT", "_QUEUE_FULL", "_FATAL", "_RESOLVE", "_WAIT_COORD", "_DESTROY",
            "REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION", "NETWORK_EXCEPTION",
            "BROKER_NOT_AVAILABLE", "KAFKA_STORAGE_ERROR", "THROTTLING_QUOTA_EXCEEDED",
            "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "OUT_OF_ORDER_SEQUENCE_NUMBER":
            return true
        default:
            return false
        }
    }

    /// The HTTP status that describes this failure.
    public var httpStatus: Int {
        if self.isRetryable { return 503 }
        switch self.name {
        case "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE":
            return 413
        case "UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION":
            return 404
        case "TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED":
            return 403
        case "INVALID_MSG", "INVALID_TOPIC_EXCEPTION", "INVALID_RECORD", "CORRUPT_MESSAGE":
            return 400
        default:
            return 502
        }
    }

    public var description: String { "\(self.name): \(self.reason)" }

    /// The per-event failure a client sees.
    public var deliveryFailure: DeliveryFailure {
        var code = self.name.lowercased()
        while code.hasPrefix("_") { code.removeFirst() }
        return DeliveryFailure(
            code: "kafka_" + code,
            message: "kafka: \(self.reason)",
            isRetryable: self.isRetryable,
            httpStatus: self.httpStatus
        )
    }
}
