package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// newSubscriptionHarness is the API with checkout, billing and claims on
// the emulator and the real reconciler, config.yaml's catalog synced.
func newSubscriptionHarness(t *testing.T) (*apiHarness, stripeEnv) {
	t.Helper()
	cfg := loadConfig(t)
	h0, env := newCheckoutHarness(t, cfg)
	rec := reconcile.New(reconcile.Options{DB: h0.db, Stripe: env.api, Fulfillment: &purchasePipeline{}, Clock: h0.clock,
		Log: testLogger(t), Products: cfg.Products,
		Subscriptions: reconcile.SubscriptionOptions{Grace: cfg.Subscriptions.Grace}})
	h := newHarness(t, harnessOptions{db: h0.db, clock: h0.clock, deps: httpapi.APIDeps{Config: cfg, Stripe: env.api,
		Prices: env.prices, Claimer: rec, Billing: env.api}})
	return h, env
}

type subscriptionsBody struct {
	Subscriptions []struct {
		ID                   string     `json:"id"`
		StripeSubscriptionID string     `json:"stripe_subscription_id"`
		Product              string     `json:"product"`
		Price                string     `json:"price"`
		Status               string     `json:"status"`
		AccessState          string     `json:"access_state"`
		Quantity             int64      `json:"quantity"`
		Amount               int64      `json:"amount"`
		Currency             string     `json:"currency"`
		Interval             string     `json:"interval"`
		CurrentPeriodEnd     time.Time  `json:"current_period_end"`
		TrialEnd             *time.Time `json:"trial_end"`
		CancelAtPeriodEnd    bool       `json:"cancel_at_period_end"`
		OrganizationID       *string    `json:"organization_id"`
		LatestInvoice        *struct {
			ID         string `json:"id"`
			Status     string `json:"status"`
			AmountDue  int64  `json:"amount_due"`
			AmountPaid int64  `json:"amount_paid"`
		} `json:"latest_invoice"`
	} `json:"subscriptions"`
}

// TestSubscriptionCheckoutClaimAndList: a subscription checkout makes one
// Stripe customer per user (a second checkout reuses it), puts paymentd's
// metadata on the session and the subscription, starts the configured
// trial; the paid session's claim records the subscription for the
// caller, and GET /api/subscriptions shows it; the billing portal serves a
// user with a customer, refuses a foreign return URL, and 404s without one.
func TestSubscriptionCheckoutClaimAndList(t *testing.T) {
	t.Parallel()
	h, env := newSubscriptionHarness(t)
	tok := h.token("user-7", "sam@example.com")

	r := h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_subscription", "price": "pro_yearly",
		"organization_id": "org_42"})
	var out checkoutBody
	r.decode(t, &out)
	if r.status != http.StatusOK || !strings.HasPrefix(out.SessionID, "cs_") {
		t.Fatalf("checkout = %d %s", r.status, r.body)
	}
	sess, err := env.emu.Session(out.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Mode != "subscription" || sess.Customer == nil || sess.Customer.ID == "" {
		t.Fatalf("session mode %s customer %+v", sess.Mode, sess.Customer)
	}
	for k, v := range map[string]string{"user_id": "user-7", "product": "pro_subscription", "price": "pro_yearly",
		"organization_id": "org_42"} {
		if sess.Metadata[k] != v {
			t.Errorf("session metadata %s = %q, want %q", k, sess.Metadata[k], v)
		}
	}
	customer, err := h.db.AccountCustomer(t.Context(), "user-7")
	if err != nil || customer != sess.Customer.ID {
		t.Fatalf("account customer %q (%v), session's %s", customer, err, sess.Customer.ID)
	}

	// Refused: a price of another product, a bad organization id, a price
	// for a one-time product.
	for _, body := range []map[string]any{
		{"product": "pro_subscription", "price": "nope"},
		{"product": "pro_subscription", "organization_id": "org 42; drop"},
		{"product": "pro_one_time", "price": "pro_monthly"},
	} {
		if r := h.do("POST", "/api/checkout", tok, body); r.status != http.StatusBadRequest {
			t.Errorf("checkout %v = %d %s, want 400", body, r.status, r.body)
		}
	}

	// Not paid yet: nothing to claim.
	if r, _ := h.claim(tok, out.SessionID); r.status != http.StatusBadRequest {
		t.Errorf("claim before paying = %d %s", r.status, r.body)
	}
	if err := env.emu.PaySession(out.SessionID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	r = h.do("POST", "/api/purchases/claim", tok, map[string]string{"session_id": out.SessionID})
	var claimed struct {
		Status         string `json:"status"`
		Product        string `json:"product"`
		SubscriptionID string `json:"subscription_id"`
		AlreadyClaimed bool   `json:"already_claimed"`
	}
	r.decode(t, &claimed)
	if r.status != http.StatusOK || claimed.Status != "trialing" || claimed.Product != "pro_subscription" ||
		claimed.SubscriptionID != sess.Metadata[reconcile.MetaSubscriptionID] || claimed.AlreadyClaimed {
		t.Fatalf("claim = %d %s", r.status, r.body)
	}
	other := h.token("user-8", "eve@example.com")
	if r, _ := h.claim(other, out.SessionID); r.status != http.StatusForbidden {
		t.Errorf("another user's claim = %d %s", r.status, r.body)
	}

	var list subscriptionsBody
	r = h.do("GET", "/api/subscriptions", tok, nil)
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list.Subscriptions) != 1 {
		t.Fatalf("list = %d %s", r.status, r.body)
	}
	s := list.Subscriptions[0]
	if s.ID != claimed.SubscriptionID || s.Product != "pro_subscription" || s.Price != "pro_yearly" ||
		s.Status != string(store.SubscriptionTrialing) || s.Amount != 29000 || s.Currency != "usd" ||
		s.Interval != "year" || s.TrialEnd == nil || s.OrganizationID == nil || *s.OrganizationID != "org_42" ||
		s.LatestInvoice == nil || s.LatestInvoice.AmountPaid != 0 {
		t.Errorf("listed %s", r.body)
	}
	if !strings.Contains(string(r.body), `"current_period_end":"`) || strings.Contains(string(r.body), "+00:00") {
		t.Errorf("times are not RFC 3339 UTC: %s", r.body)
	}

	// A second checkout reuses the customer.
	r = h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_subscription"})
	r.decode(t, &out)
	if sess2, err := env.emu.Session(out.SessionID); err != nil || sess2.Customer == nil || sess2.Customer.ID != customer {
		t.Errorf("second checkout's customer %+v (%v), want %s", sess2.Customer, err, customer)
	}

	// The billing portal.
	var portal struct {
		URL string `json:"url"`
	}
	r = h.do("POST", "/api/billing/portal", tok, map[string]string{"return_url": h.cfg.HTTP.PublicURL + "/account"})
	r.decode(t, &portal)
	if r.status != http.StatusOK || portal.URL == "" {
		t.Errorf("portal = %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/api/billing/portal", tok, map[string]string{"return_url": "https://evil.example/account"}); r.status != http.StatusBadRequest {
		t.Errorf("portal with a foreign return_url = %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/api/billing/portal", other, map[string]string{}); r.status != http.StatusNotFound ||
		!strings.Contains(string(r.body), "no_customer") {
		t.Errorf("portal for a user without a customer = %d %s", r.status, r.body)
	}
}
