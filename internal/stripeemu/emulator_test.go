// Test fixture and catalog / Checkout Session tests, all driven through the
// real stripe-go v76 client.

package stripeemu_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// start is the fake clock's starting time in most tests.
var start = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is an emulator behind an httptest server with a stripe-go client.
type fixture struct {
	t   testing.TB
	clk *clock.Fake
	emu *stripeemu.Emulator
	srv *httptest.Server
	sc  *client.API
}

// newFixture starts an emulator; mod may adjust its options.
func newFixture(t testing.TB, mod ...func(*stripeemu.Options)) *fixture {
	t.Helper()
	clk := clock.NewFake(start)
	opts := stripeemu.Options{Clock: clk, Seed: 1}
	for _, m := range mod {
		m(&opts)
	}
	emu := stripeemu.New(opts)
	srv := httptest.NewServer(emu)
	emu.SetBaseURL(srv.URL)
	t.Cleanup(func() {
		srv.Close()
		_ = emu.Close()
	})
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(srv.URL),
		HTTPClient:        srv.Client(),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	sc := client.New("sk_test_emulator", &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
	return &fixture{t: t, clk: clk, emu: emu, srv: srv, sc: sc}
}

// product creates a product.
func (f *fixture) product(name string) *stripe.Product {
	f.t.Helper()
	p, err := f.sc.Products.New(&stripe.ProductParams{Name: stripe.String(name), Description: stripe.String("A " + name)})
	if err != nil {
		f.t.Fatalf("create product: %v", err)
	}
	return p
}

// price creates a one-time EUR price for product.
func (f *fixture) price(productID string, amount int64, lookupKey string) *stripe.Price {
	f.t.Helper()
	params := &stripe.PriceParams{Product: stripe.String(productID), UnitAmount: stripe.Int64(amount), Currency: stripe.String("eur")}
	if lookupKey != "" {
		params.LookupKey = stripe.String(lookupKey)
	}
	p, err := f.sc.Prices.New(params)
	if err != nil {
		f.t.Fatalf("create price: %v", err)
	}
	return p
}

// session creates a payment-mode session for one unit of priceID.
func (f *fixture) session(priceID string, mod ...func(*stripe.CheckoutSessionParams)) *stripe.CheckoutSession {
	f.t.Helper()
	params := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModePayment)),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(priceID), Quantity: stripe.Int64(1)}},
		SuccessURL: stripe.String("https://shop.example/done?cs={CHECKOUT_SESSION_ID}"),
		CancelURL:  stripe.String("https://shop.example/cancel"),
	}
	for _, m := range mod {
		m(params)
	}
	s, err := f.sc.CheckoutSessions.New(params)
	if err != nil {
		f.t.Fatalf("create session: %v", err)
	}
	return s
}

// paidSession creates and synchronously pays a session for a new 2500 EUR
// product and returns it re-read.
func (f *fixture) paidSession() *stripe.CheckoutSession {
	f.t.Helper()
	pr := f.price(f.product("Course").ID, 2500, "")
	s := f.session(pr.ID)
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "buyer@example.com"}); err != nil {
		f.t.Fatalf("pay: %v", err)
	}
	got, err := f.sc.CheckoutSessions.Get(s.ID, nil)
	if err != nil {
		f.t.Fatalf("get session: %v", err)
	}
	return got
}

// raw sends an API request without stripe-go.
func (f *fixture) raw(method, path string, form url.Values, header http.Header) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return res, string(b)
}

// stripeErr asserts err is a Stripe error with the given status, code and
// param (code and param may be empty to skip).
func stripeErr(t *testing.T, err error, status int, code stripe.ErrorCode, param string) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want *stripe.Error, got %T %v", err, err)
	}
	if se.HTTPStatusCode != status || (code != "" && se.Code != code) || (param != "" && se.Param != param) {
		t.Fatalf("got status %d code %q param %q (%s); want %d %q %q", se.HTTPStatusCode, se.Code, se.Param, se.Msg, status, code, param)
	}
	return se
}

