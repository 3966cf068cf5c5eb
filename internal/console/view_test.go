package console

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

func TestParseQuery(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		q     string
		field store.SearchField
		value string
	}{
		{"", store.SearchAny, ""},
		{"  Ada@Example.com ", store.SearchEmail, "Ada@Example.com"},
		{"cs_test_a1", store.SearchSession, "cs_test_a1"},
		{"pi_3Pq", store.SearchPaymentIntent, "pi_3Pq"},
		{"ch_3Pq", store.SearchCharge, "ch_3Pq"},
		{"py_3Pq", store.SearchCharge, "py_3Pq"},
		{"cus_Q1", store.SearchCustomer, "cus_Q1"},
		{"sub_1Q", store.SearchSubscription, "sub_1Q"},
		{"in_1Q", store.SearchInvoice, "in_1Q"},
		{"8F14E45F-CEEA-467F-A0E6-07A9E1B1D3F2", store.SearchPurchaseID, "8f14e45f-ceea-467f-a0e6-07a9e1b1d3f2"},
		{"dev-user-1", store.SearchUserID, "dev-user-1"},
		{"auth0|5f7c", store.SearchUserID, "auth0|5f7c"},
	} {
		f, v := parseQuery(c.q)
		if f != c.field || v != c.value {
			t.Errorf("parseQuery(%q) = %s %q, want %s %q", c.q, f, v, c.field, c.value)
		}
	}
}

func TestParseSearch(t *testing.T) {
	t.Parallel()
	_, s, err := parseSearch(url.Values{"q": {"ada@example.com"}, "status": {"refunded"}, "from": {"2026-04-01"},
		"to": {"2026-04-30"}, "after": {"2026-04-03T10:00:00.5Z_8f14e45f-ceea-467f-a0e6-07a9e1b1d3f2"}})
	if err != nil {
		t.Fatal(err)
	}
	want := store.PurchaseSearch{Field: store.SearchEmail, Value: "ada@example.com", Status: store.PurchaseRefunded,
		From: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		After: &store.PurchaseCursor{CreatedAt: time.Date(2026, 4, 3, 10, 0, 0, 5e8, time.UTC),
			ID: "8f14e45f-ceea-467f-a0e6-07a9e1b1d3f2"}, Limit: pageSize}
	if s.Field != want.Field || s.Status != want.Status || !s.From.Equal(want.From) || !s.To.Equal(want.To) ||
		*s.After != *want.After || s.Limit != want.Limit {
		t.Errorf("parseSearch = %+v (after %+v)", s, s.After)
	}
	p := store.Purchase{ID: "8f14e45f-ceea-467f-a0e6-07a9e1b1d3f2", CreatedAt: want.After.CreatedAt}
	if c, err := parsePurchaseCursor(purchaseCursor(p)); err != nil || c != *want.After {
		t.Errorf("cursor round trip = %+v, %v", c, err)
	}
	if c, err := parseStepCursor(stepCursor(want.After.CreatedAt, 42)); err != nil || c.ID != 42 || !c.At.Equal(want.After.CreatedAt) {
		t.Errorf("step cursor round trip = %+v, %v", c, err)
	}
	for _, bad := range []string{"x", "2026-04-01T00:00:00Z_", "_1", "2026-04-01T00:00:00Z_x"} {
		if _, err := parseStepCursor(bad); err == nil {
			t.Errorf("parseStepCursor(%q) accepted", bad)
		}
	}
}

func TestDashboardLinks(t *testing.T) {
	t.Parallel()
	pi, cus := "pi_1", "cus_9"
	paid := store.Purchase{StripeSessionID: "cs_1", StripePaymentIntentID: &pi, StripeCustomerID: &cus}
	open := store.Purchase{StripeSessionID: "cs_test_a b"}
	for _, c := range []struct {
		d                  dashboard
		p                  store.Purchase
		purchase, customer string
	}{
		{dashboard{"https://dashboard.stripe.com", false}, paid, "https://dashboard.stripe.com/test/payments/pi_1",
			"https://dashboard.stripe.com/test/customers/cus_9"},
		{dashboard{"https://dashboard.stripe.com/", true}, paid, "https://dashboard.stripe.com/payments/pi_1",
			"https://dashboard.stripe.com/customers/cus_9"},
		{dashboard{"https://dashboard.stripe.com", false}, open, "https://dashboard.stripe.com/test/search?query=cs_test_a+b", ""},
	} {
		if got := c.d.purchase(c.p); got != c.purchase {
			t.Errorf("purchase link = %q, want %q", got, c.purchase)
		}
		if got := c.d.customer(c.p); got != c.customer {
			t.Errorf("customer link = %q, want %q", got, c.customer)
		}
	}
}

