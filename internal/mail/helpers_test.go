package mail_test

import (
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

// testSecret keys unsubscribe tokens in tests.
var testSecret = []byte("test-unsubscribe-secret")

// testBrand is a complete brand used by every test.
func testBrand() mail.Brand {
	return mail.Brand{
		ProductName:     "Acme Starter Kit",
		FromAddress:     "hello@acme.test",
		FromName:        "Sam at Acme",
		SupportEmail:    "support@acme.test",
		AdminEmail:      "founder@acme.test",
		PrimaryColor:    "#0f766e",
		BackgroundColor: "#f3f4f6",
		TextColor:       "#111827",
		LogoURL:         "https://acme.test/logo.png",
		PricingURL:      "https://acme.test/pricing",
		PublicURL:       "https://pay.acme.test",
	}
}

// newRenderer builds a Renderer over the embedded templates.
func newRenderer(t *testing.T) *mail.Renderer {
	t.Helper()
	r, err := mail.NewRenderer(testBrand(), "", testSecret)
	if err != nil {
		t.Fatalf("NewRenderer: %v", err)
	}
	return r
}
