import NIOCore

/// Runs a connection's tasks on the event loop that owns its channel.
///
/// Without it, every await in a request's handling (each body read, the wait for the sink's
/// acknowledgements, each write) resumes on the Swift concurrency pool and every channel
/// operation hops back to the event loop: two cross-thread wake-ups per step. With it, the
/// connection's task prefers this executor, so its code runs where its channel's I/O runs,
/// as a proxy like Envoy or nginx does. Nothing in a handler may block (the ones that would,
/// bcrypt for basic auth, run on NIO's thread pool).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
