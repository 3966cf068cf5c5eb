package fulfillment

import (
	"testing"
	"time"
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
