package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

type hostedBody struct {
	URL       string `json:"url"`
	SessionID string `json:"session_id"`
	OrderID   string `json:"order_id"`
}

type embeddedBody struct {
	ClientSecret    string `json:"client_secret"`
	PaymentIntentID string `json:"payment_intent_id"`
	OrderID         string `json:"order_id"`
}

// fillCart puts two lines and LAUNCH20 in the caller's cart.
func fillCart(t *testing.T, h *apiHarness, tok string) cartBody {
	t.Helper()
	var c cartBody
	r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1), item("acme_stickers", 2)},
		"promotion_code": "LAUNCH20"})
	r.decode(t, &c)
	if r.status != http.StatusOK {
		t.Fatalf("put cart = %d %s", r.status, r.body)
	}
	return c
}

// TestCartCheckoutHosted: a Checkout Session with one line per cart line,
// the code and the order's metadata, expiring after cart.checkout_ttl; the
// order is recorded with its lines and totals as Stripe computed them, its
// stock is held, and the cart stays until the order is paid.
func TestCartCheckoutHosted(t *testing.T) {
	t.Parallel()
	h, env := newCartHarness(t, nil)
	if _, err := h.db.SetStock(t.Context(), "acme_stickers", 5, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	tok := h.token("user-1", "ada@example.com")
	cart := fillCart(t, h, tok)

	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted", "github_username": "ada-l"})
	var out hostedBody
	r.decode(t, &out)
	if r.status != http.StatusOK || out.URL == "" || !strings.HasPrefix(out.SessionID, "cs_") || out.OrderID == "" {
		t.Fatalf("checkout = %d %s", r.status, r.body)
	}
	sess, err := env.emu.Session(out.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Metadata["order_id"] != out.OrderID || sess.Metadata["user_id"] != "user-1" || sess.Mode != stripe.CheckoutSessionModePayment ||
		sess.AmountTotal != cart.Total || sess.TotalDetails.AmountDiscount != cart.Discount ||
		!strings.HasSuffix(sess.SuccessURL, "&order_id="+out.OrderID) {
		t.Errorf("session = total %d discount %d metadata %v success %s; cart total %d discount %d", sess.AmountTotal,
			sess.TotalDetails.AmountDiscount, sess.Metadata, sess.SuccessURL, cart.Total, cart.Discount)
	}
	if want := h.clock.Now().Add(time.Hour).Unix(); sess.ExpiresAt != want {
		t.Errorf("session expires at %d, want now + checkout_ttl (%d)", sess.ExpiresAt, want)
	}
	var lines []*stripe.LineItem
	if err := env.api.ListCheckoutSessionLineItems(t.Context(), sess.ID, func(li *stripe.LineItem) error {
		lines = append(lines, li)
		return nil
	}); err != nil || len(lines) != 2 || lines[0].Quantity != 1 || lines[1].Quantity != 2 {
		t.Fatalf("session lines = %+v, %v", lines, err)
	}
	o, ols := orderRow(t, h, out.OrderID)
	if o.Status != store.OrderPending || o.UIMode != store.UIModeHosted || o.StripeSessionID == nil || *o.StripeSessionID != sess.ID ||
		o.AmountTotal != sess.AmountTotal || o.AmountDiscount != cart.Discount || o.Currency != "usd" ||
		o.PromotionCode == nil || *o.PromotionCode != "LAUNCH20" || o.GitHubUsername == nil || *o.GitHubUsername != "ada-l" ||
		!o.ExpiresAt.Equal(time.Unix(sess.ExpiresAt, 0)) || len(ols) != 2 ||
		ols[1] != (store.OrderLine{OrderID: o.ID, Line: 1, ProductKey: "acme_stickers", Quantity: 2, UnitAmount: 900,
			AmountSubtotal: 1800, AmountDiscount: lines[1].AmountDiscount, AmountTotal: lines[1].AmountTotal}) {
		t.Errorf("order = %+v\nlines %+v", o, ols)
	}
	if s, _ := h.db.GetStock(t.Context(), "acme_stickers"); s.Reserved != 2 {
		t.Errorf("stock after checkout = %+v, want 2 reserved", s)
	}
	var idem bool
	for _, req := range env.emu.WriteRequests() {
		idem = idem || (req.Path == "/v1/checkout/sessions" && req.IdempotencyKey == "paymentd-order-"+o.ID)
	}
	if !idem {
		t.Error("the session was not created with the order's idempotency key")
	}
	var still cartBody
	h.do("GET", "/api/cart", tok, nil).decode(t, &still)
	if len(still.Items) != 2 {
		t.Errorf("the cart was emptied before the order was paid: %+v", still)
	}
}

// TestCartCheckoutEmbedded: a PaymentIntent for the cart's total with
// automatic payment methods, the buyer's customer and the order's
// metadata; the answer carries what Stripe Elements needs.
func TestCartCheckoutEmbedded(t *testing.T) {
	t.Parallel()
	h, env := newCartHarness(t, nil)
	tok := h.token("user-1", "ada@example.com")
	cart := fillCart(t, h, tok)

	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "embedded"})
	var out embeddedBody
	r.decode(t, &out)
	if r.status != http.StatusOK || !strings.HasPrefix(out.PaymentIntentID, "pi_") || !strings.Contains(out.ClientSecret, "_secret_") {
		t.Fatalf("checkout = %d %s", r.status, r.body)
	}
	pi, err := env.emu.PaymentIntent(out.PaymentIntentID)
	if err != nil {
		t.Fatal(err)
	}
	if pi.Amount != cart.Total || pi.Currency != "usd" || pi.Customer == nil || pi.Customer.ID == "" ||
		pi.AutomaticPaymentMethods == nil || !pi.AutomaticPaymentMethods.Enabled ||
		pi.Metadata["order_id"] != out.OrderID || pi.Metadata["user_id"] != "user-1" {
		t.Errorf("intent = %d %s customer %+v apm %+v metadata %v; cart total %d", pi.Amount, pi.Currency, pi.Customer,
			pi.AutomaticPaymentMethods, pi.Metadata, cart.Total)
	}
	o, ols := orderRow(t, h, out.OrderID)
	if o.UIMode != store.UIModeEmbedded || o.StripePaymentIntentID == nil || *o.StripePaymentIntentID != pi.ID ||
		o.AmountTotal != pi.Amount || o.AmountDiscount != cart.Discount || o.AmountSubtotal != cart.Subtotal ||
		o.StripeCustomerID == nil || *o.StripeCustomerID != pi.Customer.ID || o.StripeSessionID != nil ||
		!o.ExpiresAt.Equal(h.clock.Now().Add(time.Hour).Truncate(time.Microsecond)) || len(ols) != 2 {
		t.Errorf("order = %+v", o)
	}
	// A second embedded checkout, a minute later, reuses the customer.
	h.clock.Advance(time.Minute)
	r = h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "embedded"})
	var again embeddedBody
	r.decode(t, &again)
	o2, _ := orderRow(t, h, again.OrderID)
	if o2.StripeCustomerID == nil || *o2.StripeCustomerID != *o.StripeCustomerID {
		t.Errorf("second order's customer %v, first %v", o2.StripeCustomerID, o.StripeCustomerID)
	}
	// The orders list shows what the retry page needs while it is open.
	var list struct {
		Orders []struct {
			ID           string       `json:"id"`
			Status       string       `json:"status"`
			Total        int64        `json:"total"`
			ClientSecret string       `json:"client_secret"`
			Lines        []cartLine   `json:"lines"`
			Refunds      []any        `json:"refunds"`
			PaidAt       *time.Time   `json:"paid_at"`
			UIMode       store.UIMode `json:"ui_mode"`
		} `json:"orders"`
	}
	h.do("GET", "/api/orders", tok, nil).decode(t, &list)
	if len(list.Orders) != 2 || list.Orders[1].ID != o.ID || list.Orders[1].Total != cart.Total ||
		list.Orders[1].ClientSecret != out.ClientSecret || len(list.Orders[1].Lines) != 2 || list.Orders[1].Refunds == nil {
		t.Errorf("orders = %+v", list)
	}
	var none struct{ Orders []any }
	h.do("GET", "/api/orders", h.token("user-2", "bob@example.com"), nil).decode(t, &none)
	if len(none.Orders) != 0 {
		t.Errorf("user-2 sees %d orders", len(none.Orders))
	}
}

