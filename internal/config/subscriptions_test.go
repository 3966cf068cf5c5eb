package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

func TestCommittedConfigSellsASubscription(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := cfg.Product("pro_subscription")
	if !ok || !p.IsSubscription() || p.TrialDays != 14 || len(p.Prices) != 2 {
		t.Fatalf("pro_subscription = %+v, %v", p, ok)
	}
	if pr, ok := p.Price("pro_yearly"); !ok || pr.Interval != "year" || pr.Amount != 29000 || pr.Count() != 1 {
		t.Errorf("pro_yearly = %+v, %v", pr, ok)
	}
	prices := cfg.SubscriptionPrices()
	if len(prices) != 2 || prices["pro_monthly"].Product.Key != "pro_subscription" {
		t.Errorf("SubscriptionPrices = %+v", prices)
	}
	if cfg.Subscriptions.Grace != 7*24*time.Hour || cfg.Subscriptions.DunningReminder != 3*24*time.Hour {
		t.Errorf("subscriptions = %+v", cfg.Subscriptions)
	}
}

func TestSubscriptionDefaultsAndZeroGrace(t *testing.T) {
	if d := config.Defaults().Subscriptions; d.Grace != 7*24*time.Hour || d.DunningReminder != 72*time.Hour {
		t.Errorf("defaults = %+v", d)
	}
	base, _ := os.ReadFile("../../config.yaml")
	cfg, err := config.Parse([]byte(strings.Replace(string(base), "grace: 168h", "grace: 0s", 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Subscriptions.Grace != 0 {
		t.Errorf("grace 0s read as %s", cfg.Subscriptions.Grace)
	}
}

// TestSubscriptionProblemsAreReported: every malformed subscription
// setting is reported under its key path.
func TestSubscriptionProblemsAreReported(t *testing.T) {
	base, _ := os.ReadFile("../../config.yaml")
	bad := strings.NewReplacer(
		"grace: 168h", "grace: -1h",
		"dunning_reminder: 72h", "dunning_reminder: 0s",
		"trial_days: 14", "trial_days: 731\n    amount: 100",
		`{key: pro_monthly, interval: month, amount: 2900, currency: "usd"}`, `{key: pro_one_time, interval: week, amount: 0, currency: "USD"}`,
		`{key: pro_yearly, interval: year, amount: 29000, currency: "usd"}`, `{key: pro_yearly, interval: year, interval_count: 2, amount: 29000, currency: "usd"}`,
	).Replace(string(base))
	_, err := config.Parse([]byte(bad), noEnv)
	var problems config.Problems
	if !errors.As(err, &problems) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []string{
		"subscriptions.grace:", "subscriptions.dunning_reminder:", "products[1].trial_days:", "products[1].amount:",
		"products[1].prices[0].key: duplicate", "products[1].prices[0].interval:", "products[1].prices[0].amount:",
		"products[1].prices[0].currency:", "products[1].prices[1].interval_count:",
	}
	for _, w := range want {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, w)
		}
		if !found {
			t.Errorf("problem %q not reported; got:\n%s", w, err)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(problems), len(want), err)
	}

	oneTime := strings.Replace(string(base), "    amount: 19900\n", "    amount: 19900\n    trial_days: 3\n    prices: [{key: x, interval: month, amount: 1, currency: usd}]\n", 1)
	_, err = config.Parse([]byte(oneTime), noEnv)
	if err == nil || !strings.Contains(err.Error(), "products[0].prices: only a product with mode subscription") ||
		!strings.Contains(err.Error(), "products[0].trial_days:") {
		t.Errorf("a one-time product with prices: %v", err)
	}
	mode := strings.Replace(string(base), "mode: subscription", "mode: rental", 1)
	if _, err := config.Parse([]byte(mode), noEnv); err == nil || !strings.Contains(err.Error(), "products[1].mode:") {
		t.Errorf("unknown mode: %v", err)
	}
}
