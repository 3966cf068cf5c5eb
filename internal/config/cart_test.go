package config_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

// TestCartKeys: config.yaml sets the cart keys and a stocked product;
// out-of-range values are reported under their key paths.
func TestCartKeys(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cart.TTL != 7*24*time.Hour || cfg.Cart.CheckoutTTL != time.Hour || cfg.Fulfillment.RetryURL == "" ||
		cfg.Stripe.AutomaticTax {
		t.Errorf("cart = %+v, retry_url %q, automatic_tax %v", cfg.Cart, cfg.Fulfillment.RetryURL, cfg.Stripe.AutomaticTax)
	}
	if p, ok := cfg.Product("acme_stickers"); !ok || p.Stock == nil || *p.Stock != 25 {
		t.Errorf("acme_stickers = %+v", p)
	}
	if d := config.Defaults(); d.Cart.TTL != 7*24*time.Hour || d.Cart.CheckoutTTL != time.Hour {
		t.Errorf("defaults = %+v", d.Cart)
	}
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(base), "checkout_ttl: 1h", "checkout_ttl: 10m", 1)
	bad = strings.Replace(bad, "stock: 25", "stock: -1", 1)
	bad = strings.Replace(bad, `retry_url: "http://localhost:8080/"`, `retry_url: "not a url"`, 1)
	bad = strings.Replace(bad, "    credits: 1000\n", "    credits: 1000\n    stock: 5\n", 1) // on the subscription
	_, err = config.Parse([]byte(bad), noEnv)
	for _, key := range []string{"cart.checkout_ttl:", "products[2].stock:", "fulfillment.retry_url:", "products[1].stock:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("problems %v do not name %s", err, key)
		}
	}
}
