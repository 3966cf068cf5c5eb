package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/store"
)

// newCapHarness is the cart harness with acme_stickers in stock and the
// promotion codes codes on one coupon of 20% off limited to couponMax
// redemptions (0: no limit).
func newCapHarness(t *testing.T, couponMax int64, codes ...stripeemu.PromotionCodeParams) (*apiHarness, stripeEnv) {
	t.Helper()
	h, env := newCartHarness(t, nil)
	coupon, err := env.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20, MaxRedemptions: couponMax})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		c.Coupon = coupon
		if _, err := env.emu.CreatePromotionCode(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.db.SetStock(t.Context(), "acme_stickers", 10, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return h, env
}

// putCodeCart fills the caller's cart with a line of stickers and code.
func putCodeCart(t *testing.T, h *apiHarness, tok, code string) {
	t.Helper()
	r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("acme_stickers", 2)}, "promotion_code": code})
	if r.status != http.StatusOK {
		t.Fatalf("put cart with %s = %d %s", code, r.status, r.body)
	}
}

// invalidCodeBody is the answer to a code that does not exist.
func invalidCodeBody(t *testing.T, h *apiHarness) []byte {
	t.Helper()
	r := h.do("PUT", "/api/cart", h.token("user-guess", "eve@example.com"),
		map[string]any{"items": []any{item("acme_stickers", 1)}, "promotion_code": "NOSUCHCODE"})
	if r.status != http.StatusBadRequest || r.errorCode() != "invalid_promotion_code" {
		t.Fatalf("unknown code = %d %s", r.status, r.body)
	}
	return r.body
}

// checkoutOK checks the caller's cart out as mode and returns its order,
// failing unless it got the code's discount.
func checkoutOK(t *testing.T, h *apiHarness, tok, mode string) store.Order {
	t.Helper()
	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": mode})
	var out struct {
		OrderID string `json:"order_id"`
	}
	r.decode(t, &out)
	if r.status != http.StatusOK || out.OrderID == "" {
		t.Fatalf("%s checkout = %d %s", mode, r.status, r.body)
	}
	o, _ := orderRow(t, h, out.OrderID)
	if o.AmountDiscount != 360 || o.PromotionCodeID == nil {
		t.Fatalf("%s order discount %d code %v, want 360 off 1800 with the code", mode, o.AmountDiscount, o.PromotionCodeID)
	}
	return o
}

// refusedChangesNothing checks the caller's checkout as mode is refused
// with the unknown code's answer, byte for byte, and that it recorded no
// order, created no Stripe object and held no stock.
func refusedChangesNothing(t *testing.T, h *apiHarness, env stripeEnv, tok, mode string, want []byte) {
	t.Helper()
	orders, intents, sessions := h.count(`SELECT count(*) FROM orders`), len(env.emu.PaymentIntents()), len(env.emu.Sessions())
	held, _ := h.db.GetStock(t.Context(), "acme_stickers")
	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": mode})
	if r.status != http.StatusBadRequest || !bytes.Equal(r.body, want) {
		t.Errorf("%s checkout with the last use held = %d %s; want 400 %s", mode, r.status, r.body, want)
	}
	if n := h.count(`SELECT count(*) FROM orders`); n != orders {
		t.Errorf("the refused checkout recorded %d orders", n-orders)
	}
	if n := len(env.emu.PaymentIntents()); n != intents {
		t.Errorf("the refused checkout created %d payment intents", n-intents)
	}
	if n := len(env.emu.Sessions()); n != sessions {
		t.Errorf("the refused checkout created %d sessions", n-sessions)
	}
	if s, _ := h.db.GetStock(t.Context(), "acme_stickers"); s.Reserved != held.Reserved {
		t.Errorf("the refused checkout holds stock: %d reserved, %d before", s.Reserved, held.Reserved)
	}
}

