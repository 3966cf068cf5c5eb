// Tests of the request pipeline: authentication, request log, idempotency
// replay and fault injection.

package stripeemu_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	for _, h := range []http.Header{{}, {"Authorization": {"Bearer pk_test_x"}}} {
		res, body := f.raw(http.MethodGet, "/v1/events", nil, h)
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"type":"invalid_request_error"`) {
			t.Fatalf("%v: %d %s", h, res.StatusCode, body)
		}
	}
	// Unauthenticated requests do not use up injected failures.
	f.emu.FailNext(1, http.StatusInternalServerError)
	if res, _ := f.raw(http.MethodGet, "/v1/events", nil, nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key with FailNext pending: %d", res.StatusCode)
	}
	if res, _ := f.raw(http.MethodGet, "/v1/events", nil, http.Header{"Authorization": {"Bearer sk_test_x"}}); res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("FailNext after a 401: %d", res.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/events", nil)
	req.SetBasicAuth("sk_test_x", "")
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("basic auth: %d", res.StatusCode)
	}
}

// FailPath fails the requests to one path only, after letting some through.
func TestFailPath(t *testing.T) {
	f := newFixture(t)
	auth := http.Header{"Authorization": {"Bearer sk_test_x"}}
	f.emu.FailPath("/v1/events", 1, 2, http.StatusBadGateway)
	var got []int
	for _, path := range []string{"/v1/events", "/v1/customers", "/v1/events", "/v1/events", "/v1/events"} {
		res, _ := f.raw(http.MethodGet, path, nil, auth)
		got = append(got, res.StatusCode)
	}
	if want := []int{200, 200, 502, 502, 200}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v; want %v", got, want)
	}
}

func TestIdempotencyReplay(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 1000, "")
	f.emu.ResetRequests()
	create := func(key string, qty int64) (*stripe.CheckoutSession, error) {
		params := &stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
			LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(qty)}}}
		params.SetIdempotencyKey(key)
		return f.sc.CheckoutSessions.New(params)
	}
	a, err := create("order-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	b, err := create("order-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || b.Created != a.Created || b.LastResponse.Header.Get("Idempotent-Replayed") != "true" || a.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay gave %s (created %d), first %s (created %d)", b.ID, b.Created, a.ID, a.Created)
	}
	if n := len(f.emu.Sessions()); n != 1 {
		t.Fatalf("%d sessions after replay", n)
	}
	_, err = create("order-1", 2)
	if se := stripeErr(t, err, 400, "", ""); se.Type != stripe.ErrorTypeIdempotency {
		t.Fatalf("reuse with other params: type %s", se.Type)
	}
	c, err := create("order-2", 2)
	if err != nil || c.ID == a.ID {
		t.Fatalf("fresh key: %v", err)
	}
	// A failed request is not stored: retrying the key after fixing nothing
	// fails again rather than replaying.
	params := &stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_nope"), Quantity: stripe.Int64(1)}}}
	params.SetIdempotencyKey("bad")
	if _, err := f.sc.CheckoutSessions.New(params); err == nil {
		t.Fatal("bad price accepted")
	}
	// After 24 hours the key is forgotten.
	f.clk.Advance(25 * time.Hour)
	d, err := create("order-1", 2)
	if err != nil || d.ID == a.ID {
		t.Fatalf("expired key: %v", err)
	}

	if _, err := f.sc.CheckoutSessions.Get(a.ID, nil); err != nil {
		t.Fatal(err)
	}
	reqs := f.emu.Requests()
	writes := f.emu.WriteRequests()
	if len(reqs) != 7 || len(writes) != 6 {
		t.Fatalf("%d requests, %d writes", len(reqs), len(writes))
	}
	w := writes[0]
	if w.Method != http.MethodPost || w.Path != "/v1/checkout/sessions" || w.IdempotencyKey != "order-1" || w.Form.Get("line_items[0][price]") != pr.ID || w.Form.Get("mode") != "payment" || !w.At.Equal(start) {
		t.Fatalf("logged write = %+v", w)
	}
	if reqs[6].Method != http.MethodGet || reqs[6].Path != "/v1/checkout/sessions/"+a.ID {
		t.Fatalf("logged read = %+v", reqs[6])
	}
	f.emu.ResetRequests()
	if len(f.emu.Requests()) != 0 {
		t.Fatal("ResetRequests left entries")
	}

	// Refund replay: one refund, one event.
	s := f.paidSession()
	for range 2 {
		rp := &stripe.RefundParams{PaymentIntent: stripe.String(s.PaymentIntent.ID), Amount: stripe.Int64(100)}
		rp.SetIdempotencyKey("refund-1")
		if _, err := f.sc.Refunds.New(rp); err != nil {
			t.Fatal(err)
		}
	}
	if evs := f.events("charge.refunded"); len(evs) != 1 {
		t.Fatalf("%d charge.refunded events after replay", len(evs))
	}
}

func TestFaults(t *testing.T) {
	f := newFixture(t)
	hdr := http.Header{"Authorization": {"Bearer sk_test_x"}}

	f.emu.SetFaults(stripeemu.Faults{RetryAfter: 2500 * time.Millisecond})
	f.emu.FailNext(1, http.StatusTooManyRequests)
	res, body := f.raw(http.MethodGet, "/v1/events", nil, hdr)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "3" || !strings.Contains(body, `"code":"rate_limit"`) {
		t.Fatalf("429: %d %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if res, _ := f.raw(http.MethodGet, "/v1/events", nil, hdr); res.StatusCode != 200 {
		t.Fatalf("after FailNext: %d", res.StatusCode)
	}

	f.emu.FailNext(1, http.StatusTooManyRequests)
	_, err := f.sc.Events.Get("evt_x", nil)
	if se := stripeErr(t, err, 429, stripe.ErrorCodeRateLimit, ""); se.LastResponse.Header.Get("Retry-After") != "3" {
		t.Fatalf("stripe-go 429 Retry-After = %q", se.LastResponse.Header.Get("Retry-After"))
	}

	f.emu.SetFaults(stripeemu.Faults{Rate5xx: 1})
	_, err = f.sc.Products.New(&stripe.ProductParams{Name: stripe.String("x")})
	if se := stripeErr(t, err, 500, "", ""); se.Type != stripe.ErrorTypeAPI {
		t.Fatalf("5xx type %s", se.Type)
	}
	f.emu.SetFaults(stripeemu.Faults{})
	if _, err := f.sc.Products.New(&stripe.ProductParams{Name: stripe.String("x")}); err != nil {
		t.Fatal(err)
	}

	// Injected 5xx responses are not stored for idempotent replay.
	f.emu.FailNext(1, http.StatusServiceUnavailable)
	params := &stripe.ProductParams{Name: stripe.String("y")}
	params.SetIdempotencyKey("p-y")
	if _, err := f.sc.Products.New(params); err == nil {
		t.Fatal("FailNext(503) did not fail")
	}
	if p, err := f.sc.Products.New(params); err != nil || p.Name != "y" {
		t.Fatalf("retry after injected 503: %v", err)
	}

	// Random faults follow the rate and are reproducible from the seed.
	pattern := func(seed int64) string {
		e := stripeemu.New(stripeemu.Options{Seed: seed})
		e.SetFaults(stripeemu.Faults{Rate429: 0.2, Rate5xx: 0.1})
		var sb strings.Builder
		for range 400 {
			req := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
			req.Header.Set("Authorization", "Bearer sk_test_x")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			switch rec.Code {
			case 200:
				sb.WriteByte('.')
			case 429:
				sb.WriteByte('r')
			default:
				sb.WriteByte('x')
			}
		}
		return sb.String()
	}
	p1, p2 := pattern(7), pattern(7)
	if p1 != p2 {
		t.Fatal("same seed gave different fault patterns")
	}
	if r, x := strings.Count(p1, "r"), strings.Count(p1, "x"); r < 50 || r > 110 || x < 20 || x > 65 {
		t.Fatalf("400 requests gave %d 429s and %d 5xx", r, x)
	}
}

// A lost answer: the request is applied, the connection drops without an
// answer, and a retry with the same idempotency key gets the stored result
// instead of doing the work twice.
func TestLostResponses(t *testing.T) {
	f := newFixture(t)
	// A client without kept-alive connections, so net/http cannot replay
	// the request on a fresh one and hide the loss.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func() (*http.Response, string, error) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/products", strings.NewReader("name=Course"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer sk_test_x")
		req.Header.Set("Idempotency-Key", "lost-1")
		res, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, string(b), err
	}
	f.emu.SetFaults(stripeemu.Faults{RateLost: 1})
	if res, body, err := post(); err == nil {
		t.Fatalf("a lost answer arrived: %d %s", res.StatusCode, body)
	}
	if reqs := f.emu.Requests(); len(reqs) != 1 || !reqs[0].Lost {
		t.Fatalf("request log %+v; want one request marked lost", reqs)
	}
	f.emu.SetFaults(stripeemu.Faults{})
	products := f.sc.Products.List(&stripe.ProductListParams{})
	var ids []string
	for products.Next() {
		ids = append(ids, products.Product().ID)
	}
	if len(ids) != 1 {
		t.Fatalf("%d products after the lost create; want it applied once", len(ids))
	}
	res, body, err := post()
	if err != nil || res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(body, ids[0]) {
		t.Fatalf("retry of the lost create: %v %v %s", err, res, body)
	}

	// Lost answers take their share of the draws after 429s and 5xx, so
	// adding them leaves a seed's other faults where they were.
	pattern := func(faults stripeemu.Faults) string {
		e := stripeemu.New(stripeemu.Options{Seed: 7})
		e.SetFaults(faults)
		var sb strings.Builder
		for range 400 {
			req := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
			req.Header.Set("Authorization", "Bearer sk_test_x")
			rec := httptest.NewRecorder()
			func() {
				defer func() {
					if recover() == http.ErrAbortHandler {
						sb.WriteByte('l')
					}
				}()
				e.ServeHTTP(rec, req)
				switch rec.Code {
				case 200:
					sb.WriteByte('.')
				case 429:
					sb.WriteByte('r')
				default:
					sb.WriteByte('x')
				}
			}()
		}
		return sb.String()
	}
	without := pattern(stripeemu.Faults{Rate429: 0.1, Rate5xx: 0.3})
	with := pattern(stripeemu.Faults{Rate429: 0.1, Rate5xx: 0.3, RateLost: 0.05})
	if strings.ReplaceAll(with, "l", ".") != without {
		t.Fatalf("lost answers moved other faults:\n%s\n%s", without, with)
	}
	if l := strings.Count(with, "l"); l < 8 || l > 36 {
		t.Fatalf("400 requests at 5%% lost lost %d answers", l)
	}
}

func TestLatency(t *testing.T) {
	f := newFixture(t)
	f.emu.SetFaults(stripeemu.Faults{Latency: 30 * time.Millisecond})
	began := time.Now()
	if _, err := f.sc.Events.Get("evt_missing", nil); err == nil {
		t.Fatal("missing event found")
	}
	if d := time.Since(began); d < 30*time.Millisecond {
		t.Fatalf("request took %v with 30ms latency", d)
	}
}

// TestConcurrentUse drives the emulator from many goroutines at once; run
// with -race it checks the handler and Go operations share state safely.
func TestConcurrentUse(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	f := newFixture(t, func(o *stripeemu.Options) { o.WebhookURL, o.WebhookSecret = rcv.srv.URL, secret })
	f.clk.Set(time.Now())
	pr := f.price(f.product("Course").ID, 1000, "")
	const workers, each = 8, 10
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				s, err := f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
					LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}}})
				if err == nil {
					err = f.emu.PaySession(s.ID, stripeemu.Pay{})
				}
				if err == nil {
					_, err = f.sc.CheckoutSessions.Get(s.ID, nil)
				}
				if err == nil {
					it := f.sc.Events.List(&stripe.EventListParams{})
					for it.Next() {
					}
					err = it.Err()
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	flush(t, f.emu)
	if got, _, bad := rcv.got(); len(got) != workers*each || len(bad) != 0 || len(f.emu.Sessions()) != workers*each {
		t.Fatalf("delivered %d (bad %d), sessions %d", len(got), len(bad), len(f.emu.Sessions()))
	}
}
