import SluiceCore

/// A file sink I/O failure.
public struct FileSinkError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Int32

    public var description: String {
        "\(self.operation) \(self.path): \(String(cString: strerror(self.errno)))"
    }

    /// Disk full or an I/O error may clear; a permission problem will not.
    public var isRetryable: Bool {
        self.errno != EACCES && self.errno != EPERM && self.errno != EROFS
    }

    public var deliveryFailure: DeliveryFailure {
        DeliveryFailure(code: "file_write_failed", message: "file sink: \(self.description)", isRetryable: self.isRetryable, httpStatus: 500)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
