/// Waits until `condition` holds, sleeping between looks (a spinning wait can starve the test
/// runner's two threads); false if it still does not hold after `limit`.
func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let end = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < end else { return false }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}
