package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/store"
)

// stripeEnv is the Stripe emulator with config.yaml's catalog synced into
// it, and the stripeapi door and price resolver pointed at it.
type stripeEnv struct {
	emu    *stripeemu.Emulator
	api    *stripeapi.API
	prices *catalog.Resolver
}

func newStripeEnv(t *testing.T, clk *clock.Fake, cfg *config.Config) stripeEnv {
	t.Helper()
	emu := stripeemu.New(stripeemu.Options{Clock: clk})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL, MaxRetries: -1, RateLimit: 100})
	api := stripeapi.New(sc)
	if _, err := catalog.Sync(t.Context(), api, cfg.Products, false); err != nil {
		t.Fatalf("sync catalog into the emulator: %v", err)
	}
	emu.ResetRequests()
	return stripeEnv{emu: emu, api: api, prices: catalog.NewResolver(api, clk, 0)}
}

// newCheckoutHarness is the API with checkout wired to the emulator.
func newCheckoutHarness(t *testing.T, cfg *config.Config) (*apiHarness, stripeEnv) {
	t.Helper()
	if cfg == nil {
		cfg = loadConfig(t)
	}
	clk := clock.NewFake(time.Now())
	env := newStripeEnv(t, clk, cfg)
	h := newHarness(t, harnessOptions{clock: clk, deps: httpapi.APIDeps{Config: cfg, Stripe: env.api, Prices: env.prices}})
	return h, env
}

type checkoutBody struct {
	URL       string `json:"url"`
	SessionID string `json:"session_id"`
}

