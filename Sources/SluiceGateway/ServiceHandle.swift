import Logging
import ServiceLifecycle

/// One long-lived part of the gateway (a sink, an upstream, a listener) run in a service group
/// of its own, so it can be started and stopped by itself: a reload starts the new ones and
/// drains the ones it replaced while the rest run on.
///
/// The group runs in a detached task — outside the graceful shutdown of the process's group —
/// because the gateway orders shutdown itself: listeners drain before sinks flush.
final class ServiceHandle: Sendable {
    let name: String
    private let group: ServiceGroup
    private let task: Task<(any Error)?, Never>

    init(_ service: any Service, name: String, logger: Logger) {
        self.name = name
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [.init(service: service)], logger: logger))
        self.group = group
        self.task = Task.detached {
            do {
                try await group.run()
                return nil
            } catch {
                return error
            }
        }
    }

    /// Asks the service to shut down gracefully and waits until it has; returns the error it
    /// ended with, if any.
    @discardableResult
    func stop() async -> (any Error)? {
        await self.group.triggerGracefulShutdown()
        return await self.task.value
    }

    /// Cancels the service (the process is being cancelled).
    func cancel() {
        self.task.cancel()
    }
}
