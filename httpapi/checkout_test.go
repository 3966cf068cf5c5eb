package httpapi_test

import (
	"fmt"
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

func TestCheckoutWithPromotionCodeAndConsent(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Fulfillment.AbandonedRequiresConsent = true
	h, env := newCheckoutHarness(t, cfg)
	coupon, err := env.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	if err != nil {
		t.Fatal(err)
	}
	promo, err := env.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "LAUNCH20", Coupon: coupon})
	if err != nil {
		t.Fatal(err)
	}
	// The customer types the code in any case; Stripe compares regardless of case.
	r := h.do("POST", "/api/checkout", h.token("user-7", "grace@example.com"),
		map[string]any{"product": "pro_one_time", "promotion_code": "launch20"})
	var out checkoutBody
	r.decode(t, &out)
	if r.status != http.StatusOK {
		t.Fatalf("checkout with a promotion code = %d %s", r.status, r.body)
	}
	sess, err := env.emu.Session(out.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.db.PurchaseBySession(t.Context(), out.SessionID)
	if err != nil || p.AmountTotal != 15920 || p.AmountTotal != sess.AmountTotal || !p.ConsentRequired {
		t.Errorf("purchase with a 20%% promotion code = %+v, %v; want 15920 and consent required", p, err)
	}
	if sess.TotalDetails == nil || sess.TotalDetails.AmountDiscount != 3980 {
		t.Errorf("session total_details %+v; want a discount of 3980", sess.TotalDetails)
	}
	if sess.AllowPromotionCodes || sess.ConsentCollection == nil || sess.ConsentCollection.Promotions != "auto" {
		t.Errorf("session allow_promotion_codes %v consent_collection %+v", sess.AllowPromotionCodes, sess.ConsentCollection)
	}
	for _, req := range env.emu.WriteRequests() {
		if req.Path == "/v1/checkout/sessions" && req.Form.Get("discounts[0][promotion_code]") != promo {
			t.Errorf("session created with discounts %v; want the promotion code's id %s", req.Form, promo)
		}
	}
}

// invalidPromotionCodeBody is the one answer to every unusable code.
const invalidPromotionCodeBody = `{"error":{"code":"invalid_promotion_code","message":"this promotion code is not valid"}}` + "\n"

