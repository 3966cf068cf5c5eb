package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// newCartHarness is the API with carts and checkout wired to the
// emulator, which knows LAUNCH20 (20% off).
func newCartHarness(t *testing.T, cfg *config.Config) (*apiHarness, stripeEnv) {
	t.Helper()
	if cfg == nil {
		cfg = loadConfig(t)
	}
	clk := clock.NewFake(time.Now())
	env := newStripeEnv(t, clk, cfg)
	coupon, err := env.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "LAUNCH20", Coupon: coupon}); err != nil {
		t.Fatal(err)
	}
	env.emu.ResetRequests()
	h := newHarness(t, harnessOptions{clock: clk, deps: httpapi.APIDeps{Config: cfg, Stripe: env.api, Prices: env.prices,
		Orders: env.api}})
	return h, env
}

type cartLine struct {
	Product        string `json:"product"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitAmount     int64  `json:"unit_amount"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountDiscount int64  `json:"amount_discount"`
	AmountTax      *int64 `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
}

type cartBody struct {
	Items         []cartLine `json:"items"`
	PromotionCode *string    `json:"promotion_code"`
	Subtotal      int64      `json:"subtotal"`
	Discount      int64      `json:"discount"`
	Tax           *int64     `json:"tax"`
	Total         int64      `json:"total"`
	Currency      *string    `json:"currency"`
	ExpiresAt     *time.Time `json:"expires_at"`
}

func item(product string, quantity int) map[string]any {
	return map[string]any{"product": product, "quantity": quantity}
}

// TestCartIsPricedFromStripeAndKeptForItsTTL: PUT prices every line from
// its Stripe price with the code's 20% spread over the lines; GET reads the
// same back until cart.ttl after the last change, then an empty cart.
func TestCartIsPricedFromStripeAndKeptForItsTTL(t *testing.T) {
	t.Parallel()
	h, _ := newCartHarness(t, nil)
	tok := h.token("user-1", "ada@example.com")

	r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1), item("acme_stickers", 3),
		item("pro_one_time", 1)}, "promotion_code": "launch20"})
	var c cartBody
	r.decode(t, &c)
	if r.status != http.StatusOK {
		t.Fatalf("put cart = %d %s", r.status, r.body)
	}
	// 2 × 19900 + 3 × 900 = 42500; 20% is 8500: 7960 and 540.
	want := []cartLine{
		{Product: "pro_one_time", Name: "Acme Pro", Quantity: 2, UnitAmount: 19900, AmountSubtotal: 39800, AmountDiscount: 7960, AmountTotal: 31840},
		{Product: "acme_stickers", Name: "Acme sticker pack", Quantity: 3, UnitAmount: 900, AmountSubtotal: 2700, AmountDiscount: 540, AmountTotal: 2160},
	}
	if len(c.Items) != 2 || c.Subtotal != 42500 || c.Discount != 8500 || c.Total != 34000 || c.Tax == nil || *c.Tax != 0 ||
		c.Currency == nil || *c.Currency != "usd" || c.PromotionCode == nil || *c.PromotionCode != "LAUNCH20" {
		t.Fatalf("cart = %s", r.body)
	}
	for i, w := range want {
		got := c.Items[i]
		got.AmountTax = nil
		if got != w {
			t.Errorf("line %d = %+v, want %+v", i, got, w)
		}
	}
	if c.ExpiresAt == nil || !c.ExpiresAt.Equal(h.clock.Now().Add(7*24*time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("expires_at = %v, want now + 168h", c.ExpiresAt)
	}

	h.clock.Advance(7*24*time.Hour - time.Minute)
	tok = h.token("user-1", "ada@example.com") // the first one expired meanwhile
	var again cartBody
	h.do("GET", "/api/cart", tok, nil).decode(t, &again)
	if again.Total != 34000 || len(again.Items) != 2 {
		t.Fatalf("cart within its ttl = %+v", again)
	}
	h.clock.Advance(time.Minute)
	tok = h.token("user-1", "ada@example.com")
	var gone cartBody
	r = h.do("GET", "/api/cart", tok, nil)
	r.decode(t, &gone)
	if r.status != http.StatusOK || len(gone.Items) != 0 || gone.Total != 0 || gone.Currency != nil || gone.ExpiresAt != nil {
		t.Errorf("cart past its ttl = %d %s", r.status, r.body)
	}
	// Another user's cart is theirs alone.
	var other cartBody
	h.do("GET", "/api/cart", h.token("user-2", "bob@example.com"), nil).decode(t, &other)
	if len(other.Items) != 0 {
		t.Errorf("user-2 sees %+v", other)
	}
}

// TestCartErrors: each refusal has its exact code and changes nothing.
func TestCartErrors(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Products = append(cfg.Products, config.Product{Key: "euro_guide", Name: "Guide", Amount: 1500, Currency: "eur"})
	h, _ := newCartHarness(t, cfg)
	tok := h.token("user-1", "ada@example.com")
	if _, err := h.db.SetStock(t.Context(), "acme_stickers", 2, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	ok := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("acme_stickers", 1)}})
	if ok.status != http.StatusOK {
		t.Fatalf("put = %d %s", ok.status, ok.body)
	}
	many := make([]any, 0, 51)
	for i := range 51 {
		many = append(many, item(fmt.Sprintf("nope_%d", i), 1))
	}
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"unknown product", map[string]any{"items": []any{item("nope", 1)}}, 400, "unknown_product"},
		{"a subscription", map[string]any{"items": []any{item("pro_subscription", 1)}}, 400, "unknown_product"},
		{"zero", map[string]any{"items": []any{item("acme_stickers", 0)}}, 400, "invalid_quantity"},
		{"hundred", map[string]any{"items": []any{item("acme_stickers", 100)}}, 400, "invalid_quantity"},
		{"no quantity", map[string]any{"items": []any{map[string]any{"product": "acme_stickers"}}}, 400, "invalid_quantity"},
		{"twice past 99", map[string]any{"items": []any{item("pro_one_time", 50), item("pro_one_time", 50)}}, 400, "invalid_quantity"},
		{"bad code", map[string]any{"items": []any{item("pro_one_time", 1)}, "promotion_code": "NOPE10"}, 400, "invalid_promotion_code"},
		{"mixed currency", map[string]any{"items": []any{item("pro_one_time", 1), item("euro_guide", 1)}}, 400, "mixed_currency"},
		{"51 lines", map[string]any{"items": many}, 400, "unknown_product"},
		{"unknown field", map[string]any{"items": []any{}, "coupon": "STAFF100"}, 400, "invalid_json"},
	} {
		r := h.do("PUT", "/api/cart", tok, c.body)
		if r.status != c.status || r.errorCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("acme_stickers", 3)}})
	var e struct {
		Error struct {
			Code      string `json:"code"`
			Product   string `json:"product"`
			Available *int   `json:"available"`
		} `json:"error"`
	}
	r.decode(t, &e)
	if r.status != http.StatusConflict || e.Error.Code != "out_of_stock" || e.Error.Product != "acme_stickers" ||
		e.Error.Available == nil || *e.Error.Available != 2 {
		t.Errorf("3 of 2 in stock = %d %s, want 409 out_of_stock with 2 available", r.status, r.body)
	}
	var c cartBody
	h.do("GET", "/api/cart", tok, nil).decode(t, &c)
	if len(c.Items) != 1 || c.Items[0].Quantity != 1 {
		t.Errorf("a refused PUT changed the cart: %+v", c)
	}
}

// TestCartLineLimit: 51 distinct products are refused whatever they are.
func TestCartLineLimit(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	items := make([]any, 0, 51)
	for i := range 51 {
		key := fmt.Sprintf("p%02d", i)
		cfg.Products = append(cfg.Products, config.Product{Key: key, Name: key, Amount: 100, Currency: "usd"})
		items = append(items, item(key, 1))
	}
	h := newHarness(t, harnessOptions{deps: httpapi.APIDeps{Config: cfg}})
	r := h.do("PUT", "/api/cart", h.token("u", "u@example.com"), map[string]any{"items": items})
	if r.status != http.StatusBadRequest || r.errorCode() != "too_many_items" {
		t.Errorf("51 lines = %d %s", r.status, r.body)
	}
}

// TestCartDiscountMatchesStripe: for carts and coupons whose shares round
// differently, the cart's discount per line equals what the emulator's
// Checkout Session (Stripe's arithmetic) puts on each line item.
func TestCartDiscountMatchesStripe(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Products = append(cfg.Products,
		config.Product{Key: "odd_a", Name: "A", Amount: 1999, Currency: "usd"},
		config.Product{Key: "odd_b", Name: "B", Amount: 1250, Currency: "usd"},
		config.Product{Key: "odd_c", Name: "C", Amount: 333, Currency: "usd"})
	h, env := newCartHarness(t, cfg)
	for i, c := range []struct {
		coupon stripeemu.CouponParams
		items  []any
	}{
		{stripeemu.CouponParams{PercentOff: 20}, []any{item("odd_a", 2), item("odd_b", 3), item("odd_c", 3)}},
		{stripeemu.CouponParams{PercentOff: 33.33}, []any{item("odd_a", 1), item("odd_c", 7)}},
		{stripeemu.CouponParams{PercentOff: 12.5}, []any{item("odd_c", 1), item("odd_b", 1), item("acme_stickers", 9)}},
		{stripeemu.CouponParams{AmountOff: 1001, Currency: "usd"}, []any{item("odd_a", 1), item("odd_b", 1), item("odd_c", 1)}},
		{stripeemu.CouponParams{AmountOff: 500000, Currency: "usd"}, []any{item("odd_a", 1), item("odd_c", 2)}},
	} {
		coupon, err := env.emu.CreateCoupon(c.coupon)
		if err != nil {
			t.Fatal(err)
		}
		code := fmt.Sprintf("CASE%d", i)
		promo, err := env.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: code, Coupon: coupon})
		if err != nil {
			t.Fatal(err)
		}
		tok := h.token(fmt.Sprintf("user-%d", i), "ada@example.com")
		var cart cartBody
		r := h.do("PUT", "/api/cart", tok, map[string]any{"items": c.items, "promotion_code": code})
		r.decode(t, &cart)
		if r.status != http.StatusOK {
			t.Fatalf("case %d: put = %d %s", i, r.status, r.body)
		}
		req := stripeapi.CartCheckoutRequest{SuccessURL: "http://app.test/ok", CancelURL: "http://app.test/", PromotionCode: promo}
		for _, l := range cart.Items {
			priceID, _, _, err := env.prices.PriceID(t.Context(), l.Product)
			if err != nil {
				t.Fatal(err)
			}
			req.Lines = append(req.Lines, stripeapi.CartLine{PriceID: priceID, Quantity: l.Quantity})
		}
		sess, err := env.api.CreateCartCheckoutSession(t.Context(), req, "")
		if err != nil {
			t.Fatal(err)
		}
		var stripeLines []int64
		if err := env.api.ListCheckoutSessionLineItems(t.Context(), sess.ID, func(li *stripe.LineItem) error {
			stripeLines = append(stripeLines, li.AmountDiscount)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var ours []int64
		for _, l := range cart.Items {
			ours = append(ours, l.AmountDiscount)
		}
		if fmt.Sprint(ours) != fmt.Sprint(stripeLines) || cart.Discount != sess.TotalDetails.AmountDiscount ||
			cart.Total != sess.AmountTotal {
			t.Errorf("case %d: cart discounts %v (total %d, discount %d); Stripe's %v (total %d, discount %d)", i, ours,
				cart.Total, cart.Discount, stripeLines, sess.AmountTotal, sess.TotalDetails.AmountDiscount)
		}
	}
}

// orderRow returns the one order of a user.
func orderRow(t *testing.T, h *apiHarness, id string) (store.Order, []store.OrderLine) {
	t.Helper()
	o, err := h.db.GetOrder(t.Context(), id)
	if err != nil {
		t.Fatalf("order %s: %v", id, err)
	}
	lines, err := h.db.OrderLines(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o, lines
}

// promotionCodeLookups counts the emulator's promotion code listings.
func promotionCodeLookups(env stripeEnv) int {
	n := 0
	for _, r := range env.emu.Requests() {
		if r.Path == "/v1/promotion_codes" {
			n++
		}
	}
	return n
}

// TestCartPromotionCodeGuessesAreRateLimited: a PUT of the cart whose
// promotion code differs from the stored one spends the user's checkout
// rate, like a checkout; past http.checkout_rate it is a 429 with
// Retry-After that asks Stripe nothing and leaves the cart as it was. A PUT
// keeping the stored code, in any case, or carrying none is not counted.
func TestCartPromotionCodeGuessesAreRateLimited(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.HTTP.CheckoutRate = 3
	h, env := newCartHarness(t, cfg)
	tok := h.token("user-1", "ada@example.com")
	put := func(body map[string]any) response {
		t.Helper()
		return h.do("PUT", "/api/cart", tok, body)
	}
	one := []any{item("pro_one_time", 1)}

	if r := put(map[string]any{"items": one, "promotion_code": "LAUNCH20"}); r.status != http.StatusOK {
		t.Fatalf("put with a good code = %d %s", r.status, r.body)
	}
	for _, guess := range []string{"GUESS1", "GUESS2"} {
		if r := put(map[string]any{"items": one, "promotion_code": guess}); r.status != http.StatusBadRequest ||
			r.errorCode() != "invalid_promotion_code" {
			t.Fatalf("guess %s = %d %s", guess, r.status, r.body)
		}
	}
	lookups := promotionCodeLookups(env)
	r := put(map[string]any{"items": []any{item("acme_stickers", 2)}, "promotion_code": "GUESS3"})
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "20" {
		t.Errorf("guess 4 of 3 a minute = %d Retry-After %q %s; want 429 rate_limited, Retry-After 20", r.status,
			r.header.Get("Retry-After"), r.body)
	}
	if n := promotionCodeLookups(env) - lookups; n != 0 {
		t.Errorf("a rate-limited PUT looked the code up at Stripe %d times", n)
	}
	var c cartBody
	h.do("GET", "/api/cart", tok, nil).decode(t, &c)
	if len(c.Items) != 1 || c.Items[0].Product != "pro_one_time" || c.Items[0].Quantity != 1 ||
		c.PromotionCode == nil || *c.PromotionCode != "LAUNCH20" {
		t.Errorf("a rate-limited PUT changed the cart: %+v", c)
	}

	// Keeping the stored code, in any case, or sending none is not counted.
	r = put(map[string]any{"items": []any{item("pro_one_time", 2)}, "promotion_code": "launch20"})
	r.decode(t, &c)
	if r.status != http.StatusOK || c.PromotionCode == nil || *c.PromotionCode != "LAUNCH20" || c.Items[0].Quantity != 2 {
		t.Errorf("put keeping the stored code = %d %s", r.status, r.body)
	}
	r = put(map[string]any{"items": one})
	r.decode(t, &c)
	if r.status != http.StatusOK || c.PromotionCode != nil || c.Items[0].Quantity != 1 {
		t.Errorf("put without a code = %d %s", r.status, r.body)
	}
	// The stored code is gone now: LAUNCH20 is a new code again, and the
	// rate is the one checkouts spend.
	if r := put(map[string]any{"items": one, "promotion_code": "LAUNCH20"}); r.status != http.StatusTooManyRequests {
		t.Errorf("a code differing from none = %d %s; want 429", r.status, r.body)
	}
	if r := h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_one_time"}); r.status != http.StatusTooManyRequests {
		t.Errorf("checkout after the guesses = %d %s; want 429 (one rate for both)", r.status, r.body)
	}
	h.do("GET", "/api/cart", tok, nil).decode(t, &c)
	if c.PromotionCode != nil || len(c.Items) != 1 {
		t.Errorf("a rate-limited PUT changed the cart: %+v", c)
	}
	if r := h.do("PUT", "/api/cart", h.token("user-2", "bob@example.com"),
		map[string]any{"items": one, "promotion_code": "LAUNCH20"}); r.status != http.StatusOK {
		t.Errorf("another user = %d %s", r.status, r.body)
	}
	h.clock.Advance(20 * time.Second)
	tok = h.token("user-1", "ada@example.com")
	if r := put(map[string]any{"items": one, "promotion_code": "LAUNCH20"}); r.status != http.StatusOK {
		t.Errorf("after Retry-After = %d %s", r.status, r.body)
	}
}

// stripeRequests counts the emulator's requests whose path starts with
// prefix ("" for all of them).
func stripeRequests(env stripeEnv, prefix string) int {
	n := 0
	for _, r := range env.emu.Requests() {
		if strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// TestCartReadsThatAskStripeAreRateLimited: with Stripe Tax on, every GET
// or PUT of a cart with lines asks Stripe for a tax calculation, so each
// spends one of the user's http.stripe_lookup_rate; past it the request
// is a 429 rate_limited with Retry-After that asks Stripe nothing and
// changes nothing. A GET of an empty cart asks Stripe nothing and is not
// counted; another user has a bucket of their own.
func TestCartReadsThatAskStripeAreRateLimited(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Stripe.AutomaticTax = true
	cfg.HTTP.StripeLookupRate = 3
	h, env := newCartHarness(t, cfg)
	tok := h.token("user-1", "ada@example.com")
	get := func(tok string) response {
		t.Helper()
		return h.do("GET", "/api/cart", tok, nil)
	}

	for range 5 {
		if r := get(tok); r.status != http.StatusOK {
			t.Fatalf("GET of an empty cart = %d %s", r.status, r.body)
		}
	}
	if n := stripeRequests(env, ""); n != 0 {
		t.Errorf("GETs of an empty cart made %d Stripe requests", n)
	}
	if r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1)}}); r.status != http.StatusOK {
		t.Fatalf("put = %d %s", r.status, r.body)
	}
	for i := range 2 {
		if r := get(tok); r.status != http.StatusOK {
			t.Fatalf("GET %d of a taxed cart = %d %s", i+2, r.status, r.body)
		}
	}
	before, err := h.db.GetCart(t.Context(), "user-1", h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	calls := stripeRequests(env, "")
	r := get(tok)
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "20" {
		t.Errorf("lookup 4 of 3 a minute = %d Retry-After %q %s; want 429 rate_limited, Retry-After 20", r.status,
			r.header.Get("Retry-After"), r.body)
	}
	r = h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("acme_stickers", 2)}})
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("PUT past the limit = %d Retry-After %q %s; want 429 rate_limited", r.status,
			r.header.Get("Retry-After"), r.body)
	}
	if n := stripeRequests(env, "") - calls; n != 0 {
		t.Errorf("rate-limited cart requests made %d Stripe requests", n)
	}
	after, err := h.db.GetCart(t.Context(), "user-1", h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != 1 || after.Items[0] != before.Items[0] || !after.ExpiresAt.Equal(before.ExpiresAt) {
		t.Errorf("a rate-limited request changed the cart: %+v, was %+v", after, before)
	}

	other := h.token("user-2", "bob@example.com")
	if r := h.do("PUT", "/api/cart", other, map[string]any{"items": []any{item("pro_one_time", 1)}}); r.status != http.StatusOK {
		t.Errorf("another user's PUT = %d %s", r.status, r.body)
	}
	if r := get(other); r.status != http.StatusOK {
		t.Errorf("another user's GET = %d %s", r.status, r.body)
	}
	h.clock.Advance(20 * time.Second)
	if r := get(h.token("user-1", "ada@example.com")); r.status != http.StatusOK {
		t.Errorf("GET after Retry-After = %d %s", r.status, r.body)
	}
}

// TestCartReadsWithoutStripeAreNotCounted: with Stripe Tax off, a cart
// without a promotion code is priced from the cached prices alone, so
// reading it spends nothing, however often.
func TestCartReadsWithoutStripeAreNotCounted(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Stripe.AutomaticTax = false
	cfg.HTTP.StripeLookupRate = 1
	h, env := newCartHarness(t, cfg)
	tok := h.token("user-1", "ada@example.com")
	for range 3 {
		r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1), item("acme_stickers", 2)}})
		if r.status != http.StatusOK {
			t.Fatalf("put = %d %s", r.status, r.body)
		}
	}
	calls := stripeRequests(env, "")
	for i := range 5 {
		if r := h.do("GET", "/api/cart", tok, nil); r.status != http.StatusOK {
			t.Fatalf("GET %d = %d %s", i+1, r.status, r.body)
		}
	}
	if n := stripeRequests(env, "") - calls; n != 0 {
		t.Errorf("GETs of an untaxed cart without a code made %d Stripe requests", n)
	}
	// With a code, each read looks it up: the one token goes, then 429.
	if r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1)}, "promotion_code": "LAUNCH20"}); r.status != http.StatusOK {
		t.Fatalf("put with a code = %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/api/cart", tok, nil); r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" {
		t.Errorf("GET of a cart with a code past the limit = %d %s; want 429", r.status, r.body)
	}
}