// TestCartCheckoutWithStripeTax: with stripe.automatic_tax on, an
// embedded order charges the discounted lines plus Stripe Tax's amount
// (the emulator's 10%), to the cent; a hosted one turns on the session's
// automatic tax.
func TestCartCheckoutWithStripeTax(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	cfg.Stripe.AutomaticTax = true
	h, env := newCartHarness(t, cfg)
	tok := h.token("user-1", "ada@example.com")
	cart := fillCart(t, h, tok)
	// (19900 + 1800) - 20% = 17360; 10% on 15920 and 1440 is 1592 + 144.
	if cart.Tax == nil || *cart.Tax != 1736 || cart.Total != 17360+1736 {
		t.Fatalf("taxed cart = %+v", cart)
	}
	var out embeddedBody
	h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "embedded"}).decode(t, &out)
	pi, err := env.emu.PaymentIntent(out.PaymentIntentID)
	if err != nil {
		t.Fatal(err)
	}
	o, ols := orderRow(t, h, out.OrderID)
	if pi.Amount != cart.Total || o.AmountTax != 1736 || o.AmountTotal != pi.Amount || o.TaxCalculationID == nil ||
		ols[0].AmountTax != 1592 || ols[1].AmountTax != 144 {
		t.Errorf("intent %d; order %+v lines %+v", pi.Amount, o, ols)
	}
	var hosted hostedBody
	h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted"}).decode(t, &hosted)
	sess, err := env.emu.Session(hosted.SessionID)
	if err != nil || sess.AutomaticTax == nil || !sess.AutomaticTax.Enabled {
		t.Errorf("hosted session automatic tax = %+v, %v", sess.AutomaticTax, err)
	}
}