func TestCheckoutCreatesASessionAndAPendingPurchase(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	tok := h.token("user-42", "ada@example.com")

	r := h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_one_time", "quantity": 2, "github_username": "ada-l"})
	var out checkoutBody
	r.decode(t, &out)
	if r.status != http.StatusOK || out.URL == "" || !strings.HasPrefix(out.SessionID, "cs_") {
		t.Fatalf("checkout = %d %s", r.status, r.body)
	}

	sess, err := env.emu.Session(out.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.db.PurchaseBySession(t.Context(), out.SessionID)
	if err != nil {
		t.Fatalf("no purchase recorded for the session: %v", err)
	}
	if p.Status != store.PurchasePending || p.UserID == nil || *p.UserID != "user-42" || p.Email == nil ||
		*p.Email != "ada@example.com" || p.ProductKey != "pro_one_time" || p.Quantity != 2 ||
		p.AmountTotal != 2*19900 || p.AmountTotal != sess.AmountTotal || p.Currency != "usd" ||
		p.GitHubUsername == nil || *p.GitHubUsername != "ada-l" || p.ConsentRequired {
		t.Errorf("purchase recorded as %+v", p)
	}
	if p.SessionExpiresAt == nil || p.SessionExpiresAt.Unix() != sess.ExpiresAt || !p.CreatedAt.Equal(h.clock.Now().Truncate(time.Microsecond)) {
		t.Errorf("purchase expires %v created %s; session expires %d, now %s", p.SessionExpiresAt, p.CreatedAt, sess.ExpiresAt, h.clock.Now())
	}
	want := map[string]string{"user_id": "user-42", "product": "pro_one_time", "purchase_id": p.ID}
	for k, v := range want {
		if sess.Metadata[k] != v {
			t.Errorf("session metadata %s = %q, want %q", k, sess.Metadata[k], v)
		}
	}
	if sess.ClientReferenceID != "user-42" || sess.CustomerEmail != "ada@example.com" || !sess.AllowPromotionCodes {
		t.Errorf("session client_reference_id %q customer_email %q allow_promotion_codes %v",
			sess.ClientReferenceID, sess.CustomerEmail, sess.AllowPromotionCodes)
	}
	if sess.AfterExpiration == nil || sess.AfterExpiration.Recovery == nil || !sess.AfterExpiration.Recovery.Enabled {
		t.Errorf("session after_expiration %+v; want recovery enabled", sess.AfterExpiration)
	}
	var sawKey bool
	for _, req := range env.emu.WriteRequests() {
		if req.Path == "/v1/checkout/sessions" && req.IdempotencyKey == "paymentd-checkout-"+p.ID {
			sawKey = true
		}
	}
	if !sawKey {
		t.Error("the session was not created with an idempotency key derived from the purchase id")
	}
	acct, err := h.db.GetAccount(t.Context(), "user-42")
	if err != nil || acct.GitHubUsername == nil || *acct.GitHubUsername != "ada-l" {
		t.Errorf("account = %+v, %v", acct, err)
	}

	// The default quantity is one.
	r = h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_one_time"})
	r.decode(t, &out)
	if p, err := h.db.PurchaseBySession(t.Context(), out.SessionID); err != nil || p.Quantity != 1 || p.AmountTotal != 19900 {
		t.Errorf("checkout without a quantity recorded %+v, %v", p, err)
	}
}

func TestCheckoutWithCouponAndConsent(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Fulfillment.AbandonedRequiresConsent = true
	h, env := newCheckoutHarness(t, cfg)
	env.emu.AddCoupon("LAUNCH20", 20, 0, "")
	r := h.do("POST", "/api/checkout", h.token("user-7", "grace@example.com"), map[string]any{"product": "pro_one_time", "coupon": "LAUNCH20"})
	var out checkoutBody
	r.decode(t, &out)
	if r.status != http.StatusOK {
		t.Fatalf("checkout with a coupon = %d %s", r.status, r.body)
	}
	sess, err := env.emu.Session(out.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.db.PurchaseBySession(t.Context(), out.SessionID)
	if err != nil || p.AmountTotal != 15920 || p.AmountTotal != sess.AmountTotal || !p.ConsentRequired {
		t.Errorf("purchase with a 20%% coupon = %+v, %v; want 15920 and consent required", p, err)
	}
	if sess.AllowPromotionCodes || sess.ConsentCollection == nil || sess.ConsentCollection.Promotions != "auto" {
		t.Errorf("session allow_promotion_codes %v consent_collection %+v", sess.AllowPromotionCodes, sess.ConsentCollection)
	}
}

func TestCheckoutRejectsBadRequestsAndRecordsNothing(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	tok := h.token("user-9", "bad@example.com")
	for _, c := range []struct {
		name string
		body any
		code string
	}{
		{"unknown product", map[string]any{"product": "gold_bar"}, "unknown_product"},
		{"zero quantity", map[string]any{"product": "pro_one_time", "quantity": 0}, "invalid_quantity"},
		{"negative quantity", map[string]any{"product": "pro_one_time", "quantity": -1}, "invalid_quantity"},
		{"too many", map[string]any{"product": "pro_one_time", "quantity": 101}, "invalid_quantity"},
		{"bad github username", map[string]any{"product": "pro_one_time", "github_username": "-nope-"}, "invalid_github_username"},
		{"unknown field", map[string]any{"product": "pro_one_time", "price": 1}, "invalid_json"},
		{"not json", "{product", "invalid_json"},
		{"coupon Stripe does not know", map[string]any{"product": "pro_one_time", "coupon": "NOPE"}, "invalid_coupon"},
	} {
		r := h.do("POST", "/api/checkout", tok, c.body)
		if r.status != http.StatusBadRequest || r.errorCode() != c.code {
			t.Errorf("%s: %d %s; want 400 %s", c.name, r.status, r.body, c.code)
		}
	}
	huge := `{"product": "pro_one_time", "coupon": "` + strings.Repeat("x", int(h.cfg.HTTP.MaxBodyBytes)) + `"}`
	if r := h.do("POST", "/api/checkout", tok, huge); r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "body_too_large" {
		t.Errorf("a body over http.max_body_bytes = %d %s; want 413", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM purchases`); n != 0 {
		t.Errorf("rejected checkouts recorded %d purchases", n)
	}
	if n := h.count(`SELECT count(*) FROM accounts`); n != 0 {
		t.Errorf("rejected checkouts recorded %d accounts", n)
	}
	if s := env.emu.Sessions(); len(s) != 0 {
		t.Errorf("rejected checkouts left %d sessions at Stripe", len(s))
	}
}

func TestCheckoutWhenStripeFails(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	tok := h.token("user-5", "down@example.com")
	for _, fail := range []string{"price lookup", "session creation"} {
		if fail == "session creation" {
			// The price is cached now; the next request to Stripe creates the session.
			if _, _, _, err := env.prices.PriceID(t.Context(), "pro_one_time"); err != nil {
				t.Fatal(err)
			}
		}
		env.emu.FailNext(1, http.StatusInternalServerError)
		r := h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_one_time"})
		if r.status != http.StatusBadGateway || r.errorCode() != "stripe_unavailable" {
			t.Errorf("checkout with Stripe failing its %s = %d %s; want 502 stripe_unavailable", fail, r.status, r.body)
		}
	}
	if n := h.count(`SELECT count(*) FROM purchases`); n != 0 {
		t.Errorf("a failed checkout recorded %d purchases", n)
	}
}
