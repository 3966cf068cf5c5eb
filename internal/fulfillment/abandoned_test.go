package fulfillment_test

import (
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
)

// checkout describes an expired checkout for expire.
type checkout struct {
	noEmail         bool
	email           string
	consentRequired bool
	consent         *bool
	recoveryURL     string
}

// expire records a checkout that expired at t0 (started a day before) and
// schedules its recovery email.
func (h *harness) expire(c checkout) store.Purchase {
	h.t.Helper()
	saved := h.clk.Now()
	h.clk.Set(t0.Add(-day))
	p := h.insert(buy{noEmail: c.noEmail, email: c.email, edit: func(p *store.Purchase) {
		expires := t0
		p.SessionExpiresAt = &expires
		p.ConsentRequired = c.consentRequired
		p.PromotionsConsent = c.consent
		if c.recoveryURL != "" {
			p.RecoveryURL = &c.recoveryURL
		}
	}}, store.PurchaseExpired)
	h.clk.Set(saved)
	h.tx(func(q *store.Queries) error { return h.ful.Expired(h.ctx, q, p) })
	return p
}

func TestAbandonedCheckoutIsSentAfterTheDelayOnlyOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.expire(checkout{recoveryURL: "https://checkout.stripe.com/c/pay/cs_recover"})
	h.expire(checkout{email: "bea@example.com"})
	h.tx(func(q *store.Queries) error { return h.ful.Expired(h.ctx, q, p) }) // a second signal
	if n := len(h.stepsNamed(p, fulfillment.StepAbandoned)); n != 1 {
		t.Fatalf("%d abandoned-checkout steps after two signals, want 1", n)
	}

	h.at(59 * time.Minute)
	if n := len(h.mails(mail.AbandonedCheckout)); n != 0 {
		t.Fatalf("%d recovery emails before the delay", n)
	}
	h.at(time.Hour)
	m := h.oneMail(mail.AbandonedCheckout, buyerEmail)
	wantContains(t, "recovery email", m.Text, "https://checkout.stripe.com/c/pay/cs_recover", "/unsubscribe?")
	wantContains(t, "recovery email without a recovery link", h.oneMail(mail.AbandonedCheckout, "bea@example.com").Text, pricingURL)

	h.tx(func(q *store.Queries) error { return h.ful.Expired(h.ctx, q, p) }) // a late signal
	h.at(3 * day)
	if n := len(h.mails(mail.AbandonedCheckout)); n != 2 {
		t.Errorf("%d recovery emails in all, want 2", n)
	}
}

func TestAbandonedCheckoutIsSkipped(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	for _, tc := range []struct {
		name      string
		configure func(*config.Config)
		checkout  checkout
		before    func(h *harness)
		want      string // the recorded reason
	}{
		{name: "when the same email bought since", checkout: checkout{},
			before: func(h *harness) {
				h.clk.Set(t0.Add(30 * time.Minute))
				h.complete(buy{email: "ADA@example.com", product: "ebook"})
			},
			want: "the buyer completed a purchase since"},
		{name: "without an email", checkout: checkout{noEmail: true}, want: "the checkout has no email address"},
		{name: "when consent was required and not given", checkout: checkout{consentRequired: true},
			want: "no consent to promotional email"},
		{name: "when consent was required and refused", checkout: checkout{consentRequired: true, consent: &no},
			want: "no consent to promotional email"},
		{name: "when the configuration requires consent", checkout: checkout{},
			configure: func(c *config.Config) { c.Fulfillment.AbandonedRequiresConsent = true },
			want:      "no consent to promotional email"},
		{name: "when the address unsubscribed", checkout: checkout{consentRequired: true, consent: &yes},
			before: func(h *harness) {
				if err := h.db.Unsubscribe(h.ctx, buyerEmail, h.clk.Now()); err != nil {
					h.t.Fatal(err)
				}
			},
			want: "the address unsubscribed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{configure: tc.configure})
			p := h.expire(tc.checkout)
			if tc.before != nil {
				tc.before(h)
			}
			h.at(2 * time.Hour)
			s := h.step(p, fulfillment.PipelineAbandoned, fulfillment.StepAbandoned)
			if r := result[skipped](t, s); s.Status != store.StepDone || r.Sent || r.Skipped != tc.want {
				t.Errorf("step = %s %s, want done with %q", s.Status, s.Result, tc.want)
			}
			if n := len(h.mails(mail.AbandonedCheckout)); n != 0 {
				t.Errorf("%d recovery emails sent", n)
			}
		})
	}
}

func TestAbandonedCheckoutWithRequiredConsentGiven(t *testing.T) {
	t.Parallel()
	yes := true
	h := newHarness(t, harnessOptions{configure: func(c *config.Config) { c.Fulfillment.AbandonedRequiresConsent = true }})
	h.expire(checkout{consent: &yes})
	h.at(time.Hour)
	h.oneMail(mail.AbandonedCheckout, buyerEmail)
}