// endOrder ends open order id as status, its stock released, as the
// reconciler does when its intent is canceled or its session expires.
func endOrder(t *testing.T, h *apiHarness, id string, status store.OrderStatus) {
	t.Helper()
	now := h.clock.Now()
	err := h.db.InTx(t.Context(), func(q *store.Queries) error {
		o, err := q.LockOrder(t.Context(), id)
		if err != nil {
			return err
		}
		if _, err := q.ReleaseStock(t.Context(), id, now); err != nil {
			return err
		}
		o.Status, o.EndedAt = status, &now
		return q.UpdateOrder(t.Context(), o, now)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedOrderHoldsTheLastUseOfACode: with one redemption left, the
// first embedded checkout gets the discount; while its order is open a
// second buyer's checkout, embedded or hosted, gets the answer an unknown
// code gets and changes nothing; once the first order is canceled the use
// is free again.
func TestEmbeddedOrderHoldsTheLastUseOfACode(t *testing.T) {
	t.Parallel()
	h, env := newCapHarness(t, 0, stripeemu.PromotionCodeParams{Code: "ONCE", MaxRedemptions: 1})
	want := invalidCodeBody(t, h)
	ada, bob := h.token("user-1", "ada@example.com"), h.token("user-2", "bob@example.com")
	putCodeCart(t, h, ada, "ONCE")
	putCodeCart(t, h, bob, "ONCE")

	first := checkoutOK(t, h, ada, "embedded")
	refusedChangesNothing(t, h, env, bob, "embedded", want)
	refusedChangesNothing(t, h, env, bob, "hosted", want)

	endOrder(t, h, first.ID, store.OrderCanceled)
	checkoutOK(t, h, bob, "embedded")
	refusedChangesNothing(t, h, env, ada, "embedded", want)
}

// TestEmbeddedOrdersCountAgainstTheCouponsLimit: a coupon limited to one
// redemption, behind two codes without limits of their own: an open
// embedded order with one code uses the coupon up for the other, until it
// expires.
func TestEmbeddedOrdersCountAgainstTheCouponsLimit(t *testing.T) {
	t.Parallel()
	h, env := newCapHarness(t, 1, stripeemu.PromotionCodeParams{Code: "CPNA"}, stripeemu.PromotionCodeParams{Code: "CPNB"})
	want := invalidCodeBody(t, h)
	ada, bob := h.token("user-1", "ada@example.com"), h.token("user-2", "bob@example.com")
	putCodeCart(t, h, ada, "CPNA")
	putCodeCart(t, h, bob, "CPNB")

	first := checkoutOK(t, h, ada, "embedded")
	refusedChangesNothing(t, h, env, bob, "embedded", want)
	refusedChangesNothing(t, h, env, bob, "hosted", want)

	endOrder(t, h, first.ID, store.OrderExpired)
	checkoutOK(t, h, bob, "embedded")
}

// TestFirstTimeCodeIsHeldByAnOpenOrder: a first-time code is the buyer's
// to use once: while their embedded order with it is open, a second one is
// refused; when it fails, they may use it again.
func TestFirstTimeCodeIsHeldByAnOpenOrder(t *testing.T) {
	t.Parallel()
	h, env := newCapHarness(t, 0, stripeemu.PromotionCodeParams{Code: "WELCOME", FirstTimeTransaction: true})
	want := invalidCodeBody(t, h)
	ada := h.token("user-1", "ada@example.com")
	putCodeCart(t, h, ada, "WELCOME")

	first := checkoutOK(t, h, ada, "embedded")
	refusedChangesNothing(t, h, env, ada, "embedded", want)

	endOrder(t, h, first.ID, store.OrderFailed)
	checkoutOK(t, h, ada, "embedded")
}

// TestConcurrentCheckoutsRaceForTheLastUse: two buyers check out embedded
// at once with a code that has one redemption left: exactly one gets it,
// the other the one refusal, and only one order and one intent exist.
func TestConcurrentCheckoutsRaceForTheLastUse(t *testing.T) {
	t.Parallel()
	h, env := newCapHarness(t, 0, stripeemu.PromotionCodeParams{Code: "ONCE", MaxRedemptions: 1})
	want := invalidCodeBody(t, h)
	toks := []string{h.token("user-1", "ada@example.com"), h.token("user-2", "bob@example.com")}
	for _, tok := range toks {
		putCodeCart(t, h, tok, "ONCE")
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, len(toks))
	var wg sync.WaitGroup
	for i, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].status, results[i].body, results[i].err = postJSON(h, "/api/checkout", tok,
				map[string]any{"cart": true, "ui_mode": "embedded"})
		}()
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("checkout %d: %v", i, r.err)
		case r.status == http.StatusOK:
			ok++
		case r.status != http.StatusBadRequest || !bytes.Equal(r.body, want):
			t.Errorf("checkout %d = %d %s", i, r.status, r.body)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 2 concurrent checkouts got the last use, want 1", ok)
	}
	if n := h.count(`SELECT count(*) FROM orders WHERE promotion_code IS NOT NULL`); n != 1 {
		t.Errorf("%d orders with the code, want 1", n)
	}
	if n := len(env.emu.PaymentIntents()); n != 1 {
		t.Errorf("%d payment intents, want 1", n)
	}
}

// postJSON posts body as JSON and returns the answer, for goroutines
// (which must not call t.Fatal).
func postJSON(h *apiHarness, path, tok string, body any) (int, []byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest("POST", h.srv.URL+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}
