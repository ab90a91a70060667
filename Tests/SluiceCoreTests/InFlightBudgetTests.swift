import SluiceCore
import Testing

@Suite struct InFlightBudgetTests {
    @Test func takesUntilEitherBoundIsReached() {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 3)
        #expect(budget.tryAcquire(bytes: 60))
        #expect(!budget.tryAcquire(bytes: 50), "bytes bound")
        #expect(budget.tryAcquire(bytes: 10))
        #expect(budget.tryAcquire(bytes: 10))
        #expect(!budget.tryAcquire(bytes: 1), "events bound")
        #expect(budget.inFlight == (80, 3))
        budget.release(bytes: 60)
        #expect(budget.tryAcquire(bytes: 50))
    }

    @Test func anOversizedAmountPassesOnlyWhenNothingIsInFlight() {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 10)
        #expect(budget.tryAcquire(bytes: 1000))
        #expect(!budget.tryAcquire(bytes: 1))
        budget.release(bytes: 1000)
        #expect(budget.inFlight == (0, 0))
    }

    @Test func aWaiterIsLetInWhenBudgetIsReleased() async {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 10)
        #expect(budget.tryAcquire(bytes: 100))
        let waiter = Task { await budget.acquire(bytes: 40, deadline: .now + .seconds(10)) }
        #expect(await eventually { budget.waiting == 1 })
        #expect(!budget.tryAcquire(bytes: 1), "nobody jumps the queue while someone waits")
        budget.release(bytes: 100)
        #expect(await waiter.value)
        #expect(budget.inFlight == (40, 1))
    }

    @Test func waitersResumeOnlyAtTheLowWatermark() async {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 100)
        #expect(budget.tryAcquire(bytes: 100, events: 10))
        let waiter = Task { await budget.acquire(bytes: 10, deadline: .now + .seconds(10)) }
        #expect(await eventually { budget.waiting == 1 })
        budget.release(bytes: 10)  // 90 in flight: room for 10, but above the low watermark (50)
        #expect(budget.waiting == 1)
        budget.release(bytes: 40)  // 50 in flight: at the low watermark
        #expect(await waiter.value)
        #expect(budget.inFlight == (60, 9))
    }

    @Test func aWaitEndsAtItsDeadlineWithNothingTaken() async {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 10)
        #expect(budget.tryAcquire(bytes: 100))
        let started = ContinuousClock.now
        let granted = await budget.acquire(bytes: 10, deadline: .now + .milliseconds(100))
        #expect(!granted)
        #expect(ContinuousClock.now - started >= .milliseconds(100))
        #expect(budget.inFlight == (100, 1))
        #expect(budget.waiting == 0)
    }

    @Test func anExpiredBigWaiterStopsBlockingSmallerOnesBehindIt() async {
        let budget = InFlightBudget(maxBytes: 100, maxEvents: 10)
        #expect(budget.tryAcquire(bytes: 50))
        let big = Task { await budget.acquire(bytes: 80, deadline: .now + .seconds(1)) }
        #expect(await eventually { budget.waiting == 1 })
        let small = Task { await budget.acquire(bytes: 10, deadline: .now + .seconds(10)) }
        #expect(await big.value == false)
        #expect(await small.value == true)
        #expect(budget.inFlight == (60, 2))
    }

    @Test func cancellationEndsAWait() async {
        let budget = InFlightBudget(maxBytes: 10, maxEvents: 10)
        #expect(budget.tryAcquire(bytes: 10))
        let waiter = Task { await budget.acquire(bytes: 5, deadline: .now + .seconds(30)) }
        #expect(await eventually { budget.waiting == 1 })
        waiter.cancel()
        #expect(await waiter.value == false)
        #expect(budget.waiting == 0)
    }
}
