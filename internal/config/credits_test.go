package config_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/config"
)

// withPack adds a product and a credits section to the committed config.
func withPack(t *testing.T, product, credits string) ([]byte, error) {
	t.Helper()
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(base), "\nproducts:\n", "\nproducts:\n"+product, 1)
	s = strings.Replace(s, "\ncredits:\n", "\ncredits_committed:\n", 1)
	s = strings.Replace(s, "  service_tokens: []\n", "", 1)
	s = strings.Replace(s, "\ncredits_committed:\n", "\n"+credits, 1)
	return []byte(s), nil
}

func TestCreditsConfig(t *testing.T) {
	good := `  - key: credits_500
    name: "500 credits"
    amount: 900
    currency: usd
    credits: 500
    credits_low_threshold: 50
  - key: starter
    name: "Starter"
    amount: 900
    currency: usd
    credits: 100
    credits_rollover: true
`
	raw, _ := withPack(t, good, "credits:\n  service_tokens: [\"svc_0123456789abcdef0123456789abcdef\"]\n")
	cfg, err := config.Parse(raw, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Product("credits_500")
	if p.Credits != 500 || p.CreditsRollover || p.CreditsLowThreshold == nil || *p.CreditsLowThreshold != 50 {
		t.Errorf("credits_500 = %+v", p)
	}
	if s, _ := cfg.Product("starter"); !s.CreditsRollover || s.CreditsLowThreshold != nil {
		t.Errorf("starter = %+v", s)
	}
	if len(cfg.Credits.ServiceTokens) != 1 {
		t.Errorf("service tokens = %v", cfg.Credits.ServiceTokens)
	}
	if c, _ := config.Load("../../config.yaml", noEnv); len(c.Credits.ServiceTokens) != 0 {
		t.Errorf("the committed config has service tokens: the consume endpoint would be on by default")
	}

	bad := `  - key: neg
    name: "Negative"
    amount: 900
    currency: usd
    credits: -5
  - key: roll
    name: "Rollover without credits"
    amount: 900
    currency: usd
    credits_rollover: true
  - key: low
    name: "Threshold without credits"
    amount: 900
    currency: usd
    credits_low_threshold: 3
  - key: lowneg
    name: "Negative threshold"
    amount: 900
    currency: usd
    credits: 10
    credits_low_threshold: -1
`
	raw, _ = withPack(t, bad, "credits:\n  service_tokens: [\"short\"]\n")
	_, err = config.Parse(raw, noEnv)
	var problems config.Problems
	if !errors.As(err, &problems) {
		t.Fatalf("bad credits config: %v", err)
	}
	for _, want := range []string{"products[0].credits:", "products[1].credits_rollover:",
		"products[2].credits_low_threshold:", "products[3].credits_low_threshold:", "credits.service_tokens[0]:"} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("no problem %s in %v", want, problems)
		}
	}
	if len(problems) != 5 {
		t.Errorf("%d problems, want 5: %v", len(problems), problems)
	}
}
