// Tests of the billing pages driven over HTTP as a browser would: the
// billing portal, the hosted checkout page for subscriptions, the hosted
// invoice page, and the dev clock endpoint with webhooks on the real clock.

package stripeemu_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// page GETs a URL and returns its status and body.
func (f *fixture) page(u string) (int, string) {
	f.t.Helper()
	res, err := f.browser().Get(u)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// post submits a form and returns the status and Location.
func (f *fixture) post(path string, form url.Values) (int, string) {
	f.t.Helper()
	res, err := f.browser().PostForm(f.srv.URL+path, form)
	if err != nil {
		f.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Location")
}

func TestBillingPortalFlows(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	monthly := f.recurringPrice(prod.ID, 1000, "month", "")
	premium := f.recurringPrice(prod.ID, 2000, "month", "")
	yearly := f.recurringPrice(prod.ID, 10000, "year", "")
	other := f.recurringPrice(f.product("Other").ID, 500, "month", "")
	sub := f.subscribe(monthly.ID, "ada@example.com")
	stranger := f.subscribe(monthly.ID, "bo@example.com")

	ps, err := f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(sub.Customer.ID),
		ReturnURL: stripe.String("https://app.example/account")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ps.ID, "bps_") || !strings.HasPrefix(ps.URL, f.srv.URL+"/billing/p/session/") || ps.Customer != sub.Customer.ID ||
		ps.ReturnURL != "https://app.example/account" || !strings.HasPrefix(ps.Configuration.ID, "bpc_") || ps.Object != "billing_portal.session" {
		t.Fatalf("portal session = %+v", ps)
	}
	code, body := f.page(ps.URL)
	for _, want := range []string{"ada@example.com", "Pro · €10.00 / month", "Cancel subscription", `value="` + premium.ID + `"`,
		`value="` + yearly.ID + `"`, `href="https://app.example/account"`, `id="card">working`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("portal page (%d) lacks %q:\n%s", code, want, body)
		}
	}
	if strings.Contains(body, other.ID) || strings.Contains(body, stranger.ID) {
		t.Fatal("portal page offers another product's price or shows another customer's subscription")
	}
	act := func(action string, form url.Values) int {
		t.Helper()
		code, loc := f.post("/billing/p/session/"+ps.ID+"/"+action, form)
		if code == http.StatusSeeOther && loc != "/billing/p/session/"+ps.ID {
			t.Fatalf("%s redirected to %q", action, loc)
		}
		return code
	}
	subForm := url.Values{"subscription": {sub.ID}}

	if code := act("cancel", subForm); code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	if s := f.sub(sub.ID); !s.CancelAtPeriodEnd || s.Status != stripe.SubscriptionStatusActive {
		t.Fatalf("portal cancel: %+v", s)
	}
	if _, body := f.page(ps.URL); !strings.Contains(body, "Renew subscription") || !strings.Contains(body, "Cancels on Apr 1, 2024") {
		t.Fatalf("canceling page:\n%s", body)
	}
	if code := act("renew", subForm); code != http.StatusSeeOther || f.sub(sub.ID).CancelAtPeriodEnd {
		t.Fatalf("renew: %d", code)
	}
	switchTo := url.Values{"subscription": {sub.ID}, "price": {premium.ID}}
	if code := act("switch", switchTo); code != http.StatusSeeOther {
		t.Fatalf("switch: %d", code)
	}
	if s := f.sub(sub.ID); s.Items.Data[0].Price.ID != premium.ID || s.Items.Data[0].ID != sub.Items.Data[0].ID {
		t.Fatalf("switched to %s", s.Items.Data[0].Price.ID)
	}
	if code := act("switch", url.Values{"subscription": {sub.ID}, "price": {other.ID}}); code != http.StatusBadRequest {
		t.Fatalf("switch to another product: %d", code)
	}
	if code := act("cancel", url.Values{"subscription": {stranger.ID}}); code != http.StatusNotFound || f.sub(stranger.ID).CancelAtPeriodEnd {
		t.Fatalf("cancel of another customer's subscription: %d", code)
	}
	if code := act("explode", subForm); code != http.StatusNotFound {
		t.Fatalf("unknown action: %d", code)
	}

	// The card toggle drives renewals: declining fails the next one.
	if code := act("card", url.Values{"card": {"declining"}}); code != http.StatusSeeOther {
		t.Fatalf("card: %d", code)
	}
	if _, body := f.page(ps.URL); !strings.Contains(body, `id="card">declining`) {
		t.Fatal("card state not shown")
	}
	f.advanceTo(start.AddDate(0, 1, 0).Add(2 * time.Hour))
	if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusPastDue {
		t.Fatalf("renewal with a declining card: %s", s.Status)
	}
	act("card", url.Values{"card": {"working"}})
	f.advance(4 * day)
	if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusActive {
		t.Fatalf("retry after a working card: %s", s.Status)
	}

	if code, _ := f.page(f.srv.URL + "/billing/p/session/bps_nope"); code != http.StatusNotFound {
		t.Fatalf("missing portal session: %d", code)
	}
	_, err = f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String("cus_nope")})
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "customer")
	_, err = f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(sub.Customer.ID), ReturnURL: stripe.String("javascript:alert(1)")})
	stripeErr(t, err, 400, "", "return_url")
	_, err = f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{})
	stripeErr(t, err, 400, stripe.ErrorCodeParameterMissing, "customer")
}

