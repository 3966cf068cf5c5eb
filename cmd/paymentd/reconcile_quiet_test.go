package main

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
)

func TestReconcileQuietSchedulesNoCustomerEmail(t *testing.T) {
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

	// steps runs reconcile with args against a fresh database and returns
	// the names of the steps it scheduled.
	steps := func(args ...string) []string {
		t.Helper()
		dbURL := pgtest.URL(t)
		db := pgtest.Open(t, dbURL)
		env := func(k string) string {
			return map[string]string{"DATABASE_URL": dbURL, "STRIPE_API_BASE": srv.URL, "PAYMENTD_LOG_LEVEL": "error"}[k]
		}
		var out, errOut strings.Builder
		code := run(ctx, append([]string{"reconcile", "--config", "../../config.yaml"}, args...),
			&cliEnv{stdout: &out, stderr: &errOut, getenv: env})
		if code != 0 {
			t.Fatalf("reconcile %v: exit %d\n%s\n%s", args, code, out.String(), errOut.String())
		}
		rows, err := db.Pool.Query(ctx, `SELECT name FROM steps WHERE subject_id IS NOT NULL ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		return names
	}

	loud := steps()
	if !slices.Contains(loud, "purchase_confirmation") || !slices.Contains(loud, "followup_onboarding") {
		t.Fatalf("without --quiet the purchase got %v, want its customer emails", loud)
	}
	quiet := steps("--quiet")
	for _, customer := range []string{"purchase_confirmation", "access_email", "followup_onboarding",
		"followup_feedback", "followup_testimonial"} {
		if slices.Contains(quiet, customer) {
			t.Errorf("--quiet scheduled %s: %v", customer, quiet)
		}
	}
	if !slices.Contains(quiet, "admin_purchase") {
		t.Errorf("--quiet dropped the admin email: %v", quiet)
	}
}
