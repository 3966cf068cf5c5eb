package catalog_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// emulated is a Stripe emulator and the stripeapi door pointed at it.
type emulated struct {
	emu *stripeemu.Emulator
	api *stripeapi.API
}

func newEmulated(t *testing.T) emulated {
	t.Helper()
	emu := stripeemu.New(stripeemu.Options{Clock: clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_catalog", APIBase: srv.URL, MaxRetries: -1, RateLimit: 100})
	return emulated{emu: emu, api: stripeapi.New(sc)}
}

func products() []config.Product {
	return []config.Product{
		{Key: "pro_one_time", Name: "Acme Pro", Description: "Full source code access", Amount: 19900, Currency: "usd",
			Features: []string{"Full source code access", "Lifetime updates"}},
		{Key: "team_one_time", Name: "Acme Team", Amount: 79900, Currency: "eur"},
	}
}

// priceOf returns the active price holding key, or nil.
func (e emulated) priceOf(t *testing.T, key string) *stripe.Price {
	t.Helper()
	prices, err := e.api.PricesByLookupKeys(context.Background(), []string{key})
	if err != nil {
		t.Fatal(err)
	}
	if len(prices) == 0 {
		return nil
	}
	return prices[0]
}

func actions(r catalog.Report) map[string]catalog.Action {
	out := map[string]catalog.Action{}
	for _, p := range r.Products {
		out[p.Key] = p.Action
	}
	return out
}

func TestSyncCreatesThenReportsNoChanges(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()

	report, err := catalog.Sync(ctx, e.api, products(), false)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(report); a["pro_one_time"] != catalog.Created || a["team_one_time"] != catalog.Created || !report.Changed() {
		t.Fatalf("first sync = %+v; want both created", report)
	}
	pro := e.priceOf(t, "pro_one_time")
	if pro == nil || pro.UnitAmount != 19900 || pro.Currency != "usd" || pro.Product == nil ||
		pro.Product.Name != "Acme Pro" || pro.Product.Metadata["paymentd_product_key"] != "pro_one_time" ||
		pro.ID != report.Products[0].PriceID {
		t.Fatalf("pro price after sync = %+v", pro)
	}
	if team := e.priceOf(t, "team_one_time"); team == nil || team.UnitAmount != 79900 || team.Currency != "eur" {
		t.Fatalf("team price after sync = %+v", team)
	}
	for _, r := range e.emu.WriteRequests() {
		if r.IdempotencyKey == "" || !strings.HasPrefix(r.IdempotencyKey, "paymentd-catalog-") {
			t.Errorf("%s %s sent idempotency key %q; want one derived from content", r.Method, r.Path, r.IdempotencyKey)
		}
	}

	e.emu.ResetRequests()
	again, err := catalog.Sync(ctx, e.api, products(), false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() {
		t.Errorf("second sync = %+v; want no changes", again)
	}
	if w := e.emu.WriteRequests(); len(w) != 0 {
		t.Errorf("second sync wrote %d times: %+v", len(w), w)
	}
	var out strings.Builder
	if _, err := again.WriteTo(&out); err != nil || !strings.Contains(out.String(), "no changes") {
		t.Errorf("report text %q", out.String())
	}
}

func TestDryRunOnlyReads(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	report, err := catalog.Sync(ctx, e.api, products(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !report.DryRun || actions(report)["pro_one_time"] != catalog.Created {
		t.Fatalf("dry run = %+v; want created (would be)", report)
	}
	if w := e.emu.WriteRequests(); len(w) != 0 {
		t.Fatalf("a dry run wrote to Stripe: %+v", w)
	}
	if len(e.emu.Requests()) == 0 {
		t.Fatal("a dry run read nothing")
	}
	var out strings.Builder
	report.WriteTo(&out)
	if !strings.Contains(out.String(), "would be created") {
		t.Errorf("dry-run report %q", out.String())
	}

	// On a synced catalog with a changed amount, a dry run reports the
	// replacement and still writes nothing.
	if _, err := catalog.Sync(ctx, e.api, products(), false); err != nil {
		t.Fatal(err)
	}
	changed := products()
	changed[0].Amount = 24900
	e.emu.ResetRequests()
	report, err = catalog.Sync(ctx, e.api, changed, true)
	if err != nil || actions(report)["pro_one_time"] != catalog.Replaced {
		t.Fatalf("dry run after an amount change = %+v, %v", report, err)
	}
	if w := e.emu.WriteRequests(); len(w) != 0 {
		t.Fatalf("a dry run wrote to Stripe: %+v", w)
	}
	if p := e.priceOf(t, "pro_one_time"); p.UnitAmount != 19900 {
		t.Errorf("a dry run changed the price to %d", p.UnitAmount)
	}
}

func TestAmountChangeReplacesThePrice(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	if _, err := catalog.Sync(ctx, e.api, products(), false); err != nil {
		t.Fatal(err)
	}
	old := e.priceOf(t, "pro_one_time")

	changed := products()
	changed[0].Amount = 24900
	e.emu.ResetRequests()
	report, err := catalog.Sync(ctx, e.api, changed, false)
	if err != nil {
		t.Fatal(err)
	}
	got := report.Products[0]
	if got.Action != catalog.Replaced || got.OldPriceID != old.ID || got.PriceID == old.ID ||
		actions(report)["team_one_time"] != catalog.Unchanged {
		t.Fatalf("sync after an amount change = %+v", report)
	}
	now := e.priceOf(t, "pro_one_time")
	if now.ID != got.PriceID || now.UnitAmount != 24900 || now.Product.ID != old.Product.ID {
		t.Errorf("lookup key now on %s (%d, product %s); want %s at 24900 on product %s",
			now.ID, now.UnitAmount, now.Product.ID, got.PriceID, old.Product.ID)
	}
	var transferred, deactivated bool
	for _, r := range e.emu.WriteRequests() {
		switch {
		case r.Path == "/v1/prices" && r.Form.Get("transfer_lookup_key") == "true" && r.Form.Get("lookup_key") == "pro_one_time":
			transferred = true
		case r.Path == "/v1/prices/"+old.ID && r.Form.Get("active") == "false":
			deactivated = true
		case r.Path == "/v1/products" || strings.HasPrefix(r.Path, "/v1/products/"):
			t.Errorf("an amount change touched the product: %s %s", r.Method, r.Path)
		}
	}
	if !transferred || !deactivated {
		t.Errorf("replacement transferred the lookup key: %v, deactivated the old price: %v", transferred, deactivated)
	}
	if again, err := catalog.Sync(ctx, e.api, changed, false); err != nil || again.Changed() {
		t.Errorf("sync after the replacement = %+v, %v; want no changes", again, err)
	}
}

func TestProductChangeUpdatesTheProduct(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	if _, err := catalog.Sync(ctx, e.api, products(), false); err != nil {
		t.Fatal(err)
	}
	old := e.priceOf(t, "pro_one_time")
	changed := products()
	changed[0].Name = "Acme Pro 2"
	changed[0].Features = append(changed[0].Features, "Priority support")
	report, err := catalog.Sync(ctx, e.api, changed, false)
	if err != nil || report.Products[0].Action != catalog.Updated || report.Products[0].PriceID != old.ID {
		t.Fatalf("sync after a rename = %+v, %v; want updated in place", report, err)
	}
	now := e.priceOf(t, "pro_one_time")
	if now.ID != old.ID || now.Product.Name != "Acme Pro 2" || len(now.Product.Features) != 3 {
		t.Errorf("product after update = %+v", now.Product)
	}
	if again, err := catalog.Sync(ctx, e.api, changed, false); err != nil || again.Changed() {
		t.Errorf("sync after the update = %+v, %v; want no changes", again, err)
	}
}

// crashingGateway fails CreatePrice once, as if the process died between
// creating a product and its price.
type crashingGateway struct {
	*stripeapi.API
	crashed  bool
	products []string
}

func (g *crashingGateway) CreateProduct(ctx context.Context, p stripeapi.ProductSpec, key string) (*stripe.Product, error) {
	prod, err := g.API.CreateProduct(ctx, p, key)
	if err == nil {
		g.products = append(g.products, prod.ID)
	}
	return prod, err
}

func (g *crashingGateway) CreatePrice(ctx context.Context, p stripeapi.PriceSpec, key string) (*stripe.Price, error) {
	if !g.crashed {
		g.crashed = true
		return nil, errors.New("killed")
	}
	return g.API.CreatePrice(ctx, p, key)
}

func TestRerunAfterACrashDoesNotDuplicate(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	g := &crashingGateway{API: e.api}
	one := products()[:1]
	if _, err := catalog.Sync(ctx, g, one, false); err == nil {
		t.Fatal("the crashed sync reported success")
	}
	if _, err := catalog.Sync(ctx, g, one, false); err != nil {
		t.Fatal(err)
	}
	p := e.priceOf(t, "pro_one_time")
	if len(g.products) != 2 || g.products[0] != g.products[1] || p == nil || p.Product.ID != g.products[0] {
		t.Errorf("products created across the crash: %v, price on %v; want the same product twice", g.products, p)
	}
}
