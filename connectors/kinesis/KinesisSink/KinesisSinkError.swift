import SluiceCore

/// A Kinesis failure as a client sees it: a record the service refused for good, or retryable
/// errors that outlasted `delivery_timeout`. Codes are `kinesis_` and the AWS error code in snake
/// case (`kinesis_provisioned_throughput_exceeded`).
public enum KinesisSinkError: Error, Sendable, CustomStringConvertible {
    /// Kinesis refused the record with a non-retryable error.
    case refused(KinesisError)
    /// Retryable errors (the last one, if any) went on past `delivery_timeout`.
    case exhausted(last: KinesisError?, deliveryTimeout: Duration)

    public var code: String {
        switch self {
        case .refused(let error): return "kinesis_" + Self.snakeCase(error.code)
        case .exhausted(let last, _): return "kinesis_" + Self.snakeCase(last?.code ?? "DeliveryTimeout")
        }
    }

    public var isRetryable: Bool {
        if case .exhausted = self { return true }
        return false
    }

    /// A refusal of the client's record is 4xx; one caused by Sluice's own configuration
    /// (credentials, permissions, KMS) is 502; an exhausted retry is 503.
    public var httpStatus: Int {
        switch self {
        case .exhausted: return 503
        case .refused(let error):
            switch error.code {
            case "ResourceNotFoundException": return 404
            case "ValidationException", "InvalidArgumentException", "SerializationException": return 400
            default: return 502
            }
        }
    }

    public var description: String {
        switch self {
        case .refused(let error): return "Kinesis refused the record: \(error)"
        case .exhausted(let last, let timeout):
            return "not delivered to Kinesis within delivery_timeout (\(timeout))\(last.map { ": last error \($0)" } ?? ""); retry later"
        }
    }

    /// The per-event failure a client sees.
    public var deliveryFailure: DeliveryFailure {
        DeliveryFailure(code: self.code, message: self.description, isRetryable: self.isRetryable, httpStatus: self.httpStatus)
    }

    /// `ProvisionedThroughputExceededException` -> `provisioned_throughput_exceeded`.
    static func snakeCase(_ code: String) -> String {
        var name = Array(code)
        if code.hasSuffix("Exception") { name.removeLast("Exception".count) }
        var out = ""
        for (i, character) in name.enumerated() {
            if character == " " || character == "." {
                out.append("_")
                continue
            }
            if character.isUppercase, i > 0 {
                let previous = name[i - 1]
                let nextIsLower = i + 1 < name.count && name[i + 1].isLowercase
                // A word starts at an upper-case letter after a lower-case one (fooBar), or at the
                // last capital of an acronym followed by lower case (KMSAccess -> kms_access).
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && nextIsLower) { out.append("_") }
            }
            out.append(Character(character.lowercased()))
        }
        return out
    }
}