// TestCartCheckoutRefusals: an empty cart, a bad ui_mode, out of stock
// (nothing recorded), and a Stripe failure (the reservation released at
// once, the order failed).
func TestCartCheckoutRefusals(t *testing.T) {
	t.Parallel()
	h, env := newCartHarness(t, nil)
	tok := h.token("user-1", "ada@example.com")
	if r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted"}); r.status != 400 || r.errorCode() != "empty_cart" {
		t.Errorf("empty cart = %d %s", r.status, r.body)
	}
	fillCart(t, h, tok)
	for _, body := range []map[string]any{
		{"cart": true, "ui_mode": "popup"},
		{"cart": true},
	} {
		if r := h.do("POST", "/api/checkout", tok, body); r.status != 400 || r.errorCode() != "invalid_ui_mode" {
			t.Errorf("%v = %d %s", body, r.status, r.body)
		}
	}
	for _, body := range []map[string]any{
		{"cart": true, "ui_mode": "hosted", "product": "pro_one_time"},
		{"cart": true, "ui_mode": "hosted", "promotion_code": "LAUNCH20"},
		{"product": "pro_one_time", "ui_mode": "embedded"},
	} {
		if r := h.do("POST", "/api/checkout", tok, body); r.status != 400 || r.errorCode() != "unsupported_field" {
			t.Errorf("%v = %d %s", body, r.status, r.body)
		}
	}
	if _, err := h.db.SetStock(t.Context(), "acme_stickers", 1, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "embedded"})
	if r.status != http.StatusConflict || r.errorCode() != "out_of_stock" {
		t.Errorf("2 of 1 = %d %s", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM orders`); n != 0 {
		t.Errorf("%d orders recorded for a refused checkout", n)
	}
	if _, err := h.db.SetStock(t.Context(), "acme_stickers", 2, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	// Without a code (and with the prices cached) the session is the first
	// Stripe request the checkout makes.
	if r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("pro_one_time", 1), item("acme_stickers", 2)}}); r.status != http.StatusOK {
		t.Fatalf("put cart = %d %s", r.status, r.body)
	}
	env.emu.FailNext(1, http.StatusInternalServerError)
	r = h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted"})
	if r.status != http.StatusBadGateway || r.errorCode() != "stripe_unavailable" {
		t.Errorf("Stripe failing = %d %s", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM orders WHERE status = 'failed' AND ended_at IS NOT NULL`); n != 1 {
		t.Errorf("%d failed orders, want the one Stripe refused", n)
	}
	if s, _ := h.db.GetStock(t.Context(), "acme_stickers"); s.Reserved != 0 || s.OnHand != 2 {
		t.Errorf("stock after Stripe failed = %+v, want nothing held", s)
	}
	// The units are there for the next try.
	if r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted"}); r.status != http.StatusOK {
		t.Errorf("retry = %d %s", r.status, r.body)
	}
}

