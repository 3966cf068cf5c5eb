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
	h, env, _ := newSubscriptionHarnessWithReconciler(t)
	return h, env
}

// newSubscriptionHarnessWithReconciler is newSubscriptionHarness with the
// reconciler its claims use, for tests that reconcile a later change.
func newSubscriptionHarnessWithReconciler(t *testing.T) (*apiHarness, stripeEnv, *reconcile.Reconciler) {
	t.Helper()
	cfg := loadConfig(t)
	h0, env := newCheckoutHarness(t, cfg)
	rec := reconcile.New(reconcile.Options{DB: h0.db, Stripe: env.api, Fulfillment: &purchasePipeline{}, Clock: h0.clock,
		Log: testLogger(t), Products: cfg.Products,
		Subscriptions: reconcile.SubscriptionOptions{Grace: cfg.Subscriptions.Grace}})
	h := newHarness(t, harnessOptions{db: h0.db, clock: h0.clock, deps: httpapi.APIDeps{Config: cfg, Stripe: env.api,
		Prices: env.prices, Claimer: rec, Billing: env.api}})
	return h, env, rec
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

// subscriptionCheckoutAttempt is one POST /api/checkout for a subscription
// and what reached the emulator because of it.
type subscriptionCheckoutAttempt struct {
	resp      response
	sessionID string
	// sessionCreates counts the Checkout Sessions it asked Stripe for;
	// requests counts every Stripe request it made.
	sessionCreates, requests int
	// trialDays is subscription_data[trial_period_days] as sent; hasTrial
	// says whether it was sent at all.
	trialDays string
	hasTrial  bool
}

func attemptSubscriptionCheckout(t *testing.T, h *apiHarness, env stripeEnv, tok string, body map[string]any) subscriptionCheckoutAttempt {
	t.Helper()
	env.emu.ResetRequests()
	a := subscriptionCheckoutAttempt{resp: h.do("POST", "/api/checkout", tok, body)}
	var out checkoutBody
	if a.resp.status == http.StatusOK {
		a.resp.decode(t, &out)
		a.sessionID = out.SessionID
	}
	reqs := env.emu.Requests()
	a.requests = len(reqs)
	for _, r := range reqs {
		if r.Method == http.MethodPost && r.Path == "/v1/checkout/sessions" {
			a.sessionCreates++
			a.hasTrial = r.Form.Has("subscription_data[trial_period_days]")
			a.trialDays = r.Form.Get("subscription_data[trial_period_days]")
		}
	}
	return a
}

// TestSubscriptionCheckoutOncePerProduct: a user whose subscription to a
// product has not ended cannot open another checkout for it (409
// already_subscribed, before any Stripe request, nothing written), in the
// same organization; and the product's trial is offered once: a user who
// ever had a subscription to it (ended included) checks out without
// trial_period_days, while a first-ever checkout and another user keep it.
func TestSubscriptionCheckoutOncePerProduct(t *testing.T) {
	t.Parallel()
	h, env, rec := newSubscriptionHarnessWithReconciler(t)
	tok := h.token("user-1", "ann@example.com")

	first := attemptSubscriptionCheckout(t, h, env, tok, map[string]any{"product": "pro_subscription"})
	if first.resp.status != http.StatusOK || first.sessionCreates != 1 || first.trialDays != "14" {
		t.Fatalf("first checkout = %d %s, %d sessions, trial %q", first.resp.status, first.resp.body,
			first.sessionCreates, first.trialDays)
	}
	if err := env.emu.PaySession(first.sessionID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.claim(tok, first.sessionID); r.status != http.StatusOK {
		t.Fatalf("claim = %d %s", r.status, r.body)
	}
	ss, err := h.db.UserSubscriptions(t.Context(), "user-1")
	if err != nil || len(ss) != 1 || ss[0].Status != store.SubscriptionTrialing {
		t.Fatalf("after the first checkout: %+v (%v)", ss, err)
	}
	trialing := ss[0]

	// While it is trialing: refused, in the personal scope, before Stripe
	// hears of it, with nothing written (not even the GitHub username).
	before, err := h.db.GetAccount(t.Context(), "user-1")
	if err != nil {
		t.Fatal(err)
	}
	subsBefore := h.count(`SELECT count(*) FROM subscriptions`)
	for _, body := range []map[string]any{
		{"product": "pro_subscription"},
		{"product": "pro_subscription", "price": "pro_yearly", "github_username": "ann-new"},
	} {
		a := attemptSubscriptionCheckout(t, h, env, tok, body)
		if a.resp.status != http.StatusConflict || !strings.Contains(string(a.resp.body), `"already_subscribed"`) {
			t.Errorf("checkout %v while trialing = %d %s, want 409 already_subscribed", body, a.resp.status, a.resp.body)
		}
		if a.requests != 0 {
			t.Errorf("checkout %v while trialing made %d Stripe requests, want none", body, a.requests)
		}
	}
	after, err := h.db.GetAccount(t.Context(), "user-1")
	if err != nil {
		t.Fatal(err)
	}
	if n := h.count(`SELECT count(*) FROM subscriptions`); n != subsBefore ||
		!after.UpdatedAt.Equal(before.UpdatedAt) || (after.GitHubUsername != nil) != (before.GitHubUsername != nil) {
		t.Errorf("a refused checkout wrote: subscriptions %d -> %d, account %+v -> %+v", subsBefore, n, before, after)
	}

	// Another user is unaffected: their first checkout has the trial.
	other := attemptSubscriptionCheckout(t, h, env, h.token("user-2", "bob@example.com"),
		map[string]any{"product": "pro_subscription"})
	if other.resp.status != http.StatusOK || other.trialDays != "14" {
		t.Errorf("another user's checkout = %d %s, trial %q", other.resp.status, other.resp.body, other.trialDays)
	}

	// Another organization is another subscription, but not another trial.
	org := attemptSubscriptionCheckout(t, h, env, tok, map[string]any{"product": "pro_subscription",
		"organization_id": "org_9"})
	if org.resp.status != http.StatusOK || org.sessionCreates != 1 || org.hasTrial {
		t.Errorf("checkout for another organization = %d %s, trial sent %v (%q)", org.resp.status, org.resp.body,
			org.hasTrial, org.trialDays)
	}

	// Once it has ended: allowed again, without a trial; paid, the new
	// subscription is active at once.
	if err := env.emu.CancelSubscription(trialing.StripeSubscriptionID); err != nil {
		t.Fatal(err)
	}
	if err := rec.Object(t.Context(), trialing.StripeSubscriptionID, reconcile.NewReport(false)); err != nil {
		t.Fatal(err)
	}
	if s, err := h.db.GetSubscription(t.Context(), trialing.ID); err != nil || s.Status != store.SubscriptionCanceled {
		t.Fatalf("after canceling: %+v (%v)", s, err)
	}
	again := attemptSubscriptionCheckout(t, h, env, tok, map[string]any{"product": "pro_subscription"})
	if again.resp.status != http.StatusOK || again.sessionCreates != 1 || again.hasTrial {
		t.Fatalf("checkout after the subscription ended = %d %s, trial sent %v (%q)", again.resp.status,
			again.resp.body, again.hasTrial, again.trialDays)
	}
	if err := env.emu.PaySession(again.sessionID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	sess, err := env.emu.Session(again.sessionID)
	if err != nil || sess.Subscription == nil {
		t.Fatalf("paid session %+v (%v)", sess, err)
	}
	sub, err := env.emu.Subscription(sess.Subscription.ID)
	if err != nil || sub.Status != "active" || sub.TrialEnd != 0 {
		t.Errorf("the subscription after an ended one: %+v (%v), want active without a trial", sub, err)
	}
}
