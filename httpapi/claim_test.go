package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// purchasePipeline is a reconcile.Fulfillment that schedules a two-step
// purchase pipeline when a purchase completes and counts how often it was
// asked to. Only Completed is expected in these tests; any other method
// panics through the nil embedded interface.
type purchasePipeline struct {
	reconcile.Fulfillment
	completed atomic.Int32
}

func (f *purchasePipeline) Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, _ bool) error {
	for _, p := range ps {
		f.completed.Add(1)
		if _, err := q.InsertSteps(ctx, *p.CompletedAt, []store.NewStep{
			{PurchaseID: p.ID, Pipeline: "purchase", Name: "confirmation_email", RunAt: *p.CompletedAt, MaxAttempts: 5},
			{PurchaseID: p.ID, Pipeline: "purchase", Name: "grant_access", RunAt: *p.CompletedAt, MaxAttempts: 5},
		}); err != nil {
			return err
		}
	}
	return nil
}

// newClaimHarness is the API with checkout on the emulator and claims
// through the real reconciler.
func newClaimHarness(t *testing.T) (*apiHarness, stripeEnv, *purchasePipeline) {
	t.Helper()
	return newClaimHarnessWith(t, loadConfig(t))
}

// newClaimHarnessWith is newClaimHarness with configuration cfg.
func newClaimHarnessWith(t *testing.T, cfg *config.Config) (*apiHarness, stripeEnv, *purchasePipeline) {
	t.Helper()
	h0, env := newCheckoutHarness(t, cfg) // for its database, clock and emulator
	ful := &purchasePipeline{}
	rec := reconcile.New(reconcile.Options{DB: h0.db, Stripe: env.api, Fulfillment: ful, Clock: h0.clock,
		Log: testLogger(t), Products: cfg.Products})
	h := newHarness(t, harnessOptions{db: h0.db, clock: h0.clock,
		deps: httpapi.APIDeps{Config: cfg, Stripe: env.api, Prices: env.prices, Claimer: rec}})
	return h, env, ful
}

// checkout starts a checkout as user and returns the session id.
func (h *apiHarness) checkout(token string) string {
	h.t.Helper()
	r := h.do("POST", "/api/checkout", token, map[string]any{"product": "pro_one_time"})
	var out checkoutBody
	r.decode(h.t, &out)
	if r.status != http.StatusOK {
		h.t.Fatalf("checkout = %d %s", r.status, r.body)
	}
	return out.SessionID
}

type claimBody struct {
	Status         store.PurchaseStatus `json:"status"`
	Product        string               `json:"product"`
	AlreadyClaimed bool                 `json:"already_claimed"`
}

func (h *apiHarness) claim(token, sessionID string) (response, claimBody) {
	h.t.Helper()
	r := h.do("POST", "/api/purchases/claim", token, map[string]string{"session_id": sessionID})
	var out claimBody
	if r.status == http.StatusOK {
		r.decode(h.t, &out)
	}
	return r, out
}

