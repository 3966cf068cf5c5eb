// Tests of the hosted Elements page and the 3-D Secure challenge page,
// driven over HTTP as a browser would.

package stripeemu_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// pay submits the Elements form of secret with a test payment method.
func (f *fixture) pay(secret string, o stripeemu.Outcome, ret string) (int, string) {
	f.t.Helper()
	return f.post("/elements/"+secret+"/confirm", url.Values{"method": {string(o)}, "return_url": {ret}})
}

// returned checks a redirect to returnURL after payment of pi.
func returned(t *testing.T, loc string, pi *stripe.PaymentIntent, status string) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != returnURL || q.Get("payment_intent") != pi.ID || q.Get("payment_intent_client_secret") != pi.ClientSecret ||
		q.Get("redirect_status") != status {
		t.Fatalf("redirected to %s, want %s with %s and redirect_status=%s", loc, returnURL, pi.ID, status)
	}
}

func TestElementsPage(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(4998, "usd", func(p *stripe.PaymentIntentParams) { p.Description = stripe.String("Order <o1>") })
	page := f.srv.URL + "/elements/" + pi.ClientSecret + "?return_url=" + url.QueryEscape(returnURL)
	st, body := f.page(page)
	for _, want := range []string{"$49.98", "Order &lt;o1&gt;", `action="/elements/` + pi.ClientSecret + `/confirm"`, `value="` + returnURL + `"`,
		`value="declined"`, `value="requires_3ds"`, "ACH debit"} {
		if st != 200 || !strings.Contains(body, want) {
			t.Fatalf("page (%d) lacks %q:\n%s", st, want, body)
		}
	}
	for u, want := range map[string]int{
		f.srv.URL + "/elements/" + pi.ClientSecret + "?return_url=javascript:alert(1)": 400,
		f.srv.URL + "/elements/pi_nope_secret_nope":                                    404,
	} {
		if st, _ := f.page(u); st != want {
			t.Fatalf("GET %s: %d, want %d", u, st, want)
		}
	}

	// A declined card comes back to the form with the error, the intent
	// open for another try.
	st, loc := f.pay(pi.ClientSecret, stripeemu.OutcomeInsufficientFunds, returnURL)
	if st != http.StatusSeeOther || loc != "/elements/"+pi.ClientSecret+"?return_url="+url.QueryEscape(returnURL) {
		t.Fatalf("decline: %d %s", st, loc)
	}
	if _, body := f.page(f.srv.URL + loc); !strings.Contains(body, "Your card has insufficient funds.") || !strings.Contains(body, "<form") {
		t.Fatalf("form after a decline:\n%s", body)
	}

	// 3-D Secure: failing the challenge comes back to the form; passing it
	// goes to return_url.
	st, loc = f.pay(pi.ClientSecret, stripeemu.OutcomeRequires3DS, returnURL)
	if st != http.StatusSeeOther || loc != "/elements/"+pi.ClientSecret+"/3ds" {
		t.Fatalf("3DS: %d %s", st, loc)
	}
	if _, body := f.page(f.srv.URL + loc); !strings.Contains(body, `value="approve"`) || !strings.Contains(body, "$49.98") {
		t.Fatalf("challenge page:\n%s", body)
	}
	st, loc = f.post("/elements/"+pi.ClientSecret+"/3ds", url.Values{"action": {"fail"}})
	if st != http.StatusSeeOther || !strings.HasPrefix(loc, "/elements/"+pi.ClientSecret+"?") {
		t.Fatalf("failed challenge: %d %s", st, loc)
	}
	if _, body := f.page(f.srv.URL + loc); !strings.Contains(body, "failed authentication") {
		t.Fatalf("form after a failed challenge:\n%s", body)
	}
	f.pay(pi.ClientSecret, stripeemu.OutcomeRequires3DS, returnURL)
	st, loc = f.post("/elements/"+pi.ClientSecret+"/3ds", url.Values{"action": {"approve"}})
	if st != http.StatusSeeOther {
		t.Fatalf("approved challenge: %d", st)
	}
	returned(t, loc, pi, "succeeded")
	if got := f.getIntent(pi.ID); got.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("after the page: %s", got.Status)
	}
	if st, _ := f.pay(pi.ClientSecret, stripeemu.OutcomeSucceeds, returnURL); st != http.StatusConflict {
		t.Fatalf("paying a paid intent: %d", st)
	}
	if _, body := f.page(page); !strings.Contains(body, "succeeded") || strings.Contains(body, "<form") {
		t.Fatalf("page of a paid intent:\n%s", body)
	}
	for _, ev := range f.eventsOf("payment_intent.payment_failed") {
		if ev.Request == nil || !strings.HasPrefix(ev.Request.ID, "req_") {
			t.Fatalf("a page confirmation's event has no request: %+v", ev.Request)
		}
	}

	// A good card and a bank debit go straight to return_url.
	card := f.intent(1000, "eur")
	st, loc = f.pay(card.ClientSecret, stripeemu.OutcomeSucceeds, returnURL)
	if st != http.StatusSeeOther {
		t.Fatalf("card: %d", st)
	}
	returned(t, loc, card, "succeeded")
	debit := f.intent(1000, "eur")
	_, loc = f.pay(debit.ClientSecret, stripeemu.OutcomeAsyncSucceeds, returnURL)
	returned(t, loc, debit, "processing")
	// Without a return_url the page itself shows the result.
	quiet := f.intent(1000, "eur")
	if _, loc := f.pay(quiet.ClientSecret, stripeemu.OutcomeSucceeds, ""); loc != "/elements/"+quiet.ClientSecret {
		t.Fatalf("no return_url: %s", loc)
	}
}

func TestChallengePageForServerSideConfirmation(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(3000, "usd")
	got, err := f.confirm(pi.ID, "pm_card_authenticationRequired")
	if err != nil {
		t.Fatal(err)
	}
	st, body := f.page(got.NextAction.RedirectToURL.URL)
	if st != 200 || !strings.Contains(body, `value="fail"`) {
		t.Fatalf("challenge: %d\n%s", st, body)
	}
	st, loc := f.post("/elements/"+pi.ClientSecret+"/3ds", url.Values{"action": {"fail"}})
	if st != http.StatusSeeOther {
		t.Fatalf("fail: %d", st)
	}
	returned(t, loc, pi, "failed")
	if st, _ := f.post("/elements/"+pi.ClientSecret+"/3ds", url.Values{"action": {"approve"}}); st != http.StatusConflict {
		t.Fatalf("answering twice: %d", st)
	}
	if st, _ := f.post("/elements/"+pi.ClientSecret+"/3ds", url.Values{"action": {"maybe"}}); st != http.StatusBadRequest {
		t.Fatalf("an unknown answer: %d", st)
	}
}
