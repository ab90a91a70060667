import Crypto
import Foundation
import ServiceLifecycle
import UnixSignals

/// What makes the gateway reload besides `POST /reload`: SIGHUP, and with `--watch` a change to
/// the configuration file (its content, checked every `watchInterval`). A refused reload logs
/// its errors and the running configuration serves on.
public struct ReloadTriggers: Service {
    let control: ControlReference
    let watchedFile: String?
    let watchInterval: Duration

    /// - Parameter watchedFile: the configuration file to watch (`sluice run --watch`); nil: only SIGHUP.
    public init(gateway: Gateway, watchedFile: String?, watchInterval: Duration = .seconds(1)) {
        self.control = gateway.control
        self.watchedFile = watchedFile
        self.watchInterval = watchInterval
    }

    public func run() async throws {
        let control = self.control
        let signals = await UnixSignalsSequence(trapping: .sighup)
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in signals {
                        guard let gateway = control.gateway else { return }
                        _ = await gateway.reload(trigger: "SIGHUP")
                    }
                }
                if let file = self.watchedFile {
                    let interval = self.watchInterval
                    group.addTask {
                        var last = Self.digest(of: file)
                        while !Task.isCancelled {
                            do { try await Task.sleep(for: interval) } catch { return }
                            let now = Self.digest(of: file)
                            // A file being rewritten may be missing or empty for a moment: wait for content.
                            guard let now, now != last else { continue }
                            last = now
                            guard let gateway = control.gateway else { return }
                            _ = await gateway.reload(trigger: "file change (--watch)")
                        }
                    }
                }
                await group.waitForAll()
            }
        }
    }

    /// The SHA-256 of the file's content; nil when it cannot be read or is empty.
    static func digest(of file: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: file), !data.isEmpty else { return nil }
        return Array(SHA256.hash(data: data))
    }
}