func TestCatalogRoundTrip(t *testing.T) {
	f := newFixture(t)
	p, err := f.sc.Products.New(&stripe.ProductParams{
		Name: stripe.String("Go course"), Description: stripe.String("Learn Go"),
		Features: []*stripe.ProductFeatureParams{{Name: stripe.String("Videos")}, {Name: stripe.String("Exercises")}},
		Params:   stripe.Params{Metadata: map[string]string{"sku": "go-1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.ID, "prod_") || p.Name != "Go course" || !p.Active || p.Metadata["sku"] != "go-1" || len(p.Features) != 2 || p.Created != start.Unix() {
		t.Fatalf("product = %+v", p)
	}
	f.clk.Advance(time.Minute)
	up, err := f.sc.Products.Update(p.ID, &stripe.ProductParams{Name: stripe.String("Go course v2"), Params: stripe.Params{Metadata: map[string]string{"sku": "", "x": "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "Go course v2" || up.Metadata["x"] != "y" || len(up.Metadata) != 1 || up.Updated != start.Add(time.Minute).Unix() {
		t.Fatalf("updated product = %+v", up)
	}
	got, err := f.sc.Products.Get(p.ID, nil)
	if err != nil || got.Name != "Go course v2" {
		t.Fatalf("get product = %+v, %v", got, err)
	}
	it := f.sc.Products.List(&stripe.ProductListParams{})
	n := 0
	for it.Next() {
		n++
	}
	if it.Err() != nil || n != 1 {
		t.Fatalf("list products: n=%d err=%v", n, it.Err())
	}

	pr := f.price(p.ID, 4900, "go_course")
	if !strings.HasPrefix(pr.ID, "price_") || pr.Product.ID != p.ID || pr.UnitAmount != 4900 || pr.Currency != "eur" || pr.LookupKey != "go_course" || pr.Type != stripe.PriceTypeOneTime || pr.UnitAmountDecimal != 4900 {
		t.Fatalf("price = %+v", pr)
	}
	gp, err := f.sc.Prices.Get(pr.ID, &stripe.PriceParams{Expand: []*string{stripe.String("product")}})
	if err != nil || gp.Product.Name != "Go course v2" {
		t.Fatalf("get price expanded = %+v, %v", gp, err)
	}

	_, err = f.sc.Products.Get("prod_missing", nil)
	stripeErr(t, err, 404, stripe.ErrorCodeResourceMissing, "id")
}

func TestPriceLookupKeys(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Book")
	a := f.price(prod.ID, 1000, "book_std")
	b := f.price(prod.ID, 2000, "book_premium")
	f.price(prod.ID, 3000, "")

	list := func(keys ...string) []*stripe.Price {
		t.Helper()
		params := &stripe.PriceListParams{Active: stripe.Bool(true)}
		for _, k := range keys {
			params.LookupKeys = append(params.LookupKeys, stripe.String(k))
		}
		params.AddExpand("data.product")
		it := f.sc.Prices.List(params)
		var out []*stripe.Price
		for it.Next() {
			out = append(out, it.Price())
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	got := list("book_std", "book_premium", "nope")
	if len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID || got[0].Product.Name != "Book" {
		t.Fatalf("lookup_keys list = %+v", got)
	}
	if all := list(); len(all) != 3 {
		t.Fatalf("unfiltered list has %d prices", len(all))
	}

	_, err := f.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(1100), Currency: stripe.String("eur"), LookupKey: stripe.String("book_std")})
	stripeErr(t, err, 400, "", "lookup_key")

	// Creating with transfer_lookup_key moves the key to the new price.
	c, err := f.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(1100), Currency: stripe.String("eur"),
		LookupKey: stripe.String("book_std"), TransferLookupKey: stripe.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if got := list("book_std"); len(got) != 1 || got[0].ID != c.ID {
		t.Fatalf("after transfer on create: %+v", got)
	}
	if old, _ := f.sc.Prices.Get(a.ID, nil); old.LookupKey != "" {
		t.Fatalf("old price kept lookup key %q", old.LookupKey)
	}

	// Updating with transfer_lookup_key moves it back; deactivate the other.
	if _, err := f.sc.Prices.Update(a.ID, &stripe.PriceParams{LookupKey: stripe.String("book_std")}); err == nil {
		t.Fatal("update to a taken lookup key without transfer succeeded")
	}
	if _, err := f.sc.Prices.Update(a.ID, &stripe.PriceParams{LookupKey: stripe.String("book_std"), TransferLookupKey: stripe.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sc.Prices.Update(c.ID, &stripe.PriceParams{Active: stripe.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	if got := list("book_std"); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("after transfer on update: %+v", got)
	}
	if got, _ := f.sc.Prices.Get(c.ID, nil); got.Active || got.LookupKey != "" {
		t.Fatalf("deactivated price = %+v", got)
	}
}

func TestCreateAndRetrieveSession(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Go course").ID, 5000, "")
	f.emu.AddCoupon("LAUNCH20", 20, 0, "")
	s := f.session(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.Metadata = map[string]string{"order_id": "ord_1"}
		p.ClientReferenceID = stripe.String("ord_1")
		p.CustomerEmail = stripe.String("a@example.com")
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{Coupon: stripe.String("LAUNCH20")}}
		p.ConsentCollection = &stripe.CheckoutSessionConsentCollectionParams{Promotions: stripe.String("auto")}
		p.AfterExpiration = &stripe.CheckoutSessionAfterExpirationParams{Recovery: &stripe.CheckoutSessionAfterExpirationRecoveryParams{Enabled: stripe.Bool(true), AllowPromotionCodes: stripe.Bool(true)}}
		p.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: map[string]string{"order_id": "ord_1"}}
	})
	if !strings.HasPrefix(s.ID, "cs_test_") || s.Object != "checkout.session" || s.URL != f.srv.URL+"/checkout/"+s.ID {
		t.Fatalf("session id/url = %q %q", s.ID, s.URL)
	}
	if s.Status != stripe.CheckoutSessionStatusOpen || s.PaymentStatus != stripe.CheckoutSessionPaymentStatusUnpaid || s.Mode != stripe.CheckoutSessionModePayment || s.Livemode {
		t.Fatalf("session state = %s/%s/%s", s.Status, s.PaymentStatus, s.Mode)
	}
	if s.AmountSubtotal != 5000 || s.AmountTotal != 4000 || s.TotalDetails.AmountDiscount != 1000 || s.Currency != "eur" {
		t.Fatalf("amounts = %d %d %d %s", s.AmountSubtotal, s.AmountTotal, s.TotalDetails.AmountDiscount, s.Currency)
	}
	if s.Created != start.Unix() || s.ExpiresAt != start.Add(24*time.Hour).Unix() {
		t.Fatalf("created/expires = %d/%d", s.Created, s.ExpiresAt)
	}
	if s.Metadata["order_id"] != "ord_1" || s.ClientReferenceID != "ord_1" || s.CustomerEmail != "a@example.com" || s.CustomerDetails.Email != "a@example.com" {
		t.Fatalf("session fields = %+v", s)
	}
	if s.Customer != nil || s.PaymentIntent != nil || s.Consent != nil || s.ConsentCollection.Promotions != "auto" {
		t.Fatalf("customer/pi/consent = %v %v %v %v", s.Customer, s.PaymentIntent, s.Consent, s.ConsentCollection)
	}
	if !s.AfterExpiration.Recovery.Enabled || !s.AfterExpiration.Recovery.AllowPromotionCodes || s.AfterExpiration.Recovery.URL != "" {
		t.Fatalf("after_expiration = %+v", s.AfterExpiration.Recovery)
	}

	got, err := f.sc.CheckoutSessions.Get(s.ID, &stripe.CheckoutSessionParams{Expand: []*string{stripe.String("line_items")}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != s.ID || got.LineItems == nil || len(got.LineItems.Data) != 1 || got.LineItems.Data[0].Price.ID != pr.ID || got.LineItems.Data[0].AmountTotal != 4000 || got.LineItems.Data[0].Description != "Go course" {
		t.Fatalf("retrieved session line items = %+v", got.LineItems)
	}
	li := f.sc.CheckoutSessions.ListLineItems(&stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(s.ID)})
	if !li.Next() || li.LineItem().Quantity != 1 || li.Next() {
		t.Fatalf("list line items failed: %v", li.Err())
	}
	c, err := f.sc.Coupons.Get("LAUNCH20", nil)
	if err != nil || c.PercentOff != 20 || !c.Valid {
		t.Fatalf("coupon = %+v, %v", c, err)
	}

	cs, err := f.emu.Session(s.ID)
	if err != nil || cs.AmountTotal != 4000 {
		t.Fatalf("Session helper = %+v, %v", cs, err)
	}
}

func TestSessionValidation(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("X").ID, 1000, "")
	f.emu.AddCoupon("TENOFF", 0, 1000, "EUR")

	_, err := f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_nope"), Quantity: stripe.Int64(1)}}})
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "line_items[0][price]")

	_, err = f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}}})
	stripeErr(t, err, 400, stripe.ErrorCodeParameterMissing, "mode")

	withDiscount := func(coupon string, promo bool) error {
		_, err := f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
			LineItems:           []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}},
			Discounts:           []*stripe.CheckoutSessionDiscountParams{{Coupon: stripe.String(coupon)}},
			AllowPromotionCodes: stripe.Bool(promo)})
		return err
	}
	stripeErr(t, withDiscount("NOPE", false), 400, stripe.ErrorCodeResourceMissing, "discounts[0][coupon]")
	stripeErr(t, withDiscount("TENOFF", true), 400, "", "")
	if err := withDiscount("TENOFF", false); err != nil {
		t.Fatalf("valid discount rejected: %v", err)
	}
	// A 100% discount completes without payment.
	s := f.emu.Sessions()[0]
	if s.AmountTotal != 0 {
		t.Fatalf("amount_off 10 EUR on 10 EUR = %d", s.AmountTotal)
	}
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	if s, _ = f.emu.Session(s.ID); s.PaymentStatus != stripe.CheckoutSessionPaymentStatusNoPaymentRequired || s.PaymentIntent != nil {
		t.Fatalf("free session = %s %v", s.PaymentStatus, s.PaymentIntent)
	}

	_, err = f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}},
		ExpiresAt: stripe.Int64(start.Add(25 * time.Hour).Unix())})
	stripeErr(t, err, 400, "", "expires_at")

	_, err = f.sc.CheckoutSessions.Get("cs_test_missing", nil)
	stripeErr(t, err, 404, stripe.ErrorCodeResourceMissing, "")

	if err := f.emu.PaySession("cs_test_missing", stripeemu.Pay{}); !errors.Is(err, stripeemu.ErrNotFound) {
		t.Fatalf("PaySession(missing) = %v", err)
	}

	res, body := f.raw(http.MethodGet, "/v1/quotes", nil, http.Header{"Authorization": {"Bearer sk_test_x"}})
	if res.StatusCode != 404 || !strings.Contains(body, "Unrecognized request URL") {
		t.Fatalf("unknown endpoint: %d %s", res.StatusCode, body)
	}
}