func TestClaimAPaidSession(t *testing.T) {
	t.Parallel()
	h, env, ful := newClaimHarness(t)
	tok := h.token("buyer-1", "buyer@example.com")
	sid := h.checkout(tok)
	if err := env.emu.PaySession(sid, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}

	r, out := h.claim(tok, sid)
	if r.status != http.StatusOK || out.Status != store.PurchaseCompleted || out.Product != "pro_one_time" || out.AlreadyClaimed {
		t.Fatalf("claim = %d %s", r.status, r.body)
	}
	p, err := h.db.PurchaseBySession(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := env.emu.Session(sid)
	if p.Status != store.PurchaseCompleted || p.CompletedAt == nil || p.StripeCustomerID == nil ||
		p.StripePaymentIntentID == nil || sess.Customer == nil || *p.StripeCustomerID != sess.Customer.ID ||
		sess.PaymentIntent == nil || *p.StripePaymentIntentID != sess.PaymentIntent.ID {
		t.Errorf("purchase after claim = %+v", p)
	}

	r, out = h.claim(tok, sid)
	if r.status != http.StatusOK || !out.AlreadyClaimed || out.Status != store.PurchaseCompleted {
		t.Errorf("second claim = %d %s; want already_claimed", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM purchases WHERE stripe_session_id = $1`, sid); n != 1 {
		t.Errorf("%d purchases for the session", n)
	}
	if n := h.count(`SELECT count(*) FROM steps WHERE subject_id = $1 AND pipeline = 'purchase'`, p.ID); n != 2 || ful.completed.Load() != 1 {
		t.Errorf("%d purchase steps from %d Completed calls; want one pipeline of 2 steps", n, ful.completed.Load())
	}
}

func TestConcurrentClaimsMakeOnePipeline(t *testing.T) {
	t.Parallel()
	h, env, ful := newClaimHarness(t)
	tok := h.token("buyer-2", "twenty@example.com")
	sid := h.checkout(tok)
	if err := env.emu.PaySession(sid, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	results := make([]claimBody, n)
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, out := h.claim(tok, sid)
			statuses[i], results[i] = r.status, out
		}()
	}
	wg.Wait()
	first := 0
	for i := range n {
		if statuses[i] != http.StatusOK || results[i].Status != store.PurchaseCompleted {
			t.Errorf("claim %d = %d %+v", i, statuses[i], results[i])
		}
		if !results[i].AlreadyClaimed {
			first++
		}
	}
	if first != 1 {
		t.Errorf("%d claims completed the purchase; want exactly 1", first)
	}
	p, err := h.db.PurchaseBySession(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if c := h.count(`SELECT count(*) FROM purchases`); c != 1 {
		t.Errorf("%d purchases after %d claims", c, n)
	}
	if c := h.count(`SELECT count(*) FROM steps WHERE subject_id = $1 AND pipeline = 'purchase'`, p.ID); c != 2 || ful.completed.Load() != 1 {
		t.Errorf("%d purchase steps from %d Completed calls; want one pipeline of 2 steps", c, ful.completed.Load())
	}
}

func TestClaimRefusals(t *testing.T) {
	t.Parallel()
	h, env, ful := newClaimHarness(t)
	owner := h.token("owner", "owner@example.com")
	paid := h.checkout(owner)
	if err := env.emu.PaySession(paid, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	unpaid := h.checkout(owner)

	for _, c := range []struct {
		name, token, session string
		status               int
		code                 string
	}{
		{"another user", h.token("intruder", "intruder@example.com"), paid, http.StatusForbidden, "forbidden"},
		{"another user with the owner's email", h.token("intruder", "owner@example.com"), paid, http.StatusForbidden, "forbidden"},
		{"unpaid", owner, unpaid, http.StatusBadRequest, "not_paid"},
		{"unknown session", owner, "cs_test_doesnotexist", http.StatusNotFound, "unknown_session"},
		{"not a session id", owner, "pi_123", http.StatusBadRequest, "invalid_session_id"},
		{"empty", owner, "", http.StatusBadRequest, "invalid_session_id"},
	} {
		r, _ := h.claim(c.token, c.session)
		if r.status != c.status || r.errorCode() != c.code {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	if n := h.count(`SELECT count(*) FROM purchases WHERE status <> 'pending'`); n != 0 || ful.completed.Load() != 0 {
		t.Errorf("refused claims completed %d purchases (%d Completed calls)", n, ful.completed.Load())
	}
}

// fakeClaimer answers every claim with err.
type fakeClaimer struct{ err error }

func (f fakeClaimer) Claim(ctx context.Context, sessionID string, c reconcile.Claimant) (reconcile.ClaimResult, error) {
	return reconcile.ClaimResult{}, f.err
}

func TestClaimErrorMapping(t *testing.T) {
	t.Parallel()
	db := newHarness(t, harnessOptions{}).db
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("claim: %w", reconcile.ErrNotPaid), http.StatusBadRequest, "not_paid"},
		{fmt.Errorf("claim: %w", reconcile.ErrNotYours), http.StatusForbidden, "forbidden"},
		{fmt.Errorf("claim: %w", reconcile.ErrEmailUnverified), http.StatusForbidden, "email_not_verified"},
		{fmt.Errorf("claim: %w", reconcile.ErrUnknownSession), http.StatusNotFound, "unknown_session"},
		{fmt.Errorf("get session: %w", &stripe.Error{HTTPStatusCode: 500, Msg: "boom"}), http.StatusBadGateway, "stripe_unavailable"},
		{errors.New("database on fire"), http.StatusInternalServerError, "internal"},
	} {
		h := newHarness(t, harnessOptions{db: db, deps: httpapi.APIDeps{Claimer: fakeClaimer{c.err}}})
		r, _ := h.claim(h.token("u", "u@example.com"), "cs_test_1")
		if r.status != c.status || r.errorCode() != c.code {
			t.Errorf("%v: %d %s; want %d %s", c.err, r.status, r.body, c.status, c.code)
		}
	}
}

func TestClaimByEmailNeedsAVerifiedEmail(t *testing.T) {
	t.Parallel()
	h, env, ful := newClaimHarness(t)
	priceID, _, _, err := env.prices.PriceID(t.Context(), "pro_one_time")
	if err != nil {
		t.Fatal(err)
	}
	// A Payment Link session: no user metadata, only the buyer's email.
	s, err := env.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: priceID}},
		CustomerEmail: "link@example.com", PaymentLink: "plink_test_1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	unverified := func(email string) string {
		return sign(t, jwt.SigningMethodHS256, h.secret, claims(h.cfg.Auth.Issuer, h.cfg.Auth.Audience, "u-link", email,
			h.clock.Now(), func(c jwt.MapClaims) { delete(c, "email_verified") }), "")
	}
	// Without email_verified, the token is good, but its email proves
	// nothing: whether it matches the session's or not, the answer is the
	// same, and nothing is claimed.
	for _, email := range []string{"link@example.com", "other@example.com"} {
		r, _ := h.claim(unverified(email), s.ID)
		if r.status != http.StatusForbidden || r.errorCode() != "email_not_verified" {
			t.Errorf("claim by an unverified %s = %d %s; want 403 email_not_verified", email, r.status, r.body)
		}
	}
	if n := h.count(`SELECT count(*) FROM purchases WHERE user_id = 'u-link'`); n != 0 || ful.completed.Load() != 0 {
		t.Fatalf("an unverified email claimed %d purchases", n)
	}
	// A verified email matching the session's (in any case) claims it.
	r, out := h.claim(h.token("u-link", "LINK@example.com"), s.ID)
	if r.status != http.StatusOK || out.Status != store.PurchaseCompleted {
		t.Fatalf("claim by the verified email = %d %s", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM purchases WHERE user_id = 'u-link' AND stripe_session_id = $1`, s.ID); n != 1 {
		t.Errorf("the claimed purchase is not the user's (%d rows)", n)
	}
}

// TestClaimsThatAskStripeAreRateLimited: a claim Stripe must answer (an
// unknown session, a purchase not yet claimed) spends one of the user's
// http.stripe_lookup_rate; past it the claim is a 429 rate_limited with
// Retry-After that asks Stripe nothing and claims nothing. A repeated
// claim of the caller's own finished purchase is answered from the
// database, costs no Stripe request and is never refused; another user
// has a bucket of their own.
func TestClaimsThatAskStripeAreRateLimited(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.HTTP.StripeLookupRate = 3
	h, env, ful := newClaimHarnessWith(t, cfg)
	tok := h.token("buyer-1", "buyer@example.com")
	paid, unclaimed := h.checkout(tok), h.checkout(tok)
	for _, sid := range []string{paid, unclaimed} {
		if err := env.emu.PaySession(sid, stripeemu.Pay{}); err != nil {
			t.Fatal(err)
		}
	}
	lookups := func() int { return stripeRequests(env, "/v1/checkout/sessions/") }

	if r, out := h.claim(tok, paid); r.status != http.StatusOK || out.Status != store.PurchaseCompleted || out.AlreadyClaimed {
		t.Fatalf("claim = %d %s", r.status, r.body)
	}
	calls := lookups()
	for range 5 {
		if r, out := h.claim(tok, paid); r.status != http.StatusOK || out.Status != store.PurchaseCompleted ||
			out.Product != "pro_one_time" || !out.AlreadyClaimed {
			t.Fatalf("repeated claim = %d %s; want 200 already_claimed", r.status, r.body)
		}
	}
	if n := lookups() - calls; n != 0 {
		t.Errorf("repeated claims of a claimed purchase asked Stripe %d times", n)
	}
	for _, sid := range []string{"cs_test_madeup1", "cs_test_madeup2"} {
		if r, _ := h.claim(tok, sid); r.status != http.StatusNotFound {
			t.Fatalf("claim of %s = %d %s", sid, r.status, r.body)
		}
	}

	calls = lookups()
	for _, sid := range []string{"cs_test_madeup3", unclaimed} {
		r, _ := h.claim(tok, sid)
		if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") == "" {
			t.Errorf("claim of %s past the limit = %d Retry-After %q %s; want 429 rate_limited", sid, r.status,
				r.header.Get("Retry-After"), r.body)
		}
	}
	if n := lookups() - calls; n != 0 {
		t.Errorf("rate-limited claims asked Stripe %d times", n)
	}
	if p, err := h.db.PurchaseBySession(t.Context(), unclaimed); err != nil || p.Status != store.PurchasePending || ful.completed.Load() != 1 {
		t.Errorf("a rate-limited claim changed the purchase: %+v (%v), %d completions", p, err, ful.completed.Load())
	}
	if r, out := h.claim(tok, paid); r.status != http.StatusOK || !out.AlreadyClaimed {
		t.Errorf("claim of a claimed purchase past the limit = %d %s; want 200", r.status, r.body)
	}

	if r, _ := h.claim(h.token("buyer-2", "other@example.com"), "cs_test_madeup4"); r.status != http.StatusNotFound {
		t.Errorf("another user's claim = %d %s; want 404", r.status, r.body)
	}
	h.clock.Advance(20 * time.Second)
	tok = h.token("buyer-1", "buyer@example.com")
	if r, out := h.claim(tok, unclaimed); r.status != http.StatusOK || out.Status != store.PurchaseCompleted {
		t.Errorf("claim after Retry-After = %d %s", r.status, r.body)
	}
}

// TestClaimOfAnotherUsersPurchaseAsksStripe: the database answers only
// the caller's own finished purchase; a purchase recorded for someone else
// is Stripe's to judge, which refuses it.
func TestClaimOfAnotherUsersPurchaseAsksStripe(t *testing.T) {
	t.Parallel()
	h, env, _ := newClaimHarness(t)
	tok := h.token("buyer-1", "buyer@example.com")
	sid := h.checkout(tok)
	if err := env.emu.PaySession(sid, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.claim(tok, sid); r.status != http.StatusOK {
		t.Fatalf("claim = %d %s", r.status, r.body)
	}
	if r, _ := h.claim(h.token("buyer-2", "buyer@example.com"), sid); r.status != http.StatusForbidden || r.errorCode() != "forbidden" {
		t.Errorf("another user's claim = %d %s; want 403 forbidden", r.status, r.body)
	}
}
