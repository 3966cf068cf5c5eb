package fulfillment

import (
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

func TestDecidePlanInvoice(t *testing.T) {
	t.Parallel()
	may := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	june := may.AddDate(0, 1, 0)
	for _, c := range []struct {
		name      string
		f         planFacts
		kind      store.CreditKind
		closePlan bool
	}{
		{"first period", planFacts{Paid: true, Amount: 100, PeriodStart: may}, store.CreditReset, true},
		{"renewal", planFacts{Paid: true, Amount: 100, PeriodStart: june, LatestStart: may}, store.CreditReset, true},
		{"plan change mid-period", planFacts{Paid: true, Amount: 1000, PeriodStart: may.AddDate(0, 0, 10), LatestStart: may}, store.CreditReset, true},
		{"same start (a second invoice for the period)", planFacts{Paid: true, Amount: 100, PeriodStart: may, LatestStart: may}, store.CreditReset, true},
		{"failed renewal", planFacts{Paid: false, Amount: 100, PeriodStart: june, LatestStart: may}, "", false},
		{"repeated", planFacts{Paid: true, Amount: 100, Applied: true, PeriodStart: june, LatestStart: june}, "", false},
		{"late, older period", planFacts{Paid: true, Amount: 100, PeriodStart: may, LatestStart: june}, "", false},
		{"after the end", planFacts{Paid: true, Amount: 100, Ended: true, PeriodStart: june, LatestStart: may}, "", false},
		{"no credits", planFacts{Paid: true, Amount: 0, PeriodStart: may}, "", false},
		{"rollover", planFacts{Paid: true, Amount: 100, Rollover: true, PeriodStart: june, LatestStart: may}, store.CreditGrant, false},
		{"rollover, late older period still adds", planFacts{Paid: true, Amount: 100, Rollover: true, PeriodStart: may, LatestStart: june}, store.CreditGrant, false},
		{"rollover, repeated", planFacts{Paid: true, Amount: 100, Rollover: true, Applied: true, PeriodStart: june}, "", false},
		{"rollover, failed", planFacts{Amount: 100, Rollover: true, PeriodStart: june}, "", false},
	} {
		got := decidePlanInvoice(c.f)
		if got.Kind != c.kind || got.ClosePlan != c.closePlan || (got.Kind == "") != (got.Skip != "") {
			t.Errorf("%s: %+v, want kind %q close %v", c.name, got, c.kind, c.closePlan)
		}
	}
}
