package catalog_test

import (
	"context"
	"testing"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/config"
)

func subscriptionProduct() config.Product {
	return config.Product{Key: "pro_subscription", Mode: config.ModeSubscription, Name: "Acme Cloud",
		Description: "Hosted Acme", TrialDays: 14, Prices: []config.Price{
			{Key: "pro_monthly", Interval: "month", Amount: 2900, Currency: "usd"},
			{Key: "pro_quarterly", Interval: "month", IntervalCount: 3, Amount: 7900, Currency: "usd"},
			{Key: "pro_yearly", Interval: "year", Amount: 29000, Currency: "usd"},
		}}
}

// TestSyncCreatesRecurringPricesOnOneProduct: a subscription product is one
// Stripe product with a recurring price per configured price; a second
// run changes nothing, and a dry run writes nothing.
func TestSyncCreatesRecurringPricesOnOneProduct(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	products := append(products(), subscriptionProduct())

	dry, err := catalog.Sync(ctx, e.api, products, true)
	if err != nil || len(dry.Products) != 5 || len(e.emu.WriteRequests()) != 0 {
		t.Fatalf("dry run = %+v, %v; writes %d", dry, err, len(e.emu.WriteRequests()))
	}
	report, err := catalog.Sync(ctx, e.api, products, false)
	if err != nil {
		t.Fatal(err)
	}
	a := actions(report)
	for _, key := range []string{"pro_one_time", "team_one_time", "pro_monthly", "pro_quarterly", "pro_yearly"} {
		if a[key] != catalog.Created {
			t.Errorf("%s: %s, want created (report %+v)", key, a[key], report)
		}
	}
	monthly, quarterly, yearly := e.priceOf(t, "pro_monthly"), e.priceOf(t, "pro_quarterly"), e.priceOf(t, "pro_yearly")
	for _, c := range []struct {
		key      string
		amount   int64
		interval string
		count    int64
	}{{"pro_monthly", 2900, "month", 1}, {"pro_quarterly", 7900, "month", 3}, {"pro_yearly", 29000, "year", 1}} {
		p := e.priceOf(t, c.key)
		if p == nil || p.Recurring == nil || p.UnitAmount != c.amount || string(p.Recurring.Interval) != c.interval ||
			p.Recurring.IntervalCount != c.count {
			t.Fatalf("%s = %+v", c.key, p)
		}
	}
	if monthly.Product.ID != yearly.Product.ID || quarterly.Product.ID != monthly.Product.ID ||
		monthly.Product.Metadata["paymentd_product_key"] != "pro_subscription" || monthly.Product.Name != "Acme Cloud" {
		t.Errorf("prices on products %s, %s, %s (%+v)", monthly.Product.ID, quarterly.Product.ID, yearly.Product.ID, monthly.Product)
	}
	again, err := catalog.Sync(ctx, e.api, products, false)
	if err != nil || again.Changed() {
		t.Errorf("second sync = %+v, %v; want no changes", again, err)
	}
}

// TestSyncReplacesARecurringPriceWhoseTermsChanged: a new amount or
// interval moves the lookup key to a new price on the same product and
// archives the old one; the product's own changes are updated (and
// reported with its first price).
func TestSyncReplacesARecurringPriceWhoseTermsChanged(t *testing.T) {
	t.Parallel()
	e := newEmulated(t)
	ctx := context.Background()
	p := subscriptionProduct()
	if _, err := catalog.Sync(ctx, e.api, []config.Product{p}, false); err != nil {
		t.Fatal(err)
	}
	oldMonthly, oldYearly := e.priceOf(t, "pro_monthly"), e.priceOf(t, "pro_yearly")
	p.Prices[0].Amount = 3900
	p.Prices[2].Interval, p.Prices[2].IntervalCount = "month", 12
	p.Name = "Acme Cloud Pro"
	report, err := catalog.Sync(ctx, e.api, []config.Product{p}, false)
	if err != nil {
		t.Fatal(err)
	}
	a := actions(report)
	if a["pro_monthly"] != catalog.Replaced || a["pro_yearly"] != catalog.Replaced || a["pro_quarterly"] != catalog.Unchanged ||
		len(report.Products[0].Changes) != 2 {
		t.Fatalf("actions = %v (%+v)", a, report)
	}
	monthly, yearly := e.priceOf(t, "pro_monthly"), e.priceOf(t, "pro_yearly")
	if monthly.ID == oldMonthly.ID || monthly.UnitAmount != 3900 || monthly.Product.ID != oldMonthly.Product.ID ||
		monthly.Product.Name != "Acme Cloud Pro" {
		t.Errorf("monthly after = %+v", monthly)
	}
	if yearly.ID == oldYearly.ID || string(yearly.Recurring.Interval) != "month" || yearly.Recurring.IntervalCount != 12 {
		t.Errorf("yearly after = %+v", yearly)
	}
	archived := false
	for _, r := range e.emu.WriteRequests() {
		archived = archived || (r.Path == "/v1/prices/"+oldMonthly.ID && r.Form.Get("active") == "false")
	}
	if !archived {
		t.Errorf("old monthly price %s was not archived", oldMonthly.ID)
	}
	if again, err := catalog.Sync(ctx, e.api, []config.Product{p}, false); err != nil || again.Changed() {
		t.Errorf("third sync = %+v, %v", again, err)
	}
}
