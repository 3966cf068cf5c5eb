package fulfillment_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// paidAt sets a purchase's payment time (Stripe's), as a backfill records it.
func paidAt(at time.Time) func(*store.Purchase) {
	return func(p *store.Purchase) { p.CompletedAt, p.CreatedAt = &at, at.Add(-10*time.Minute) }
}

func TestOldPaymentIsFulfilledWithoutEmailAndSkipsPastFollowups(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	old := h.complete(buy{username: "octocat", edit: paidAt(t0.Add(-10 * day))})
	recent := h.complete(buy{email: "bea@example.com", username: "bea", edit: paidAt(t0.Add(-80 * time.Hour))})
	h.run()

	if m := h.mails(""); len(m) != 0 {
		t.Fatalf("emails about payments older than the notify window: %v", h.categories())
	}
	for _, p := range []store.Purchase{old, recent} {
		if got := h.reload(p); got.AccessState != store.AccessGranted {
			t.Errorf("purchase %s: access %s, want granted", p.ID, got.AccessState)
		}
	}
	if invs := h.gh.Invitations(); len(invs) != 2 {
		t.Errorf("invitations = %+v, want both buyers invited", invs)
	}
	if n := len(h.stepsNamed(old, mail.FollowupOnboarding)); n != 0 {
		t.Errorf("the day-7 follow-up of a ten-day-old payment was scheduled")
	}

	// The follow-ups still ahead are sent when due, one at a time.
	h.at(4*day - time.Minute)
	if n := len(h.mails("")); n != 1 {
		t.Fatalf("%d emails before day 14 of the old payment, want bea's day-7 follow-up: %v", n, h.categories())
	}
	h.oneMail(mail.FollowupOnboarding, "bea@example.com")
	h.at(4 * day)
	h.oneMail(mail.FollowupFeedback, buyerEmail)
	h.at(60 * day)
	h.oneMail(mail.FollowupTestimonial, buyerEmail)
	if n := len(h.mails("")); n != 5 {
		t.Errorf("%d emails in all, want 5 follow-ups: %v", n, h.categories())
	}
}

func TestOldRefundRevokesWithoutEmail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat", edit: paidAt(t0.Add(-20 * day))})
	h.run()
	h.refundAt(p, "re_old", 19900, t0.Add(-5*day))
	h.run()
	if m := h.mails(""); len(m) != 0 {
		t.Errorf("emails about an old payment and refund: %v", h.categories())
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked || len(h.gh.Invitations()) != 0 {
		t.Errorf("access = %s with invitations %+v, want revoked", got.AccessState, h.gh.Invitations())
	}
}

func TestQuietSendsNoCustomerEmail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{quiet: true})
	p := h.complete(buy{username: "octocat"})
	hook := h.complete(buy{email: "bea@example.com", product: "api"})
	h.run()
	h.expire(checkout{email: "cy@example.com"})
	h.tx(func(q *store.Queries) error {
		failed := h.insert(buy{email: "dee@example.com"}, store.PurchaseFailed)
		return h.ful.PaymentFailed(h.ctx, q, failed)
	})
	h.at(60 * day)
	h.refund(p, "re_1", 19900)
	h.refund(hook, "re_2", 5000)
	h.run()

	for _, m := range h.mails("") {
		if m.To != adminEmail {
			t.Errorf("quiet mode sent %s to %s", m.Category, m.To)
		}
	}
	if n := len(h.mails(mail.AdminPurchase)); n != 2 {
		t.Errorf("%d admin sale emails, want 2", n)
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access after the refund = %s, want revoked", got.AccessState)
	}
	if got := h.reload(hook); got.AccessState != store.AccessGranted || len(h.hook.deliveries()) != 2 {
		t.Errorf("webhook product: access %s, %d deliveries; want granted and told of the partial refund",
			got.AccessState, len(h.hook.deliveries()))
	}
}

func TestRecoveryIsAnchoredWhereTheSessionExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	// Created an hour ago to expire in 23 hours, expired early at t0
	// (through the API or the Dashboard).
	p := h.insert(buy{edit: func(p *store.Purchase) {
		expires, expired := t0.Add(23*time.Hour), t0
		p.SessionExpiresAt, p.ExpiredAt, p.CreatedAt = &expires, &expired, t0.Add(-time.Hour)
	}}, store.PurchaseExpired)
	h.tx(func(q *store.Queries) error { return h.ful.Expired(h.ctx, q, p) })

	h.at(59 * time.Minute)
	if n := len(h.mails(mail.AbandonedCheckout)); n != 0 {
		t.Fatalf("recovery email before the delay")
	}
	h.at(time.Hour)
	h.oneMail(mail.AbandonedCheckout, buyerEmail)
}