func TestHostedPagesForSubscriptions(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	trial := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.PaymentMethodCollection = stripe.String("if_required")
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(14)}
	})
	code, body := f.page(trial.URL)
	for _, want := range []string{"14 days free", "Then €29.00 every month", `name="decline"`, `name="nocard"`, "€0.00"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("trial checkout page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `name="async"`) {
		t.Fatal("subscription page offers async payment")
	}

	s := f.subSession(pr.ID)
	if code, _ := f.post("/checkout/"+s.ID+"/pay", url.Values{"email": {"ada@example.com"}, "decline": {"1"}}); code != http.StatusPaymentRequired {
		t.Fatalf("declined pay: %d", code)
	}
	code, loc := f.post("/checkout/"+s.ID+"/pay", url.Values{"email": {"ada@example.com"}})
	if code != http.StatusSeeOther || loc != "https://shop.example/done?cs="+s.ID {
		t.Fatalf("pay: %d %q", code, loc)
	}
	cs, _ := f.emu.Session(s.ID)
	sub := f.sub(cs.Subscription.ID)
	if sub.Status != stripe.SubscriptionStatusActive {
		t.Fatalf("paid from the page: %s", sub.Status)
	}

	// A failed renewal is paid from its hosted invoice page.
	if err := f.emu.FailPayments(sub.Customer.ID, true); err != nil {
		t.Fatal(err)
	}
	f.advanceTo(start.AddDate(0, 1, 0).Add(2 * time.Hour))
	inv := f.sub(sub.ID).LatestInvoice
	if inv.Status != stripe.InvoiceStatusOpen || !strings.HasPrefix(inv.HostedInvoiceURL, f.srv.URL+"/invoice/") {
		t.Fatalf("failed renewal: %s %q", inv.Status, inv.HostedInvoiceURL)
	}
	code, body = f.page(inv.HostedInvoiceURL)
	if code != 200 || !strings.Contains(body, "Pay €29.00") || !strings.Contains(body, inv.Number) || !strings.Contains(body, `id="status">open`) {
		t.Fatalf("invoice page (%d):\n%s", code, body)
	}
	if code, _ := f.post("/invoice/"+inv.ID+"/pay", nil); code != http.StatusPaymentRequired {
		t.Fatalf("pay with the declining card: %d", code)
	}
	if code, loc := f.post("/invoice/"+inv.ID+"/pay", url.Values{"new_card": {"1"}}); code != http.StatusSeeOther || loc != "/invoice/"+inv.ID {
		t.Fatalf("pay with a new card: %d %q", code, loc)
	}
	got := f.sub(sub.ID)
	if got.Status != stripe.SubscriptionStatusActive || got.LatestInvoice.Status != stripe.InvoiceStatusPaid || got.LatestInvoice.AttemptCount != 3 {
		t.Fatalf("after paying the page: %s / %s (%d attempts)", got.Status, got.LatestInvoice.Status, got.LatestInvoice.AttemptCount)
	}
	if _, body := f.page(inv.HostedInvoiceURL); strings.Contains(body, "<form") {
		t.Fatal("a paid invoice still offers to pay")
	}
	if code, _ := f.page(f.srv.URL + "/invoice/in_nope"); code != http.StatusNotFound {
		t.Fatalf("missing invoice page: %d", code)
	}
}