func TestViewStep(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	lapsed, holding := now.Add(-time.Minute), now.Add(time.Minute)
	sent := json.RawMessage(`{"sent": true, "template": "purchase_confirmation", "to": "ada@example.com"}`)
	skipped := json.RawMessage(`{"sent": false, "skipped": "no admin email configured"}`)
	pid, sid := "0b7c4f0e-8a51-4d43-9a4c-3a6f3e1c2d10", "5f0c9c1e-2b7d-4c36-8f0e-7d2a1b3c4e5f"
	for _, c := range []struct {
		name    string
		s       store.Step
		actions []string
		email   bool
		skipped string
		stuck   string
	}{
		{"failed", store.Step{Status: store.StepFailed}, []string{actionRetry}, false, "", ""},
		{"waiting", store.Step{Status: store.StepWaiting, RunAt: now.Add(-3 * time.Hour)}, []string{actionCancel}, false, "", ""},
		{"pending, due", store.Step{Status: store.StepPending, RunAt: now.Add(-time.Minute)}, []string{actionCancel}, false, "", ""},
		{"pending for too long", store.Step{Status: store.StepPending, RunAt: now.Add(-2 * time.Hour)}, []string{actionCancel}, false, "",
			"pending since 2026-04-01 10:00:00Z: no worker has taken it"},
		{"running, lease lapsed", store.Step{Status: store.StepRunning, LeaseExpiresAt: &lapsed}, nil, false, "",
			"running past its lease (since 2026-04-01 11:59:00Z): its worker is gone"},
		{"running, lease holds", store.Step{Status: store.StepRunning, LeaseExpiresAt: &holding}, nil, false, "", ""},
		{"done, sent", store.Step{Status: store.StepDone, Result: sent, SubjectKind: store.SubjectPurchase, SubjectID: &pid,
			PurchaseID: &pid}, []string{actionResend}, true, "", ""},
		// A resend is a new pipeline of a purchase: a subscription's email
		// shows, but is not resent from the console.
		{"done, sent, subscription", store.Step{Status: store.StepDone, Result: sent, SubjectKind: store.SubjectSubscription,
			SubjectID: &sid}, nil, true, "", ""},
		{"done, skipped", store.Step{Status: store.StepDone, Result: skipped}, nil, false, "no admin email configured", ""},
		{"done, not an email", store.Step{Status: store.StepDone, Result: json.RawMessage(`{"granted": true}`)}, nil, false, "", ""},
		{"done, no result", store.Step{Status: store.StepDone}, nil, false, "", ""},
		{"canceled", store.Step{Status: store.StepCanceled}, nil, false, "", ""},
	} {
		v := viewStep(c.s, now, time.Hour)
		if !slices.Equal(v.Actions, c.actions) || (v.Email != nil) != c.email || v.Skipped != c.skipped || v.Stuck != c.stuck {
			t.Errorf("%s: actions %v, email %v, skipped %q, stuck %q", c.name, v.Actions, v.Email, v.Skipped, v.Stuck)
		}
	}
}