// TestStockedProductIsCheckedOutThroughTheCart: a product with limited
// stock (configured and seeded like acme_stickers, limited only by
// `paymentd stock set`, or configured and not yet seeded) is refused by a
// one-product checkout with 400 cart_required before Stripe is asked for
// anything or a row is written, since only a cart's checkout reserves
// stock; through the cart it still sells, and holds its units.
func TestStockedProductIsCheckedOutThroughTheCart(t *testing.T) {
	t.Parallel()
	cfg := loadConfig(t)
	ten := 10
	cfg.Products = append(cfg.Products, config.Product{Key: "signed_print", Name: "Signed print", Amount: 4000, Currency: "usd"},
		config.Product{Key: "limited_mug", Name: "Limited mug", Amount: 2500, Currency: "usd", Stock: &ten})
	h, env := newCartHarness(t, cfg)
	now := h.clock.Now()
	if _, err := h.db.SeedStock(t.Context(), "acme_stickers", 25, now); err != nil { // as serve seeds it
		t.Fatal(err)
	}
	if _, err := h.db.SetStock(t.Context(), "signed_print", 3, now); err != nil { // limited only in the database
		t.Fatal(err)
	}
	env.emu.ResetRequests()
	for i, body := range []map[string]any{
		{"product": "acme_stickers", "quantity": 100},
		{"product": "acme_stickers"},
		{"product": "acme_stickers", "quantity": 1, "promotion_code": "LAUNCH20"},
		{"product": "signed_print", "quantity": 1},
		{"product": "limited_mug", "quantity": 1},
	} {
		tok := h.token(fmt.Sprintf("user-%d", i), "ada@example.com")
		r := h.do("POST", "/api/checkout", tok, body)
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Product string `json:"product"`
				Cart    bool   `json:"cart"`
			} `json:"error"`
		}
		r.decode(t, &e)
		if r.status != http.StatusBadRequest || e.Error.Code != "cart_required" || !e.Error.Cart ||
			e.Error.Product != body["product"] || !strings.Contains(e.Error.Message, "limited stock") ||
			!strings.Contains(e.Error.Message, "cart") {
			t.Errorf("%v = %d %s; want 400 cart_required naming the product, with \"cart\": true", body, r.status, r.body)
		}
	}
	if reqs := env.emu.Requests(); len(reqs) != 0 {
		t.Errorf("refused checkouts reached Stripe: %d requests, first %s %s", len(reqs), reqs[0].Method, reqs[0].Path)
	}
	if s := env.emu.Sessions(); len(s) != 0 {
		t.Errorf("refused checkouts left %d sessions at Stripe", len(s))
	}
	if n := h.count(`SELECT count(*) FROM purchases`); n != 0 {
		t.Errorf("refused checkouts recorded %d purchases", n)
	}
	if n := h.count(`SELECT count(*) FROM accounts`); n != 0 {
		t.Errorf("refused checkouts recorded %d accounts", n)
	}
	for _, key := range []string{"acme_stickers", "signed_print"} {
		if s, err := h.db.GetStock(t.Context(), key); err != nil || s.Reserved != 0 {
			t.Errorf("stock of %s after refused checkouts = %+v, %v", key, s, err)
		}
	}

	// Through the cart, the same product sells and holds its units.
	tok := h.token("user-cart", "ada@example.com")
	if r := h.do("PUT", "/api/cart", tok, map[string]any{"items": []any{item("acme_stickers", 3)}}); r.status != http.StatusOK {
		t.Fatalf("put cart = %d %s", r.status, r.body)
	}
	r := h.do("POST", "/api/checkout", tok, map[string]any{"cart": true, "ui_mode": "hosted"})
	var out hostedBody
	r.decode(t, &out)
	if r.status != http.StatusOK || !strings.HasPrefix(out.SessionID, "cs_") || out.OrderID == "" {
		t.Fatalf("cart checkout = %d %s", r.status, r.body)
	}
	if s, _ := h.db.GetStock(t.Context(), "acme_stickers"); s.Reserved != 3 || s.OnHand != 25 {
		t.Errorf("stock after the cart's checkout = %+v, want 3 of 25 held", s)
	}
	// A product without stock still has its one-product checkout.
	if r := h.do("POST", "/api/checkout", tok, map[string]any{"product": "pro_one_time"}); r.status != http.StatusOK {
		t.Errorf("checkout of an unlimited product = %d %s", r.status, r.body)
	}
}
