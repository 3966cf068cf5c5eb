package fulfillment

import (
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

// TestPlanOrder: old payments send no email, quiet no customer email;
// access is granted whatever the age.
func TestPlanOrder(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		f    orderFacts
		want orderPlan
	}{
		{"fresh", orderFacts{Now: now, PaidAt: now.Add(-time.Minute), NotifyWindow: time.Hour, GitHub: true, Webhooks: []string{"api"}},
			orderPlan{Confirmation: true, AdminEmail: true, GitHub: true, Webhooks: []string{"api"}}},
		{"quiet", orderFacts{Now: now, PaidAt: now, NotifyWindow: time.Hour, Quiet: true},
			orderPlan{AdminEmail: true}},
		{"stale", orderFacts{Now: now, PaidAt: now.Add(-2 * time.Hour), NotifyWindow: time.Hour, GitHub: true},
			orderPlan{GitHub: true, Stale: true}},
	} {
		got := planOrder(c.f)
		if got.Confirmation != c.want.Confirmation || got.AdminEmail != c.want.AdminEmail || got.GitHub != c.want.GitHub ||
			len(got.Webhooks) != len(c.want.Webhooks) || got.Stale != c.want.Stale {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestDisputeTaxReversal: a lost dispute reverses what the refunds left of
// the tax transaction, at most what was disputed, the whole transaction
// when nothing was refunded.
func TestDisputeTaxReversal(t *testing.T) {
	for _, c := range []struct {
		name                    string
		total, refunded, amount int64
		currency                string
		want                    orderRefundArgs
		ok                      bool
	}{
		{"everything disputed, nothing refunded: the whole", 5000, 0, 5000, "usd",
			orderRefundArgs{RefundID: "dp_1", Amount: 5000, Refunded: 5000, Total: 5000, Currency: "usd", Full: true}, true},
		{"the rest after a refund", 5000, 1000, 4000, "usd",
			orderRefundArgs{RefundID: "dp_1", Amount: 4000, Refunded: 5000, Total: 5000, Currency: "usd", Full: true}, true},
		{"a dispute larger than what is left: what is left", 5000, 1000, 5000, "usd",
			orderRefundArgs{RefundID: "dp_1", Amount: 4000, Refunded: 5000, Total: 5000, Currency: "usd", Full: true}, true},
		{"part of the order disputed", 5000, 0, 1500, "usd",
			orderRefundArgs{RefundID: "dp_1", Amount: 1500, Refunded: 1500, Total: 5000, Currency: "usd"}, true},
		{"an amount in another currency: what is left", 5000, 1000, 900, "eur",
			orderRefundArgs{RefundID: "dp_1", Amount: 4000, Refunded: 5000, Total: 5000, Currency: "usd", Full: true}, true},
		{"refunded in full already: nothing", 5000, 5000, 5000, "usd", orderRefundArgs{}, false},
	} {
		o := store.Order{AmountTotal: c.total, AmountRefunded: c.refunded, Currency: "usd"}
		got, ok := disputeTaxReversal(o, store.OrderDispute{ID: "dp_1", Amount: c.amount, Currency: c.currency})
		if ok != c.ok || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
