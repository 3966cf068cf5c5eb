package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

func TestReconcileCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	emu := stripeemu.New(stripeemu.Options{Clock: clock.Real{}})
	defer emu.Close()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL}))
	prod, _ := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: "pro_one_time", Name: "Acme Pro"}, "")
	price, _ := api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: "pro_one_time", Currency: "usd", Amount: 19900}, "")
	s, err := emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: price.ID}},
		CustomerEmail: "lin@example.com", SuccessURL: "http://x/ok", CancelURL: "http://x/no"})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	// Not paymentd's: a "save a card" session, paid.
	setup, err := emu.CreateSession(stripeemu.SessionParams{Mode: "setup", CustomerEmail: "card@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.PaySession(setup.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}

	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	env := func(k string) string {
		return map[string]string{"DATABASE_URL": dbURL, "STRIPE_API_BASE": srv.URL, "PAYMENTD_LOG_LEVEL": "error"}[k]
	}
	reconcileCLI := func(args ...string) (int, string, string) {
		var out, errOut strings.Builder
		code := run(ctx, append([]string{"reconcile", "--config", "../../config.yaml"}, args...),
			&cliEnv{stdout: &out, stderr: &errOut, getenv: env})
		return code, out.String(), errOut.String()
	}
	countPurchases := func() int {
		var n int
		db.Pool.QueryRow(ctx, `SELECT count(*) FROM purchases`).Scan(&n)
		return n
	}

	emu.ResetRequests()
	code, out, errOut := reconcileCLI("--dry-run", "--json")
	var rep reconcile.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if !rep.DryRun || rep.Counts["created"] != 1 || rep.Counts["completed"] != 1 || countPurchases() != 0 {
		t.Errorf("dry run reported %v and left %d purchases; want created 1, completed 1, nothing written", rep.Counts, countPurchases())
	}
	if len(rep.Skipped) != 1 || rep.Skipped[reconcile.SkipNotPaymentMode] != 1 {
		t.Errorf("--json skipped = %v; want the setup session under not_payment_mode\n%s", rep.Skipped, out)
	}
	if w := emu.WriteRequests(); len(w) != 0 {
		t.Errorf("dry run wrote to Stripe: %+v", w)
	}

	code, out, _ = reconcileCLI("--since", "72h")
	if code != 0 || !strings.Contains(out, "completed 1") || !strings.Contains(out, "healed without a webhook: session 2") ||
		!strings.Contains(out, "skipped, not paymentd's: not_payment_mode 1") {
		t.Errorf("reconcile: exit %d\n%s", code, out)
	}
	if countPurchases() != 1 {
		t.Errorf("%d purchases after reconcile, want 1", countPurchases())
	}
	code, out, _ = reconcileCLI()
	if code != 0 || strings.Contains(out, "completed") {
		t.Errorf("second reconcile changed something: exit %d\n%s", code, out)
	}

	emu.SetFaults(stripeemu.Faults{Rate5xx: 1})
	ctxShort, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var sb, eb strings.Builder
	code = run(ctxShort, []string{"reconcile", "--config", "../../config.yaml"}, &cliEnv{stdout: &sb, stderr: &eb, getenv: env})
	if code != exitFailure || !strings.Contains(eb.String(), "retried by the next pass") {
		t.Errorf("reconcile against a failing Stripe: exit %d, want %d\n%s", code, exitFailure, eb.String())
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    reconcile.Progress
		want string
	}{
		{reconcile.Progress{Running: true, Seen: 12345, PerSecond: 2300.4},
			"reconciling: 12345 objects seen · 2300/s"},
		{reconcile.Progress{Running: true, Seen: 40000, PerSecond: 2000, Phase: store.WalkSessions, Done: 0.4,
			Remaining: 30*time.Second + 400*time.Millisecond, InFlight: 3, Backlog: 20},
			"reconciling: 40000 objects seen · 2000/s · sessions 40% · about 30s left · 3 in flight, 20 queued"},
	} {
		if got := progressLine(c.p); got != c.want {
			t.Errorf("progressLine = %q, want %q", got, c.want)
		}
	}
	// Never into a pipe or a file.
	var b strings.Builder
	stop := showProgress(&b, func() reconcile.Progress { return reconcile.Progress{Running: true, Elapsed: time.Hour} })
	stop()
	if b.Len() != 0 {
		t.Errorf("progress written to a non-terminal: %q", b.String())
	}
}