func TestTimelineOrder(t *testing.T) {
	t.Parallel()
	at := func(m int) time.Time { return time.Date(2026, 4, 1, 12, m, 0, 0, time.UTC) }
	paid, expired := at(1), at(9)
	pid := "p1"
	d := purchaseDetail{
		Purchase: store.Purchase{ID: pid, StripeSessionID: "cs_1", CreatedAt: at(0), CompletedAt: &paid, ExpiredAt: &expired},
		Steps:    []store.Step{{ID: 1, Name: "a", CreatedAt: at(1)}, {ID: 2, Name: "b", CreatedAt: at(5)}},
		Grants:   []store.Grant{{ID: 1, UpdatedAt: at(2)}},
		Refunds:  []store.Refund{{ID: "re_1", CreatedAt: at(4)}},
		Disputes: []store.Dispute{{ID: "dp_1", CreatedAt: at(6)}},
		Audit:    []store.AuditEntry{{ID: 2, At: at(7)}, {ID: 1, At: at(3)}},
	}
	var got []string
	for _, e := range timeline(d, at(10), time.Hour) {
		switch e.Kind {
		case "purchase":
			got = append(got, e.Text)
		case "step":
			got = append(got, "step "+e.Step.Name)
		case "grant":
			got = append(got, "grant")
		case "refund":
			got = append(got, e.Refund.ID)
		case "dispute":
			got = append(got, e.Dispute.ID)
		case "audit":
			got = append(got, "audit")
		}
	}
	want := "checkout started (cs_1),paid,step a,grant,audit,re_1,step b,dp_1,audit,checkout expired"
	if strings.Join(got, ",") != want {
		t.Errorf("timeline = %s\nwant       %s", strings.Join(got, ","), want)
	}
}

func TestResendPipelineAndInFlight(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	if got := resendPipeline(nil); got != "resend:1" {
		t.Errorf("first resend = %q", got)
	}
	existing := []store.Step{{Pipeline: "purchase"}, {Pipeline: "resend:1"}, {Pipeline: "resend:1"}, {Pipeline: "resend:3"}}
	if got := resendPipeline(existing); got != "resend:4" {
		t.Errorf("after resend:1 and resend:3 = %q, want a new name", got)
	}
	for _, c := range []struct {
		s    store.Step
		want bool
	}{
		{store.Step{Status: store.StepRunning}, true},
		{store.Step{Status: store.StepPending, RunAt: now.Add(30 * time.Second)}, true},
		{store.Step{Status: store.StepPending, RunAt: now.Add(time.Hour)}, false},
		{store.Step{Status: store.StepWaiting}, false},
		{store.Step{Status: store.StepFailed}, false},
	} {
		if got := inFlight([]store.Step{c.s}, now); got != c.want {
			t.Errorf("inFlight(%s at %s) = %v", c.s.Status, c.s.RunAt, got)
		}
	}
}

func TestAgo(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{30 * time.Second: "30s ago", 5 * time.Minute: "5m ago",
		3 * time.Hour: "3h ago", 72 * time.Hour: "3d ago", -2 * time.Minute: "in 2m"} {
		if got := ago(d); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
}

// A search lists the kinds its field can name, narrowed by the kind asked
// for; a status without a kind is a purchase's.
func TestSearchKinds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kind, status string
		field        store.SearchField
		p, s, o      bool
	}{
		{"", "", store.SearchAny, true, true, true},
		{"", "", store.SearchEmail, true, true, true},
		{"", "", store.SearchPurchaseID, true, true, true},
		{"", "", store.SearchSession, true, false, true},
		{"", "", store.SearchPaymentIntent, true, false, true},
		{"", "", store.SearchCharge, true, false, true},
		{"", "", store.SearchCustomer, true, true, true},
		{"", "", store.SearchSubscription, false, true, false},
		{"", "", store.SearchInvoice, false, true, false},
		{"", "completed", store.SearchEmail, true, false, false},
		{kindSubscriptions, "active", store.SearchAny, false, true, false},
		{kindOrders, "", store.SearchCharge, false, false, true},
		{kindOrders, "", store.SearchSubscription, false, false, false},
		{kindPurchases, "", store.SearchCustomer, true, false, false},
	} {
		p, s, o := searchKinds(searchForm{Kind: c.kind, Status: c.status}, c.field)
		if p != c.p || s != c.s || o != c.o {
			t.Errorf("kind %q status %q field %q: purchases %v, subscriptions %v, orders %v", c.kind, c.status, c.field, p, s, o)
		}
	}
}