func TestCreateSessionHelper(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Link product").ID, 1500, "")
	s, err := f.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: pr.ID}}, CustomerEmail: "link@example.com", PaymentLink: "plink_123"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.sc.CheckoutSessions.Get(s.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Metadata) != 0 || got.CustomerEmail != "link@example.com" || got.AmountTotal != 1500 || got.PaymentLink.ID != "plink_123" {
		t.Fatalf("helper session = %+v", got)
	}
	if _, err := f.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: "price_nope"}}}); !errors.Is(err, stripeemu.ErrNotFound) {
		t.Fatalf("CreateSession(bad price) = %v", err)
	}
}

func TestCreateSessionHelperModes(t *testing.T) {
	f := newFixture(t)
	pr, err := f.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(f.product("Membership").ID), UnitAmount: stripe.Int64(900),
		Currency: stripe.String("usd"), Recurring: &stripe.PriceRecurringParams{Interval: stripe.String("month")}})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := f.emu.CreateSession(stripeemu.SessionParams{Mode: "setup", CustomerEmail: "card@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := f.emu.CreateSession(stripeemu.SessionParams{Mode: "subscription", LineItems: []stripeemu.LineItem{{Price: pr.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PaySession(setup.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	gotSetup, _ := f.sc.CheckoutSessions.Get(setup.ID, nil)
	gotSub, _ := f.sc.CheckoutSessions.Get(sub.ID, nil)
	if gotSetup.Mode != stripe.CheckoutSessionModeSetup || gotSetup.Status != stripe.CheckoutSessionStatusComplete ||
		gotSetup.AmountTotal != 0 || gotSetup.PaymentIntent != nil {
		t.Errorf("setup session = mode %s status %s amount %d intent %v", gotSetup.Mode, gotSetup.Status, gotSetup.AmountTotal, gotSetup.PaymentIntent)
	}
	if gotSub.Mode != stripe.CheckoutSessionModeSubscription || gotSub.AmountTotal != 900 {
		t.Errorf("subscription session = mode %s amount %d", gotSub.Mode, gotSub.AmountTotal)
	}
	if _, err := f.emu.CreateSession(stripeemu.SessionParams{Mode: "payment"}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Errorf("payment session without line items = %v", err)
	}
	if _, err := f.emu.CreateSession(stripeemu.SessionParams{Mode: "donation", LineItems: []stripeemu.LineItem{{Price: pr.ID}}}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Errorf("unknown mode = %v", err)
	}
}