func TestNoRecoveryForAnExpiryOlderThanADay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.insert(buy{edit: func(p *store.Purchase) {
		expired := t0.Add(-25 * time.Hour)
		p.SessionExpiresAt, p.ExpiredAt, p.CreatedAt = &expired, &expired, t0.Add(-49*time.Hour)
	}}, store.PurchaseExpired)
	h.tx(func(q *store.Queries) error { return h.ful.Expired(h.ctx, q, p) })
	h.at(3 * day)
	if n := len(h.stepsNamed(p, fulfillment.StepAbandoned)); n != 0 {
		t.Errorf("%d recovery steps for a day-old expiry", n)
	}
	if n := len(h.mails("")); n != 0 {
		t.Errorf("emails: %v", h.categories())
	}
}

// invited returns the logins a PUT collaborator request (an invitation)
// was ever sent for, in order.
func (h *harness) invited() []string {
	var out []string
	for _, r := range h.gh.Requests() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/collaborators/") {
			out = append(out, r.Path[strings.LastIndex(r.Path, "/")+1:])
		}
	}
	return out
}

// A backfill over a history in which one paid session was refunded in full
// and another lost its dispute, both long before the backfill: the walk
// records every paid session in its sessions phase and only later reads the
// refunds and disputes. The engine runs meanwhile (here: the walk stops
// after its sessions, the refunds list failing, and the steps due run), and
// must not invite the refunded or disputed buyers; once the walk resumes and
// ends, only the buyer still entitled is invited.
func TestBackfillInvitesNoBuyerRefundedOrDisputedBefore(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := newEmulated(h, h.ful, "pro", 19900)
	start := h.clk.Now()
	pay := func(login string) (purchaseID, paymentIntent string) {
		user := "u_" + login
		h.gh.AddUser(login)
		if err := h.db.UpsertAccount(h.ctx, user, login+"@example.com", login, start); err != nil {
			t.Fatal(err)
		}
		purchaseID = uuid.NewString()
		s, err := w.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: w.price}},
			CustomerEmail: login + "@example.com", SuccessURL: "http://x/ok", CancelURL: "http://x/no",
			Metadata: map[string]string{"user_id": user, "product": "pro", "purchase_id": purchaseID}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
			t.Fatal(err)
		}
		paid, err := w.emu.Session(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		return purchaseID, paid.PaymentIntent.ID
	}
	kept, _ := pay("kay")
	refunded, refundedPI := pay("rey")
	disputed, disputedPI := pay("dee")
	h.clk.Advance(time.Hour)
	if _, err := w.emu.Refund(refundedPI, 19900); err != nil {
		t.Fatal(err)
	}
	dp, err := w.emu.OpenDispute(disputedPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.emu.CloseDispute(dp, false); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(10 * day) // every payment is older than the notify window

	// The walk records the three sessions, then stops: the refunds list
	// fails. The engine runs what is due meanwhile.
	w.emu.FailPath("/v1/refunds", 0, 1000, http.StatusInternalServerError)
	backfill := reconcile.PassOptions{Lists: true, Since: start.Add(-time.Hour)}
	if rep, err := w.rec.RunPass(h.ctx, "backfill", backfill); err == nil && rep.Converged() {
		t.Fatalf("the walk went past a failing refunds list: %+v", rep)
	}
	h.run()
	if got := h.invited(); len(got) != 0 {
		t.Errorf("invitations sent before the walk read the refunds and disputes: %v", got)
	}

	// The next pass resumes the walk and ends it.
	w.emu.FailPath("", 0, 0, 0)
	h.clk.Advance(time.Minute)
	if rep, err := w.rec.RunPass(h.ctx, "backfill", backfill); err != nil || !rep.Converged() {
		t.Fatalf("resumed walk: %v %+v", err, rep)
	}
	h.run()
	if got := h.invited(); !slices.Equal(got, []string{"kay"}) {
		t.Errorf("invitations = %v, want only kay's", got)
	}
	for id, want := range map[string]store.AccessState{kept: store.AccessGranted, refunded: store.AccessNone,
		disputed: store.AccessNone} {
		p, err := h.db.GetPurchase(h.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.AccessState != want && !(want == store.AccessNone && p.AccessState == store.AccessRevoked) {
			t.Errorf("purchase %s (%s): access %s, want %s", id, p.Status, p.AccessState, want)
		}
	}
	for _, m := range h.mails("") {
		if m.To != adminEmail {
			t.Errorf("%s emailed to %s about a payment older than the notify window", m.Category, m.To)
		}
	}
}
