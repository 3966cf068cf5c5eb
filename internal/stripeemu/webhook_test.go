// Tests of webhook delivery: signatures stripe-go accepts, ordering, drop
// rate, failures logged without retry, and Close.

package stripeemu_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

const secret = "whsec_test_secret"

// receiver is a webhook endpoint that verifies signatures with stripe-go.
type receiver struct {
	srv    *httptest.Server
	status int

	mu      sync.Mutex
	events  []stripe.Event
	headers []string
	bad     []error
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ev, err := webhook.ConstructEventWithOptions(body, req.Header.Get("Stripe-Signature"), secret, webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
		r.mu.Lock()
		if err != nil {
			r.bad = append(r.bad, err)
		} else {
			r.events = append(r.events, ev)
			r.headers = append(r.headers, req.Header.Get("Stripe-Signature"))
		}
		r.mu.Unlock()
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([]stripe.Event, []string, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stripe.Event(nil), r.events...), append([]string(nil), r.headers...), append([]error(nil), r.bad...)
}

// flush waits for webhook delivery with a deadline.
func flush(t *testing.T, emu *stripeemu.Emulator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := emu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookDelivery(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	f := newFixture(t, func(o *stripeemu.Options) { o.WebhookURL, o.WebhookSecret = rcv.srv.URL, secret })
	// Signatures carry the emulator clock's time; stripe-go checks it
	// against the wall clock (5 minute tolerance).
	now := time.Now().Truncate(time.Second)
	f.clk.Set(now)

	pr := f.price(f.product("Course").ID, 2000, "")
	s1, s2 := f.session(pr.ID), f.session(pr.ID)
	if err := f.emu.PaySession(s1.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PaySession(s2.ID, stripeemu.Pay{Async: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.SettleAsync(s2.ID, true); err != nil {
		t.Fatal(err)
	}
	s1, _ = f.emu.Session(s1.ID)
	if _, err := f.emu.Refund(s1.PaymentIntent.ID, 500); err != nil {
		t.Fatal(err)
	}
	flush(t, f.emu)

	got, headers, bad := rcv.got()
	if len(bad) > 0 {
		t.Fatalf("bad deliveries: %v", bad)
	}
	recorded := f.emu.Events()
	if len(got) != 4 || len(recorded) != 4 {
		t.Fatalf("delivered %d, recorded %d", len(got), len(recorded))
	}
	for i, ev := range got {
		if ev.ID != recorded[i].ID || ev.Type != recorded[i].Type || ev.PendingWebhooks != 1 {
			t.Fatalf("delivery %d = %s %s, want %s %s", i, ev.ID, ev.Type, recorded[i].ID, recorded[i].Type)
		}
	}
	if got[0].Type != "checkout.session.completed" || got[0].GetObjectValue("id") != s1.ID || got[3].Type != "charge.refunded" {
		t.Fatalf("delivered types %s … %s", got[0].Type, got[3].Type)
	}
	if !strings.HasPrefix(headers[0], "t="+strconv.FormatInt(now.Unix(), 10)+",v1=") {
		t.Fatalf("signature header %q not stamped with emulator time", headers[0])
	}

	// SetWebhook redirects later events; a wrong secret fails verification.
	f.emu.SetWebhook(rcv.srv.URL, "whsec_other", 0)
	if err := f.emu.ExpireSession(f.session(pr.ID).ID); err != nil {
		t.Fatal(err)
	}
	flush(t, f.emu)
	if _, _, bad := rcv.got(); len(bad) != 1 {
		t.Fatalf("wrong-secret delivery verified: %v", bad)
	}
}

func TestWebhookDropAll(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	f := newFixture(t, func(o *stripeemu.Options) { o.WebhookURL, o.WebhookSecret, o.DropRate = rcv.srv.URL, secret, 1.0 })
	s := f.paidSession()
	if _, err := f.emu.Refund(s.PaymentIntent.ID, 0); err != nil {
		t.Fatal(err)
	}
	flush(t, f.emu)
	if got, _, bad := rcv.got(); len(got)+len(bad) != 0 {
		t.Fatalf("drop rate 1.0 delivered %d", len(got)+len(bad))
	}
	if n := len(f.emu.Events()); n != 2 {
		t.Fatalf("recorded %d events", n)
	}
}

func TestWebhookPartialDropIsSeeded(t *testing.T) {
	delivered := func() []string {
		rcv := newReceiver(t, http.StatusOK)
		f := newFixture(t, func(o *stripeemu.Options) {
			o.WebhookURL, o.WebhookSecret, o.DropRate, o.Seed = rcv.srv.URL, secret, 0.5, 42
		})
		f.clk.Set(time.Now())
		pr := f.price(f.product("Course").ID, 100, "")
		for range 40 {
			if err := f.emu.ExpireSession(f.session(pr.ID).ID); err != nil {
				t.Fatal(err)
			}
		}
		flush(t, f.emu)
		got, _, _ := rcv.got()
		ids := make([]string, len(got))
		for i, ev := range got {
			ids[i] = ev.ID
		}
		return ids
	}
	a, b := delivered(), delivered()
	if len(a) == 0 || len(a) == 40 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("drop rate 0.5 delivered %d then %d", len(a), len(b))
	}
}

func TestWebhookFailuresAreLoggedNotRetried(t *testing.T) {
	rcv := newReceiver(t, http.StatusInternalServerError)
	var logBuf syncBuffer
	f := newFixture(t, func(o *stripeemu.Options) {
		o.WebhookURL, o.WebhookSecret = rcv.srv.URL, secret
		o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	})
	f.clk.Set(time.Now())
	f.paidSession()
	flush(t, f.emu)
	if got, _, _ := rcv.got(); len(got) != 1 {
		t.Fatalf("endpoint hit %d times, want exactly 1 (no retry)", len(got))
	}
	if !strings.Contains(logBuf.String(), "webhook delivery failed") {
		t.Fatalf("log = %q", logBuf.String())
	}

	// After Close nothing more is delivered and Flush does not block.
	if err := f.emu.Close(); err != nil {
		t.Fatal(err)
	}
	f.paidSession()
	flush(t, f.emu)
	if got, _, _ := rcv.got(); len(got) != 1 {
		t.Fatalf("delivered after Close: %d", len(got))
	}
}

// syncBuffer is a bytes.Buffer safe for the delivery goroutine's logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestConcurrentWebhookDelivery: with WebhookConcurrency set, webhooks are
// in flight together, as Stripe sends them, and each event is still
// delivered exactly once.
func TestConcurrentWebhookDelivery(t *testing.T) {
	var (
		mu             sync.Mutex
		inFlight, most int
		seen           = map[string]int{}
		release        = make(chan struct{})
		releaseOnce    sync.Once
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ev, err := webhook.ConstructEventWithOptions(body, req.Header.Get("Stripe-Signature"), secret,
			webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if err == nil {
			seen[ev.ID]++
		}
		if inFlight >= 4 {
			releaseOnce.Do(func() { close(release) })
		}
		mu.Unlock()
		select { // hold each delivery until four are in flight (or a deadline)
		case <-release:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	f := newFixture(t, func(o *stripeemu.Options) {
		o.WebhookURL, o.WebhookSecret, o.WebhookConcurrency = srv.URL, secret, 4
	})
	f.clk.Set(time.Now().Truncate(time.Second))
	pr := f.price(f.product("Course").ID, 2000, "")
	for range 12 {
		if err := f.emu.PaySession(f.session(pr.ID).ID, stripeemu.Pay{}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, f.emu)
	mu.Lock()
	defer mu.Unlock()
	if most != 4 {
		t.Errorf("at most %d webhooks in flight, want 4", most)
	}
	recorded := f.emu.Events()
	if len(seen) != len(recorded) {
		t.Fatalf("%d events delivered, %d recorded", len(seen), len(recorded))
	}
	for _, ev := range recorded {
		if seen[ev.ID] != 1 {
			t.Errorf("event %s delivered %d times", ev.ID, seen[ev.ID])
		}
	}
}
