// Tests of the hosted checkout page used in dev mode.

package stripeemu_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// browser is an HTTP client that does not follow redirects.
func (f *fixture) browser() *http.Client {
	c := *f.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func TestHostedCheckoutPage(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Go <course>").ID, 2500, "")
	s := f.session(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.CustomerEmail = stripe.String("pre@example.com")
		p.ConsentCollection = &stripe.CheckoutSessionConsentCollectionParams{Promotions: stripe.String("auto")}
	})
	res, err := f.browser().Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	page := string(body)
	for _, want := range []string{"Go &lt;course&gt;", "€25.00", `value="pre@example.com"`, `action="/checkout/` + s.ID + `/pay"`, `action="/checkout/` + s.ID + `/cancel"`, "Send me promotional emails"} {
		if !strings.Contains(page, want) {
			t.Fatalf("page lacks %q:\n%s", want, page)
		}
	}

	res, err = f.browser().PostForm(f.srv.URL+"/checkout/"+s.ID+"/pay", url.Values{"email": {"paid@example.com"}, "name": {"Ada"}, "promotions": {"opt_in"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://shop.example/done?cs="+s.ID {
		t.Fatalf("pay: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	got, _ := f.emu.Session(s.ID)
	if got.Status != stripe.CheckoutSessionStatusComplete || got.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid || got.CustomerDetails.Email != "paid@example.com" || got.Consent.Promotions != "opt_in" {
		t.Fatalf("after pay: %+v", got)
	}
	res, _ = f.browser().PostForm(f.srv.URL+"/checkout/"+s.ID+"/pay", url.Values{"email": {"again@example.com"}})
	res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("paying twice: %d", res.StatusCode)
	}

	// Async checkbox, and Cancel leaves the session open.
	a := f.session(pr.ID)
	res, _ = f.browser().PostForm(f.srv.URL+"/checkout/"+a.ID+"/pay", url.Values{"email": {"x@example.com"}, "async": {"1"}})
	res.Body.Close()
	if got, _ := f.emu.Session(a.ID); got.PaymentStatus != stripe.CheckoutSessionPaymentStatusUnpaid || got.Status != stripe.CheckoutSessionStatusComplete {
		t.Fatalf("async pay: %s/%s", got.Status, got.PaymentStatus)
	}
	c := f.session(pr.ID)
	res, _ = f.browser().PostForm(f.srv.URL+"/checkout/"+c.ID+"/cancel", nil)
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://shop.example/cancel" {
		t.Fatalf("cancel: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if got, _ := f.emu.Session(c.ID); got.Status != stripe.CheckoutSessionStatusOpen {
		t.Fatalf("cancel changed status to %s", got.Status)
	}
	if err := f.emu.PaySession(c.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	res, _ = f.browser().Get(f.srv.URL + "/checkout/cs_test_missing")
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("missing session page: %d", res.StatusCode)
	}
}
