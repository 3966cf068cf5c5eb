package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/reconcile"
)

// TestBillingPortalIsRateLimited: each portal session created spends one
// of the user's http.stripe_lookup_rate; past it the request is a 429
// rate_limited with Retry-After that creates no portal session. A refused
// return URL or a user without a customer asks Stripe nothing and is not
// counted; another user has a bucket of their own.
func TestBillingPortalIsRateLimited(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.HTTP.StripeLookupRate = 3
	h0, env := newCheckoutHarness(t, cfg)
	rec := reconcile.New(reconcile.Options{DB: h0.db, Stripe: env.api, Fulfillment: &purchasePipeline{}, Clock: h0.clock,
		Log: testLogger(t), Products: cfg.Products})
	h := newHarness(t, harnessOptions{db: h0.db, clock: h0.clock, deps: httpapi.APIDeps{Config: cfg, Stripe: env.api,
		Prices: env.prices, Claimer: rec, Billing: env.api}})
	tok, other := h.token("user-1", "ada@example.com"), h.token("user-2", "bob@example.com")
	for _, u := range []string{tok, other} {
		if r := h.do("POST", "/api/checkout", u, map[string]any{"product": "pro_subscription"}); r.status != http.StatusOK {
			t.Fatalf("subscription checkout = %d %s", r.status, r.body)
		}
	}
	portal := func(tok, returnURL string) response {
		t.Helper()
		return h.do("POST", "/api/billing/portal", tok, map[string]string{"return_url": returnURL})
	}
	sessions := func() int { return stripeRequests(env, "/v1/billing_portal/sessions") }
	good := h.cfg.HTTP.PublicURL + "/account"

	for range 5 {
		if r := portal(tok, "https://evil.example/account"); r.status != http.StatusBadRequest {
			t.Fatalf("foreign return_url = %d %s", r.status, r.body)
		}
		if r := portal(h.token("user-3", "cy@example.com"), good); r.status != http.StatusNotFound {
			t.Fatalf("user without a customer = %d %s", r.status, r.body)
		}
	}
	for i := range 3 {
		if r := portal(tok, good); r.status != http.StatusOK {
			t.Fatalf("portal %d = %d %s", i+1, r.status, r.body)
		}
	}
	calls := sessions()
	r := portal(tok, good)
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "20" {
		t.Errorf("portal 4 of 3 a minute = %d Retry-After %q %s; want 429 rate_limited, Retry-After 20", r.status,
			r.header.Get("Retry-After"), r.body)
	}
	if n := sessions() - calls; n != 0 {
		t.Errorf("a rate-limited request created %d portal sessions", n)
	}
	if r := portal(other, good); r.status != http.StatusOK {
		t.Errorf("another user's portal = %d %s", r.status, r.body)
	}
	h.clock.Advance(20 * time.Second)
	if r := portal(h.token("user-1", "ada@example.com"), good); r.status != http.StatusOK {
		t.Errorf("portal after Retry-After = %d %s", r.status, r.body)
	}
}
