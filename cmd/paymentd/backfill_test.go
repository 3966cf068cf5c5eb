package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// A first deploy against an account with 30 days of history, through the
// real command and the real fulfillment: every purchase is recorded on
// Stripe's times with the right amounts, access goes to exactly the buyers
// still entitled, and nobody gets an email about a payment days old.
func TestFirstStartAgainstThirtyDaysOfHistorySendsNoEmail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	clk := clock.NewFake(now.Add(-29 * 24 * time.Hour))
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 30})
	defer emu.Close()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL, RateLimit: 100}))
	prod, err := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: "pro_one_time", Name: "Acme Pro"}, "")
	if err != nil {
		t.Fatal(err)
	}
	price, err := api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: "pro_one_time", Currency: "usd", Amount: 19900}, "")
	if err != nil {
		t.Fatal(err)
	}

	// The seller's app, told about grants and revocations.
	var mu sync.Mutex
	events := map[string][]string{} // purchase id -> event types
	seller := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			Type string `json:"type"`
			Data struct {
				PurchaseID string `json:"purchase_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		events[msg.Data.PurchaseID] = append(events[msg.Data.PurchaseID], msg.Type)
		mu.Unlock()
	}))
	defer seller.Close()

	// History: 200 paid (half made through the API, half Payment Links),
	// every fifth refunded in full and every seventh in part, and 50
	// expired, spread over 25 days ending 4 days ago.
	type want struct {
		status   store.PurchaseStatus
		paidAt   time.Time
		refunded int64
	}
	wants := map[string]want{} // session id -> what the purchase must be
	for i := range 250 {
		clk.Advance(25 * 24 * time.Hour / 250)
		var sid string
		if i%2 == 0 {
			s, err := api.CreateCheckoutSession(ctx, stripeapi.CheckoutRequest{PriceID: price.ID, Quantity: 1,
				SuccessURL: "http://x/ok?session_id={CHECKOUT_SESSION_ID}", CancelURL: "http://x/no",
				CustomerEmail: "buyer" + strconv.Itoa(i) + "@example.com", ClientReferenceID: "user-" + strconv.Itoa(i),
				Metadata: map[string]string{"purchase_id": uuid.NewString(), "user_id": "user-" + strconv.Itoa(i), "product": "pro_one_time"}},
				"history-"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			sid = s.ID
		} else {
			s, err := emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: price.ID}},
				CustomerEmail: "link" + strconv.Itoa(i) + "@example.com", SuccessURL: "http://x/ok", CancelURL: "http://x/no"})
			if err != nil {
				t.Fatal(err)
			}
			sid = s.ID
		}
		if i >= 200 {
			if err := emu.ExpireSession(sid); err != nil {
				t.Fatal(err)
			}
			wants[sid] = want{status: store.PurchaseExpired}
			continue
		}
		if err := emu.PaySession(sid, stripeemu.Pay{}); err != nil {
			t.Fatal(err)
		}
		s, err := emu.Session(sid)
		if err != nil {
			t.Fatal(err)
		}
		pi, err := emu.PaymentIntent(s.PaymentIntent.ID)
		if err != nil {
			t.Fatal(err)
		}
		w := want{status: store.PurchaseCompleted, paidAt: time.Unix(pi.Created, 0).UTC()}
		switch {
		case i%5 == 0:
			clk.Advance(time.Minute)
			if _, err := emu.Refund(pi.ID, 0); err != nil {
				t.Fatal(err)
			}
			w.status, w.refunded = store.PurchaseRefunded, 19900
		case i%7 == 0:
			clk.Advance(time.Minute)
			if _, err := emu.Refund(pi.ID, 5000); err != nil {
				t.Fatal(err)
			}
			w.status, w.refunded = store.PurchasePartiallyRefunded, 5000
		}
		wants[sid] = w
	}
	clk.Set(now)

	// First start: the one-off reconcile, then the workers run every step
	// that is due.
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgText := strings.NewReplacer(`outbox_dir: ".data/outbox"`, `outbox_dir: "`+outbox+`"`,
		"access: github", "access: webhook").Replace(string(base))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	vars := map[string]string{"DATABASE_URL": dbURL, "STRIPE_API_BASE": srv.URL, "PAYMENTD_LOG_LEVEL": "error",
		"PAYMENTD_ACCESS_WEBHOOK_URL": seller.URL, "PAYMENTD_ACCESS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	env := &cliEnv{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return vars[k] }}
	var out strings.Builder
	env.stdout = &out
	if code := run(ctx, []string{"reconcile", "--config", cfgPath, "--since", "720h"}, env); code != 0 {
		t.Fatalf("reconcile: exit %d\n%s", code, out.String())
	}
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, newLogger(cfg.Log, io.Discard), db, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for {
		n, err := a.engine.RunDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}

	// Every purchase as Stripe says, on Stripe's times.
	for sid, w := range wants {
		p, err := db.PurchaseBySession(ctx, sid)
		if err != nil {
			t.Fatalf("session %s: %v", sid, err)
		}
		if p.Status != w.status || p.AmountRefunded != w.refunded {
			t.Errorf("session %s: %s refunded %d; want %s refunded %d", sid, p.Status, p.AmountRefunded, w.status, w.refunded)
		}
		if w.status == store.PurchaseExpired {
			continue
		}
		if p.AmountTotal != 19900 || p.Currency != "usd" {
			t.Errorf("session %s: %d %s", sid, p.AmountTotal, p.Currency)
		}
		if p.CompletedAt == nil || !p.CompletedAt.Equal(w.paidAt) {
			t.Errorf("session %s: completed_at %v, want Stripe's payment time %v", sid, p.CompletedAt, w.paidAt)
		}
		mu.Lock()
		got := events[p.ID]
		mu.Unlock()
		entitled := w.status != store.PurchaseRefunded
		wantEvents := "purchase.completed"
		if w.status == store.PurchasePartiallyRefunded {
			wantEvents += " purchase.partially_refunded" // the seller's app hears of it; access stays
		}
		if entitled && (strings.Join(got, " ") != wantEvents || p.AccessState != store.AccessGranted) {
			t.Errorf("entitled purchase %s: events %v, access %s; want %s and granted", p.ID, got, p.AccessState, wantEvents)
		}
		if !entitled && len(got) != 0 {
			t.Errorf("purchase %s refunded before the first start was told %v", p.ID, got)
		}
	}

	// Nobody was emailed about history.
	emails, err := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(emails) != 0 {
		var names []string
		for _, e := range emails {
			names = append(names, filepath.Base(e))
		}
		t.Errorf("%d emails about history: %v", len(emails), names)
	}
}
