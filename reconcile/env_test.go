package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// env is a reconciler on a real database against the Stripe emulator.
type env struct {
	t      *testing.T
	ctx    context.Context
	clock  *clock.Fake
	emu    *stripeemu.Emulator
	api    *stripeapi.API
	db     *store.DB
	engine *steps.Engine
	ful    *recorder
	rec    *reconcile.Reconciler
	price  string
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

const product = "pro_one_time"

func newEnv(t *testing.T, start time.Time) *env {
	t.Helper()
	clk := clock.NewFake(start)
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 7})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emulator", APIBase: srv.URL,
		RateLimit: 100, BackoffBase: time.Millisecond}))
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng := steps.New(db, clk, log, steps.Config{}, nil)
	e := &env{t: t, ctx: context.Background(), clock: clk, emu: emu, api: api, db: db, engine: eng}
	e.ful = &recorder{eng: eng}
	e.rec = e.newReconciler()
	prod, err := api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: product, Name: "Acme Pro"}, "")
	if err != nil {
		t.Fatal(err)
	}
	price, err := api.CreatePrice(e.ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: product, Currency: "usd", Amount: 19900}, "")
	if err != nil {
		t.Fatal(err)
	}
	e.price = price.ID
	return e
}

func (e *env) newReconciler() *reconcile.Reconciler {
	return reconcile.New(reconcile.Options{
		DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Log:      slog.New(slog.NewTextHandler(testLog{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Products: productsWithGitHub,
	})
}

// checkout does what POST /api/checkout does: a session with paymentd's
// metadata, and a pending purchase row.
func (e *env) checkout(user string) (sessionID, purchaseID string) {
	e.t.Helper()
	purchaseID = uuid.NewString()
	email := user + "@example.com"
	s, err := e.api.CreateCheckoutSession(e.ctx, stripeapi.CheckoutRequest{
		PriceID: e.price, Quantity: 1, SuccessURL: "http://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
		CancelURL: "http://app.test/pricing", ClientReferenceID: user, CustomerEmail: email, Recovery: true,
		Metadata: map[string]string{"user_id": user, "product": product, "purchase_id": purchaseID},
	}, "checkout:"+purchaseID)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	exp := time.Unix(s.ExpiresAt, 0).UTC()
	if _, err := e.db.InsertPurchase(e.ctx, store.Purchase{ID: purchaseID, UserID: &user, Email: &email, ProductKey: product,
		Quantity: 1, Status: store.PurchasePending, StripeSessionID: s.ID, AmountTotal: s.AmountTotal, Currency: "usd",
		AccessState: store.AccessNone, SessionExpiresAt: &exp, CreatedAt: now, UpdatedAt: now}); err != nil {
		e.t.Fatal(err)
	}
	return s.ID, purchaseID
}

func (e *env) pay(sessionID string, async bool) string {
	e.t.Helper()
	if err := e.emu.PaySession(sessionID, stripeemu.Pay{Async: async}); err != nil {
		e.t.Fatal(err)
	}
	s, err := e.emu.Session(sessionID)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.PaymentIntent.ID
}

func (e *env) purchase(id string) store.Purchase {
	e.t.Helper()
	p, err := e.db.GetPurchase(e.ctx, id)
	if err != nil {
		e.t.Fatalf("purchase %s: %v", id, err)
	}
	return p
}

func (e *env) pass(o reconcile.PassOptions) *reconcile.Report {
	e.t.Helper()
	rep, err := e.rec.RunPass(e.ctx, "test", o)
	if err != nil {
		e.t.Fatalf("pass: %v", err)
	}
	return rep
}

// pipelines counts scheduled pipelines by purchase and name.
func (e *env) pipelines() map[string]map[string]int {
	e.t.Helper()
	rows, err := e.db.Pool.Query(e.ctx, `SELECT subject_id::text, pipeline, count(*) FROM steps GROUP BY 1, 2`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var p, name string
		var n int
		if err := rows.Scan(&p, &name, &n); err != nil {
			e.t.Fatal(err)
		}
		if out[p] == nil {
			out[p] = map[string]int{}
		}
		out[p][name] = n
	}
	return out
}

// snapshot fingerprints every table the reconciler writes.
func (e *env) snapshot() string {
	e.t.Helper()
	var out string
	for _, table := range []string{"purchases", "refunds", "disputes", "steps", "reconcile_cursors", "reconcile_errors", "webhook_hints"} {
		var sum *string
		if err := e.db.Pool.QueryRow(e.ctx, `SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM `+table+` t`).Scan(&sum); err != nil {
			e.t.Fatal(err)
		}
		if sum != nil {
			out += table + ":" + *sum + " "
		}
	}
	return out
}

// recorder is the Fulfillment double: every call schedules one marker
// step in a pipeline named after it, through the real engine, so "scheduled
// exactly once" is a fact about rows.
type recorder struct {
	eng *steps.Engine
	mu  sync.Mutex
	// full records, per refund id, whether it arrived as a full refund.
	full map[string]bool
}

func (f *recorder) schedule(ctx context.Context, q *store.Queries, p store.Purchase, pipeline string, at time.Time, args any) error {
	_, err := f.eng.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: pipeline, Anchor: at,
		Steps: []steps.Step{{Name: "marker", Args: args}}})
	return err
}

func (f *recorder) Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, _ bool) error {
	for _, p := range ps {
		if err := f.schedule(ctx, q, p, "purchase", time.Time{}, nil); err != nil {
			return err
		}
	}
	return nil
}

