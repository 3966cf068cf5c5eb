package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

func noEnv(string) string { return "" }

func TestCommittedConfigLoads(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatalf("config.yaml must run as-is: %v", err)
	}
	if got := cfg.Fulfillment.FollowUps[1].Delay; got != 14*24*time.Hour {
		t.Errorf("second follow-up delay = %s, want 336h", got)
	}
	if p, ok := cfg.Product("pro_one_time"); !ok || p.Amount != 19900 || p.Currency != "usd" {
		t.Errorf("product pro_one_time = %+v, %v", p, ok)
	}
	if cfg.Reconcile.PassBudget != 5*time.Minute {
		t.Errorf("reconcile.pass_budget = %s, want 5m", cfg.Reconcile.PassBudget)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":          "postgres://db.internal/paymentd",
		"STRIPE_SECRET_KEY":     "sk_test_abc",
		"STRIPE_WEBHOOK_SECRET": "whsec_live",
		"STRIPE_API_BASE":       "http://127.0.0.1:12111",
		"SENDGRID_API_KEY":      "SG.key",
		"SENDGRID_API_BASE":     "https://api.eu.sendgrid.com",
		"GITHUB_TOKEN":          "ghp_x",
		"GITHUB_API_BASE":       "https://ghe.example.com/api/v3/",
		"PAYMENTD_HTTP_ADDR":    ":8081",
	}
	cfg, err := config.Load("../../config.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"database.url":            {cfg.Database.URL, env["DATABASE_URL"]},
		"stripe.secret_key":       {cfg.Stripe.SecretKey, env["STRIPE_SECRET_KEY"]},
		"stripe.webhook_secret":   {cfg.Stripe.WebhookSecret, env["STRIPE_WEBHOOK_SECRET"]},
		"stripe.api_base":         {cfg.Stripe.APIBase, env["STRIPE_API_BASE"]},
		"email.sendgrid_api_key":  {cfg.Email.SendGridAPIKey, env["SENDGRID_API_KEY"]},
		"email.sendgrid_api_base": {cfg.Email.SendGridAPIBase, env["SENDGRID_API_BASE"]},
		"github.token":            {cfg.GitHub.Token, env["GITHUB_TOKEN"]},
		"github.api_base":         {cfg.GitHub.APIBase, env["GITHUB_API_BASE"]},
		"http.addr":               {cfg.HTTP.Addr, env["PAYMENTD_HTTP_ADDR"]},
	}
	for key, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q from the environment", key, c[0], c[1])
		}
	}
	vars := config.EnvVars()
	for name := range env {
		if vars[name] == "" {
			t.Errorf("EnvVars does not list %s", name)
		}
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.NewReplacer(
		"workers: 16", "workers: 0",
		"lease: 1m", "lease: -1m",
		`schedule: "@every 1m"`, `schedule: "every minute"`,
		"currency: usd", "currency: USD",
		"amount: 19900", "amount: 0",
		"provider: outbox", "provider: carrier-pigeon",
		"permission: pull", "permission: owner",
		"poll_interval: 1s", "poll_interval: 1s\n  polll_interval: 2s",
		"  repo: \"acme-pro\"", "  repo: \"acme-pro\"\n  reop: typo",
		"log:\n", "logging: {}\nlog:\n",
		"    access: github", "    access: github\n    acess: none",
		"pass_budget: 5m", "pass_budget: 0s",
	).Replace(string(base))
	_, err = config.Parse([]byte(bad), noEnv)
	var problems config.Problems
	if !errors.As(err, &problems) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []string{
		"steps.workers:", "steps.lease:", "reconcile.schedule:", "products[0].currency:",
		"products[0].amount:", "email.provider:", "github.permission:",
		"steps.polll_interval: unknown key", "github.reop: unknown key", "logging: unknown key",
		"products[0].acess: unknown key", "reconcile.pass_budget:",
	}
	for _, w := range want {
		found := false
		for _, p := range problems {
			if strings.HasPrefix(p, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("problem %q not reported; got:\n%s", w, err)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(problems), len(want), err)
	}
}

func TestTypeErrorsAndBadEnvAreReported(t *testing.T) {
	base, _ := os.ReadFile("../../config.yaml")
	bad := strings.Replace(string(base), "max_attempts: 10", "max_attempts: ten", 1)
	_, err := config.Parse([]byte(bad), func(k string) string {
		if k == "STRIPE_SECRET_KEY" {
			return "pk_test_publishable"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "max_attempts") && !strings.Contains(err.Error(), "ten") {
		t.Fatalf("type error not reported: %v", err)
	}
	if !strings.Contains(err.Error(), "stripe.secret_key") {
		t.Errorf("publishable key accepted as secret key: %v", err)
	}
}

func TestLiveKeysRefuseDevPlaceholders(t *testing.T) {
	_, err := config.Load("../../config.yaml", func(k string) string {
		return map[string]string{"STRIPE_SECRET_KEY": "sk_live_abc"}[k]
	})
	for _, want := range []string{"auth.jwt_secret", "email.unsubscribe_secret", "stripe.webhook_secret", "email.provider"} {
		if err == nil || !strings.Contains(err.Error(), want+": ") {
			t.Errorf("live key with dev %s accepted: %v", want, err)
		}
	}
}

func TestRetentionAndStepTimeout(t *testing.T) {
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(base, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Retention != 2160*time.Hour || cfg.Steps.Timeout != 45*time.Second {
		t.Errorf("retention %s, steps.timeout %s; want 2160h and 45s", cfg.Retention, cfg.Steps.Timeout)
	}
	without := strings.Replace(string(base), "retention: 2160h", "", 1)
	if cfg, err := config.Parse([]byte(without), noEnv); err != nil || cfg.Retention != 90*24*time.Hour {
		t.Errorf("retention without the key = %v, %v; want the 90-day default", cfg, err)
	}
	bad := strings.NewReplacer("retention: 2160h", "retention: 1h", "timeout: 45s", "timeout: 0s").Replace(string(base))
	_, err = config.Parse([]byte(bad), noEnv)
	var problems config.Problems
	if !errors.As(err, &problems) || len(problems) != 2 ||
		!strings.HasPrefix(problems[0], "retention:") || !strings.HasPrefix(problems[1], "steps.timeout:") {
		t.Errorf("problems = %v, want retention and steps.timeout", err)
	}
}

func TestHTTPListenersAndCheckoutRate(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.AdminAddr != "127.0.0.1:9090" || cfg.HTTP.PublicMetrics || cfg.HTTP.CheckoutRate != 10 {
		t.Errorf("http defaults: admin_addr %q public_metrics %v checkout_rate %d; want 127.0.0.1:9090, false, 10",
			cfg.HTTP.AdminAddr, cfg.HTTP.PublicMetrics, cfg.HTTP.CheckoutRate)
	}
	if d := config.Defaults(); d.HTTP.AdminAddr != "127.0.0.1:9090" || d.HTTP.CheckoutRate != 10 {
		t.Errorf("built-in defaults: admin_addr %q checkout_rate %d", d.HTTP.AdminAddr, d.HTTP.CheckoutRate)
	}
	for _, c := range []struct {
		addr, admin string
		clash       bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:9090", false},
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"0.0.0.0:8080", "127.0.0.1:8080", true},
		{":8080", "127.0.0.1:8080", true},
		{"10.0.0.1:8080", "127.0.0.1:8080", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, // each gets a free port
	} {
		_, err := config.Load("../../config.yaml", func(k string) string {
			return map[string]string{"PAYMENTD_HTTP_ADDR": c.addr, "PAYMENTD_ADMIN_ADDR": c.admin}[k]
		})
		if clash := err != nil && strings.Contains(err.Error(), "http.admin_addr: must differ"); clash != c.clash {
			t.Errorf("addr %s, admin_addr %s: %v; want a clash %v", c.addr, c.admin, err, c.clash)
		}
	}
	base, _ := os.ReadFile("../../config.yaml")
	for _, rate := range []string{"0", "-1", "10001"} {
		bad := strings.Replace(string(base), "checkout_rate: 10 ", "checkout_rate: "+rate+" ", 1)
		if _, err := config.Parse([]byte(bad), noEnv); err == nil || !strings.Contains(err.Error(), "http.checkout_rate:") {
			t.Errorf("checkout_rate %s accepted: %v", rate, err)
		}
	}
}

// TestStripeLookupRate: http.stripe_lookup_rate defaults to 60 a minute,
// as config.yaml sets it, and is refused outside 1 to 10,000.
func TestStripeLookupRate(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.StripeLookupRate != 60 || config.Defaults().HTTP.StripeLookupRate != 60 {
		t.Errorf("stripe_lookup_rate = %d, built-in %d; want 60", cfg.HTTP.StripeLookupRate,
			config.Defaults().HTTP.StripeLookupRate)
	}
	base, _ := os.ReadFile("../../config.yaml")
	for _, rate := range []string{"120", "0", "-1", "10001"} {
		text := strings.Replace(string(base), "stripe_lookup_rate: 60 ", "stripe_lookup_rate: "+rate+" ", 1)
		cfg, err := config.Parse([]byte(text), noEnv)
		if rate == "120" {
			if err != nil || cfg.HTTP.StripeLookupRate != 120 {
				t.Errorf("stripe_lookup_rate 120: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "http.stripe_lookup_rate:") {
			t.Errorf("stripe_lookup_rate %s accepted: %v", rate, err)
		}
	}
}