// TestDevClockEndpoint advances the emulator's own clock over HTTP, as a
// developer on the wall clock does: renewals happen at their times, and
// webhooks stay signed on the real clock so a receiver accepts them.
func TestDevClockEndpoint(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	f := newFixture(t, func(o *stripeemu.Options) { o.WebhookURL, o.WebhookSecret = rcv.srv.URL, secret })
	now := time.Now().UTC().Truncate(time.Second)
	f.clk.Set(now)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")

	res, err := f.srv.Client().Post(f.srv.URL+"/_emulator/advance?seconds="+strconv.Itoa(40*24*3600), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Now    int64 `json:"now"`
		Offset int64 `json:"offset_seconds"`
	}
	err = json.NewDecoder(res.Body).Decode(&c)
	res.Body.Close()
	if err != nil || c.Now != now.Add(40*day).Unix() || c.Offset != 40*24*3600 || !f.emu.Now().Equal(now.Add(40*day)) {
		t.Fatalf("advance answered %+v, %v", c, err)
	}
	renewal := now.AddDate(0, 1, 0)
	got := f.sub(sub.ID)
	if got.LatestInvoice.Created != renewal.Unix() || got.LatestInvoice.Status != stripe.InvoiceStatusPaid || got.CurrentPeriodStart != renewal.Unix() {
		t.Fatalf("renewal after advance: created %d (want %d), %s", got.LatestInvoice.Created, renewal.Unix(), got.LatestInvoice.Status)
	}
	flush(t, f.emu)
	evs, headers, bad := rcv.got()
	if len(bad) != 0 || len(evs) != len(f.emu.Events()) {
		t.Fatalf("%d delivered, %d rejected, %d recorded", len(evs), len(bad), len(f.emu.Events()))
	}
	last := headers[len(headers)-1]
	if !strings.HasPrefix(last, "t="+strconv.FormatInt(now.Unix(), 10)+",") || evs[len(evs)-1].Created < renewal.Unix() {
		t.Fatalf("renewal webhook signed %q, created %d", last, evs[len(evs)-1].Created)
	}
	for _, bad := range []string{"-5", "x", ""} {
		res, err := f.srv.Client().Post(f.srv.URL+"/_emulator/advance?seconds="+bad, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("advance by %q: %d", bad, res.StatusCode)
		}
	}
	if code, body := f.page(f.srv.URL + "/_emulator/clock"); code != 200 || !strings.Contains(body, strconv.FormatInt(c.Now, 10)) {
		t.Fatalf("clock: %d %s", code, body)
	}
	if got := f.emu.Advance(day); !got.Equal(now.Add(41 * day)) {
		t.Fatalf("Advance = %s", got)
	}
}

// TestSubscriptionEventsAreWebhooks delivers the billing events through the
// signed webhook sender, with its drop rate: what arrives verifies and is a
// subset of what was recorded, in order.
func TestSubscriptionEventsAreWebhooks(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	f := newFixture(t, func(o *stripeemu.Options) { o.WebhookURL, o.WebhookSecret, o.DropRate = rcv.srv.URL, secret, 0.3 })
	now := time.Now().UTC().Truncate(time.Second)
	f.clk.Set(now)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	for i := range 5 {
		f.subscribe(pr.ID, "u"+strconv.Itoa(i)+"@example.com")
	}
	f.emu.Advance(95 * day)
	flush(t, f.emu)
	got, _, bad := rcv.got()
	recorded := f.emu.Events()
	if len(bad) != 0 || len(got) == 0 || len(got) >= len(recorded) {
		t.Fatalf("%d delivered of %d recorded, %d rejected", len(got), len(recorded), len(bad))
	}
	j := 0
	for _, ev := range got {
		for j < len(recorded) && recorded[j].ID != ev.ID {
			j++
		}
		if j == len(recorded) {
			t.Fatalf("delivered %s (%s) out of order or never recorded", ev.ID, ev.Type)
		}
	}
}