// WalkEnded holds nothing to release: Completed schedules no grant.
func (f *recorder) WalkEnded(context.Context, *store.Queries) error { return nil }

func (f *recorder) Refunded(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	full := p.AmountRefunded >= p.AmountTotal
	f.mu.Lock()
	if f.full == nil {
		f.full = map[string]bool{}
	}
	f.full[r.ID] = full
	f.mu.Unlock()
	return f.schedule(ctx, q, p, "refund:"+r.ID, time.Time{}, map[string]any{"full": full, "cumulative": p.AmountRefunded})
}

func (f *recorder) RefundReversed(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	return f.schedule(ctx, q, p, "reversed:"+r.ID, time.Time{}, nil)
}

func (f *recorder) Expired(ctx context.Context, q *store.Queries, p store.Purchase) error {
	return f.schedule(ctx, q, p, "abandoned", p.SessionExpiresAt.Add(time.Hour), nil)
}

func (f *recorder) PaymentFailed(ctx context.Context, q *store.Queries, p store.Purchase) error {
	return f.schedule(ctx, q, p, "payment_failed", time.Time{}, nil)
}

func (f *recorder) DisputeOpened(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error {
	return f.schedule(ctx, q, p, "dispute:"+d.ID, time.Time{}, nil)
}

func (f *recorder) DisputeLost(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error {
	return f.schedule(ctx, q, p, "dispute_lost:"+d.ID, time.Time{}, nil)
}

func (f *recorder) Claimed(ctx context.Context, q *store.Queries, p store.Purchase) error {
	return f.schedule(ctx, q, p, "claimed", time.Time{}, nil)
}

func (f *recorder) RepairAccess(ctx context.Context, q *store.Queries, p store.Purchase, want store.AccessState) error {
	return f.schedule(ctx, q, p, fmt.Sprintf("repair:%s", want), time.Time{}, nil)
}

// Alert schedules the alert as the real Fulfillment does: a global
// pipeline per key.
func (f *recorder) Alert(ctx context.Context, q *store.Queries, key string, a steps.AlertArgs) error {
	_, err := f.eng.Schedule(ctx, q, steps.Pipeline{Name: "alert:" + key, Steps: []steps.Step{{Name: steps.AlertStep, Args: a}}})
	return err
}

func stripeFaults(rate5xx, rate429 float64) stripeemu.Faults {
	return stripeemu.Faults{Rate5xx: rate5xx, Rate429: rate429, RetryAfter: time.Millisecond}
}

func stripeemuSession(price, email string) stripeemu.SessionParams {
	return stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: price}}, CustomerEmail: email,
		PaymentLink: "plink_test_1", SuccessURL: "http://app.test/ok", CancelURL: "http://app.test/pricing"}
}

var productsWithGitHub = []config.Product{{Key: product, Access: "github"}}

// webhookEndpoint mounts the real webhook endpoint on e's database and
// returns a function that delivers one event to it, signed now.
func webhookEndpoint(t *testing.T, e *env) func(*stripe.Event) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Stripe.WebhookSecret = "whsec_test_reconcile"
	auth, err := httpapi.NewAuthenticator(e.ctx, httpapi.AuthOptions{Secret: []byte(strings.Repeat("k", 32)),
		Issuer: "test", Audience: "test"})
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(e.db, clock.Real{}, slog.New(slog.DiscardHandler), nil)
	api.MountAPI(httpapi.APIDeps{Config: cfg, Auth: auth})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return func(ev *stripe.Event) {
		t.Helper()
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: cfg.Stripe.WebhookSecret,
			Timestamp: time.Now()})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/stripe/webhook", bytes.NewReader(signed.Payload))
		req.Header.Set("Stripe-Signature", signed.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook %s answered %d", ev.ID, resp.StatusCode)
		}
	}
}
