package fulfillment_test

import (
	"strconv"
	"testing"

	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// payLink pays a Payment Link session for the emulator's product as email
// (a session without paymentd's metadata, so without a user), has the
// reconciler record it as a webhook hint would, runs what is due, and
// returns the session id and the purchase.
func (e *emulated) payLink(h *harness, email string) (string, store.Purchase) {
	h.t.Helper()
	s, err := e.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: e.price}},
		CustomerEmail: email, PaymentLink: "plink_test_1", SuccessURL: "http://app.test/ok", CancelURL: "http://app.test/pricing"})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := e.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		h.t.Fatal(err)
	}
	if err := e.rec.Object(h.ctx, s.ID, reconcile.NewReport(false)); err != nil {
		h.t.Fatal(err)
	}
	h.run()
	p, err := h.db.PurchaseBySession(h.ctx, s.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return s.ID, p
}

// claim claims session sid as the verified user with buyerEmail, then runs
// what is due.
func (e *emulated) claim(h *harness, sid, userID string) reconcile.ClaimResult {
	h.t.Helper()
	res, err := e.rec.Claim(h.ctx, sid, reconcile.Claimant{UserID: userID, Email: buyerEmail, EmailVerified: true})
	if err != nil {
		h.t.Fatalf("claim %s as %s: %v", sid, userID, err)
	}
	h.run()
	return res
}

// Acceptance, end to end through the emulator and the reconciler: a
// GitHub product bought through a Payment Link is recorded completed before
// its buyer claims it (the webhook wins the race with the browser), so at
// completion nobody is known to grant to. The claim makes the buyer's
// account, and its GitHub username, known: access is granted then, once,
// however often the buyer claims.
func TestClaimAfterCompletionGrantsTheAccountsGitHubAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	e := newEmulated(h, h.ful, "pro", 19900)
	if err := h.db.UpsertAccount(h.ctx, "u-ada", buyerEmail, "octocat", h.clk.Now()); err != nil {
		t.Fatal(err)
	}

	sid, p := e.payLink(h, buyerEmail)
	if p.Status != store.PurchaseCompleted || p.UserID != nil {
		t.Fatalf("before the claim: %s, user %v; want completed without a user", p.Status, p.UserID)
	}
	if n := len(h.stepsNamed(p, fulfillment.StepGrantAccess)); n != 0 || len(h.gh.Invitations()) != 0 {
		t.Fatalf("before the claim: %d grant steps, invitations %+v; want none", n, h.gh.Invitations())
	}

	if res := e.claim(h, sid, "u-ada"); !res.AlreadyClaimed {
		t.Errorf("claim of a purchase recorded completed: %+v, want already claimed", res)
	}
	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Fatalf("after the claim: invitations %+v, want one for octocat", invs)
	}
	got := h.reload(p)
	if got.UserID == nil || *got.UserID != "u-ada" || got.AccessState != store.AccessGranted ||
		got.GitHubUsername == nil || *got.GitHubUsername != "octocat" {
		t.Errorf("after the claim: user %v, access %s to %v; want u-ada's, granted to octocat",
			got.UserID, got.AccessState, got.GitHubUsername)
	}
	wantContains(t, "access email", h.oneMail(mail.AccessGranted, buyerEmail).Text, repoURL)

	// The success page reloaded: claimed again, nothing new.
	before, err := h.db.PurchaseSteps(h.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.claim(h, sid, "u-ada")
	after, err := h.db.PurchaseSteps(h.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || len(h.stepsNamed(p, fulfillment.StepGrantAccess)) != 1 {
		t.Errorf("a second claim: %d steps (was %d), %d grant steps; want nothing new",
			len(after), len(before), len(h.stepsNamed(p, fulfillment.StepGrantAccess)))
	}
	if invs := h.gh.Invitations(); len(invs) != 1 || len(h.mails(mail.AccessGranted)) != 1 {
		t.Errorf("a second claim: invitations %+v, %d access emails; want one each", invs, len(h.mails(mail.AccessGranted)))
	}
}

// What a claim that attaches a user to a completed purchase schedules, by
// purchase: only a GitHub purchase that had nobody to grant to gets a
// grant, to the account's username; one that named its own login keeps
// it, and nothing else changes.
func TestClaimedSchedulesOnlyTheAccessCompletionCouldNotGrant(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		name    string
		b       buy
		status  store.PurchaseStatus
		login   string // the account's GitHub username
		grants  int    // grant_access steps after the claim
		invitee string // the invitation sent, if any
	}{
		{name: "github, no username", b: buy{}, status: store.PurchaseCompleted, login: "octocat", grants: 1, invitee: "octocat"},
		{name: "github, partially refunded", b: buy{}, status: store.PurchasePartiallyRefunded, login: "monalisa", grants: 1, invitee: "monalisa"},
		{name: "github, its own username", b: buy{username: "hubot"}, status: store.PurchaseCompleted, login: "defunkt", grants: 1, invitee: "hubot"},
		{name: "github, no username anywhere", b: buy{}, status: store.PurchaseCompleted},
		{name: "github, refunded", b: buy{}, status: store.PurchaseRefunded, login: "mojombo"},
		{name: "webhook", b: buy{product: "api"}, status: store.PurchaseCompleted, login: "pjhyett", grants: 1},
		{name: "no access", b: buy{product: "ebook", amount: 1900}, status: store.PurchaseCompleted, login: "wycats"},
	}
	ps := make([]store.Purchase, len(cases))
	for i, c := range cases {
		ps[i] = h.insert(c.b, c.status)
		h.tx(func(q *store.Queries) error { return h.ful.Completed(h.ctx, q, ps[i:i+1], false) })
	}
	h.run()
	for i, c := range cases {
		user := "u-" + strconv.Itoa(i)
		if err := h.db.UpsertAccount(h.ctx, user, buyerEmail, c.login, h.clk.Now()); err != nil {
			t.Fatal(err)
		}
		for range 2 { // a second call schedules nothing new
			h.tx(func(q *store.Queries) error {
				p, err := q.LockPurchase(h.ctx, ps[i].ID)
				if err != nil {
					return err
				}
				p.UserID = &user
				if err := q.UpdatePurchase(h.ctx, p, h.clk.Now()); err != nil {
					return err
				}
				return h.ful.Claimed(h.ctx, q, p)
			})
		}
	}
	h.run()
	invited := map[string]bool{}
	for _, inv := range h.gh.Invitations() {
		invited[inv.Invitee] = true
	}
	for i, c := range cases {
		if n := len(h.stepsNamed(ps[i], fulfillment.StepGrantAccess)); n != c.grants {
			t.Errorf("%s: %d grant steps, want %d", c.name, n, c.grants)
		}
		if c.invitee != "" && !invited[c.invitee] {
			t.Errorf("%s: no invitation for %s", c.name, c.invitee)
		}
		if c.login != "" && c.login != c.invitee && invited[c.login] {
			t.Errorf("%s: the account's %s was invited", c.name, c.login)
		}
	}
	if invs := h.gh.Invitations(); len(invs) != 3 {
		t.Errorf("invitations %+v, want three", invs)
	}
}