func TestUnusablePromotionCodesGetByteIdenticalAnswers(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	now := h.clock.Now()
	coupon, _ := env.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	lapsing, _ := env.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 30, RedeemBy: now.Add(time.Hour)})
	promo := func(p stripeemu.PromotionCodeParams) string {
		t.Helper()
		if p.Coupon == "" {
			p.Coupon = coupon
		}
		id, err := env.emu.CreatePromotionCode(p)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	promo(stripeemu.PromotionCodeParams{Code: "PAUSED", Inactive: true})
	promo(stripeemu.PromotionCodeParams{Code: "SOON", ExpiresAt: now.Add(time.Hour)})
	promo(stripeemu.PromotionCodeParams{Code: "LAPSING", Coupon: lapsing})
	promo(stripeemu.PromotionCodeParams{Code: "BIGSPENDER", MinimumAmount: 100000, MinimumAmountCurrency: "usd"})
	promo(stripeemu.PromotionCodeParams{Code: "WELCOME", FirstTimeTransaction: true})
	once := promo(stripeemu.PromotionCodeParams{Code: "ONCE", MaxRedemptions: 1})
	promo(stripeemu.PromotionCodeParams{Code: "GOOD"})

	// Use ONCE up, and make returning@example.com a returning customer.
	used := h.do("POST", "/api/checkout", h.token("user-once", "returning@example.com"),
		map[string]any{"product": "pro_one_time", "promotion_code": "ONCE"})
	var out checkoutBody
	used.decode(t, &out)
	if err := env.emu.PaySession(out.SessionID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour) // SOON expires and LAPSING's coupon lapses
	sessionsBefore := len(env.emu.Sessions())
	purchasesBefore := h.count(`SELECT count(*) FROM purchases`)

	for i, c := range []struct{ name, code, email string }{
		{"unknown", "NOSUCHCODE", ""},
		{"inactive", "PAUSED", ""},
		{"expired", "SOON", ""},
		{"coupon no longer valid", "LAPSING", ""},
		{"used up", "ONCE", ""},
		{"below its minimum (refused by Stripe)", "BIGSPENDER", ""},
		{"not a first-time customer (refused by Stripe)", "WELCOME", "returning@example.com"},
		{"malformed", "GOOD CODE; DROP", ""},
		{"too long", strings.Repeat("A", 101), ""},
		{"the promotion code's id", once, ""},
		{"the coupon's id", coupon, ""},
	} {
		email := c.email
		if email == "" {
			email = "shopper@example.com"
		}
		r := h.do("POST", "/api/checkout", h.token(fmt.Sprintf("user-%d", i), email),
			map[string]any{"product": "pro_one_time", "promotion_code": c.code})
		if r.status != http.StatusBadRequest || string(r.body) != invalidPromotionCodeBody {
			t.Errorf("%s: %d %q; want 400 %q", c.name, r.status, r.body, invalidPromotionCodeBody)
		}
	}
	if n := len(env.emu.Sessions()); n != sessionsBefore {
		t.Errorf("refused promotion codes left %d sessions at Stripe", n-sessionsBefore)
	}
	if n := h.count(`SELECT count(*) FROM purchases`); n != purchasesBefore {
		t.Errorf("refused promotion codes recorded %d purchases", n-purchasesBefore)
	}
	// A good code still works.
	if r := h.do("POST", "/api/checkout", h.token("user-good", "good@example.com"),
		map[string]any{"product": "pro_one_time", "promotion_code": "good"}); r.status != http.StatusOK {
		t.Errorf("a usable code = %d %s", r.status, r.body)
	}
}

func TestAFreeCouponCannotBeAppliedThroughTheAPI(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	free, err := env.emu.CreateCoupon(stripeemu.CouponParams{ID: "STAFF100", Name: "Internal, 100% off", PercentOff: 100})
	if err != nil {
		t.Fatal(err)
	}
	paused, _ := env.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "STAFF", Coupon: free, Inactive: true})
	env.emu.ResetRequests()
	tok := h.token("user-mallory", "mallory@example.com")
	for _, c := range []struct {
		name string
		body any
		code string
	}{
		{"coupon field", map[string]any{"product": "pro_one_time", "coupon": free}, "unsupported_field"},
		{"coupon field, empty", map[string]any{"product": "pro_one_time", "coupon": ""}, "unsupported_field"},
		{"coupon field, null", `{"product": "pro_one_time", "coupon": null}`, "unsupported_field"},
		{"discounts field", map[string]any{"product": "pro_one_time", "discounts": []any{map[string]string{"coupon": free}}}, "invalid_json"},
		{"coupon id as a code", map[string]any{"product": "pro_one_time", "promotion_code": free}, "invalid_promotion_code"},
		{"coupon id, lower case", map[string]any{"product": "pro_one_time", "promotion_code": "staff100"}, "invalid_promotion_code"},
		{"its inactive code", map[string]any{"product": "pro_one_time", "promotion_code": "STAFF"}, "invalid_promotion_code"},
		{"its inactive code's id", map[string]any{"product": "pro_one_time", "promotion_code": paused}, "invalid_promotion_code"},
	} {
		r := h.do("POST", "/api/checkout", tok, c.body)
		if r.status != http.StatusBadRequest || r.errorCode() != c.code {
			t.Errorf("%s: %d %s; want 400 %s", c.name, r.status, r.body, c.code)
		}
		if c.code == "unsupported_field" && !strings.Contains(r.errorMessage(), `"coupon"`) {
			t.Errorf("%s: the error %q does not name the coupon field", c.name, r.errorMessage())
		}
	}
	for _, req := range env.emu.Requests() {
		for k := range req.Form {
			if strings.HasPrefix(k, "discounts") {
				t.Errorf("a discount reached Stripe: %s %s %v", req.Method, req.Path, req.Form)
			}
		}
	}
	if s := env.emu.Sessions(); len(s) != 0 {
		t.Errorf("%d sessions created", len(s))
	}
	if c, _ := env.emu.Coupon(free); c.TimesRedeemed != 0 {
		t.Errorf("the 100%% coupon was redeemed %d times", c.TimesRedeemed)
	}
	if n := h.count(`SELECT count(*) FROM purchases`); n != 0 {
		t.Errorf("%d purchases recorded", n)
	}
}

func TestCheckoutRateLimitHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	a, env := newCheckoutHarness(t, cfg)
	// A second replica: another API on the same database and clock.
	b := newHarness(t, harnessOptions{db: a.db, clock: a.clock,
		deps: httpapi.APIDeps{Config: cfg, Stripe: env.api, Prices: env.prices}})
	tok := a.token("user-eager", "eager@example.com")
	body := map[string]any{"product": "pro_one_time"}
	for i := range cfg.HTTP.CheckoutRate {
		h := []*apiHarness{a, b}[i%2]
		if r := h.do("POST", "/api/checkout", tok, body); r.status != http.StatusOK {
			t.Fatalf("checkout %d = %d %s", i+1, r.status, r.body)
		}
	}
	for _, h := range []*apiHarness{a, b} {
		r := h.do("POST", "/api/checkout", tok, body)
		if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "6" {
			t.Errorf("checkout 11 = %d Retry-After %q %s; want 429 rate_limited, Retry-After 6", r.status,
				r.header.Get("Retry-After"), r.body)
		}
	}
	// Refused attempts count for nothing, bad requests count too, and other
	// users are not affected.
	if r := b.do("POST", "/api/checkout", a.token("user-calm", "calm@example.com"), body); r.status != http.StatusOK {
		t.Errorf("another user = %d %s", r.status, r.body)
	}
	a.clock.Advance(6 * time.Second)
	if r := a.do("POST", "/api/checkout", tok, map[string]any{"product": "nope"}); r.status != http.StatusBadRequest {
		t.Errorf("after Retry-After = %d %s; want the request served (400 unknown_product)", r.status, r.body)
	}
	if r := b.do("POST", "/api/checkout", tok, body); r.status != http.StatusTooManyRequests {
		t.Errorf("a bad request did not count: %d %s", r.status, r.body)
	}
	if n := a.count(`SELECT count(*) FROM purchases WHERE user_id = 'user-eager'`); n != cfg.HTTP.CheckoutRate {
		t.Errorf("%d purchases for user-eager; want %d", n, cfg.HTTP.CheckoutRate)
	}
}

func TestCheckoutRejectsBadRequestsAndRecordsNothing(t *testing.T) {
	t.Parallel()
	h, env := newCheckoutHarness(t, nil)
	tok := h.token("user-9", "bad@example.com")
	for i, c := range []struct {
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
		{"a coupon", map[string]any{"product": "pro_one_time", "coupon": "NOPE"}, "unsupported_field"},
		{"promotion code Stripe does not know", map[string]any{"product": "pro_one_time", "promotion_code": "NOPE"}, "invalid_promotion_code"},
	} {
		// One user per request: the checkout rate limit is not under test.
		tok := h.token(fmt.Sprintf("user-9-%d", i), "bad@example.com")
		r := h.do("POST", "/api/checkout", tok, c.body)
		if r.status != http.StatusBadRequest || r.errorCode() != c.code {
			t.Errorf("%s: %d %s; want 400 %s", c.name, r.status, r.body, c.code)
		}
	}
	huge := `{"product": "pro_one_time", "promotion_code": "` + strings.Repeat("x", int(h.cfg.HTTP.MaxBodyBytes)) + `"}`
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
