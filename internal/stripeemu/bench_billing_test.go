package stripeemu_test

import (
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
)

// BenchmarkMonthOfRenewals10k renews 10,000 monthly subscriptions once:
// the renewal drafts, their finalization and charges, and their events
// (about seven per subscription).
func BenchmarkMonthOfRenewals10k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		f := newFixture(b)
		pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
		for range 10_000 {
			if _, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "x@example.com", Items: []stripeemu.LineItem{{Price: pr.ID}}}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		f.advance(32 * day)
	}
}
