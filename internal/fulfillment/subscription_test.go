package fulfillment_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// The reconciler hands subscription changes to a Fulfillment.
var _ reconcile.SubscriptionFulfillment = (*fulfillment.Fulfillment)(nil)

// withSubscriptions adds subscription products to the test catalog: one
// delivered through GitHub, one through the webhook.
func withSubscriptions(cfg *config.Config) {
	prices := func(prefix string) []config.Price {
		return []config.Price{{Key: prefix + "_monthly", Interval: "month", Amount: 2900, Currency: "usd"},
			{Key: prefix + "_yearly", Interval: "year", Amount: 29000, Currency: "usd"}}
	}
	cfg.Products = append(cfg.Products,
		config.Product{Key: "cloud", Name: "Acme Cloud", Mode: config.ModeSubscription, Access: "github", Prices: prices("cloud")},
		config.Product{Key: "hosted", Name: "Acme Hosted", Mode: config.ModeSubscription, Access: "webhook", Prices: prices("hosted")})
}

func newSubscriptionHarness(t *testing.T) *harness {
	h := newHarness(t, harnessOptions{configure: withSubscriptions})
	h.ful.RegisterSubscriptions()
	return h
}

// subscribe records an active monthly subscription of product for user
// (with an account holding email and GitHub username).
func (h *harness) subscribe(product, user, username string) store.Subscription {
	h.t.Helper()
	now := h.clk.Now()
	if err := h.db.UpsertAccount(h.ctx, user, buyerEmail, username, now); err != nil {
		h.t.Fatal(err)
	}
	email, org := buyerEmail, "org_42"
	s := store.Subscription{ID: uuid.NewString(), StripeSubscriptionID: "sub_" + uuid.NewString()[:8], UserID: &user,
		OrganizationID: &org, StripeCustomerID: "cus_1", CustomerEmail: &email, ProductKey: product,
		PriceKey: product + "_monthly", StripePriceID: "price_m", Status: store.SubscriptionActive, Quantity: 1,
		Amount: 2900, Currency: "usd", Interval: "month", IntervalCount: 1, CurrentPeriodStart: now,
		CurrentPeriodEnd: now.AddDate(0, 1, 0), StartedAt: &now, Entitled: true, AccessState: store.AccessNone,
		CreatedAt: now, UpdatedAt: now}
	if _, err := h.db.InsertSubscription(h.ctx, s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// change records s as the reconciler would and hands c to the Fulfillment
// in the same transaction.
func (h *harness) change(s store.Subscription, c reconcile.SubscriptionChange) {
	h.t.Helper()
	c.Subscription = s
	h.tx(func(q *store.Queries) error {
		if _, err := q.LockSubscription(h.ctx, s.ID); err != nil {
			return err
		}
		if err := q.UpdateSubscription(h.ctx, s, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.SubscriptionsChanged(h.ctx, q, []reconcile.SubscriptionChange{c})
	})
}

func (h *harness) invoice(s store.Subscription, id string, status store.InvoiceStatus, paid int64) {
	h.t.Helper()
	num, url := "ACME-"+id, "https://invoice.test/"+id
	inv := store.Invoice{ID: id, SubscriptionID: s.ID, Status: status, BillingReason: "subscription_cycle", Number: &num,
		Currency: "usd", AmountDue: 2900, AmountPaid: paid, AmountRemaining: 2900 - paid, HostedInvoiceURL: &url,
		AttemptCount: 1, CreatedAt: h.clk.Now()}
	if status == store.InvoicePaid {
		now := h.clk.Now()
		inv.PaidAt = &now
	}
	if err := h.db.UpsertInvoices(h.ctx, []store.Invoice{inv}, h.clk.Now()); err != nil {
		h.t.Fatal(err)
	}
}

// TestSubscriptionEmailsEachOncePerCause: the welcome and its admin copy,
// a receipt with the invoice's number, amount and link, a failure email
// and its reminder, which is not sent once the invoice is paid; a trial
// reminder for a trial end that moved is not sent; a change handed over
// twice emails once; later emails go to the account's new address.
func TestSubscriptionEmailsEachOncePerCause(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	s := h.subscribe("cloud", "user-1", "")
	now := h.clk.Now()
	h.invoice(s, "in_1", store.InvoicePaid, 2900)
	started := reconcile.SubscriptionChange{Cause: "sub:1", Emails: []reconcile.SubscriptionEmail{
		{Template: mail.SubscriptionStarted, Cause: "started", At: now},
		{Template: mail.SubscriptionStarted, Cause: "started:admin", At: now, Admin: true},
		{Template: mail.InvoiceReceipt, Cause: "invoice_receipt:in_1", At: now, InvoiceID: "in_1"}}}
	h.change(s, started)
	h.change(s, started) // handed over again: scheduled once
	h.run()
	h.oneMail(mail.SubscriptionStarted, buyerEmail)
	h.oneMail(mail.AdminSubscriptionStarted, adminEmail)
	receipt := h.oneMail(mail.InvoiceReceipt, buyerEmail)
	wantContains(t, "receipt", receipt.Text, "ACME-in_1", "$29.00", "https://invoice.test/in_1", "Monthly")

	// A failed renewal: the failure now, the reminder in 3 days unless paid.
	h.invoice(s, "in_2", store.InvoiceOpen, 0)
	h.invoice(s, "in_3", store.InvoiceOpen, 0)
	for _, id := range []string{"in_2", "in_3"} {
		h.change(s, reconcile.SubscriptionChange{Cause: "sub:" + id, Emails: []reconcile.SubscriptionEmail{
			{Template: mail.PaymentFailed, Cause: "payment_failed:" + id, At: now, InvoiceID: id},
			{Template: mail.PaymentReminder, Cause: "payment_reminder:" + id, At: now.Add(3 * day), Tag: "dunning:" + id,
				InvoiceID: id}}})
	}
	h.run()
	if n := len(h.mails(mail.PaymentFailed)); n != 2 {
		t.Fatalf("%d payment_failed emails, want one per invoice", n)
	}
	h.invoice(s, "in_2", store.InvoicePaid, 2900) // paid on a retry, its reminder not canceled (a late signal)
	if _, err := h.db.SetCustomerContact(h.ctx, "cus_1", "ada@new.example", "Ada", now); err != nil {
		t.Fatal(err)
	}
	h.advance(3*day + time.Minute)
	if got := h.mails(mail.PaymentReminder); len(got) != 1 || got[0].To != "ada@new.example" {
		t.Fatalf("reminders %v: want one, for the invoice still unpaid, to the new address", h.categories())
	}

	// A trial whose end moved: the old reminder sends nothing.
	trialEnd := now.Add(10 * day)
	s.Status, s.TrialEnd = store.SubscriptionTrialing, &trialEnd
	h.change(s, reconcile.SubscriptionChange{Cause: "sub:t", Emails: []reconcile.SubscriptionEmail{
		{Template: mail.TrialEnding, Cause: "trial_ending:old", At: h.clk.Now(), TrialEnd: &trialEnd, Tag: "trial_ending"}}})
	moved := trialEnd.Add(48 * time.Hour)
	s.TrialEnd = &moved
	h.tx(func(q *store.Queries) error { return q.UpdateSubscription(h.ctx, s, h.clk.Now()) })
	h.run()
	if n := len(h.mails(mail.TrialEnding)); n != 0 {
		t.Errorf("%d trial reminders for a trial end that moved", n)
	}
}

// TestSubscriptionAccessFollowsEntitlement: an entitled subscription
// invites the subscriber's GitHub account; losing the entitlement removes
// it, unless the account had access before.
func TestSubscriptionAccessFollowsEntitlement(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	h.gh.AddUser("alice")
	h.gh.AddUser("bob")
	h.gh.AddCollaborator("bob", "admin") // had access before paying
	alice := h.subscribe("cloud", "user-a", "alice")
	bob := h.subscribe("cloud", "user-b", "bob")
	for i, s := range []store.Subscription{alice, bob} {
		h.change(s, reconcile.SubscriptionChange{Cause: "sub:" + strings.Repeat("1", i+1), Access: store.AccessGranted})
	}
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "alice" {
		t.Fatalf("invitations %+v, want alice's", inv)
	}
	if s, _ := h.db.GetSubscription(h.ctx, alice.ID); s.AccessState != store.AccessGranted {
		t.Errorf("alice's access %s", s.AccessState)
	}
	for _, s := range []store.Subscription{alice, bob} {
		s.Status, s.Entitled = store.SubscriptionUnpaid, false
		h.change(s, reconcile.SubscriptionChange{Cause: "sub:revoke", Access: store.AccessRevoked})
	}
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 0 {
		t.Errorf("alice's invitation kept: %+v", inv)
	}
	if c := h.gh.Collaborators(); len(c) != 1 || c[0].Login != "bob" {
		t.Errorf("collaborators %+v, want bob (who had access before) only", c)
	}
	if s, _ := h.db.GetSubscription(h.ctx, alice.ID); s.AccessState != store.AccessRevoked {
		t.Errorf("alice's access %s after the revoke", s.AccessState)
	}
}

// TestSubscriptionWebhookEvents: a webhook product's changes reach the
// seller's app as signed subscription.* events with the organization id.
func TestSubscriptionWebhookEvents(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	s := h.subscribe("hosted", "user-h", "")
	h.change(s, reconcile.SubscriptionChange{Cause: "sub:1", Access: store.AccessGranted,
		Webhooks: []string{reconcile.WebhookSubscriptionActivated}})
	h.run()
	if got, _ := h.db.SubscriptionGrants(h.ctx, s.ID); len(got) != 1 || got[0].State != store.GrantGranted {
		t.Errorf("webhook grant %+v, want granted", got)
	}
	s.Status, s.Entitled = store.SubscriptionCanceled, false
	h.change(s, reconcile.SubscriptionChange{Cause: "sub:2", Access: store.AccessRevoked,
		Webhooks: []string{reconcile.WebhookSubscriptionCanceled, reconcile.WebhookSubscriptionEnded}})
	h.run()
	var types []string
	for _, d := range h.hook.deliveries() {
		body := string(d.body)
		if !strings.Contains(body, `"organization_id":"org_42"`) || !strings.Contains(body, s.ID) {
			t.Errorf("delivery without the organization or the subscription: %s", body)
		}
		for _, ev := range []string{"subscription.activated", "subscription.canceled", "subscription.ended"} {
			if strings.Contains(body, `"type":"`+ev+`"`) {
				types = append(types, ev)
			}
		}
	}
	if len(types) != 3 {
		t.Errorf("events %v, want activated, canceled and ended", types)
	}
	if got, _ := h.db.SubscriptionGrants(h.ctx, s.ID); len(got) != 1 || got[0].State != store.GrantRevoked {
		t.Errorf("webhook grant %+v", got)
	}
	all, err := h.db.SubjectSteps(h.ctx, steps.SubscriptionSubject(s.ID).ID)
	if err != nil || len(all) != 5 {
		t.Errorf("%d steps on the subscription's subject (%v), want 2 access steps and 3 events", len(all), err)
	}
}

// TestSubscriptionAccessWaitsForAGitHubUsername: an entitled subscription
// whose subscriber named no GitHub account yet grants nothing; naming one
// (PUT /api/me/github) invites it.
func TestSubscriptionAccessWaitsForAGitHubUsername(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	h.gh.AddUser("carol")
	s := h.subscribe("cloud", "user-c", "")
	h.change(s, reconcile.SubscriptionChange{Cause: "sub:1", Access: store.AccessGranted})
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 0 {
		t.Fatalf("invitations without a username: %+v", inv)
	}
	// As PUT /api/me/github does: the account first, then the request.
	if err := h.db.UpsertAccount(h.ctx, "user-c", buyerEmail, "carol", h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	n, err := h.ful.RequestAccess(h.ctx, "user-c", "carol")
	if err != nil || n != 1 {
		t.Fatalf("RequestAccess = %d, %v; want the subscription", n, err)
	}
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "carol" {
		t.Errorf("invitations %+v, want carol's", inv)
	}
	if got, _ := h.db.GetSubscription(h.ctx, s.ID); got.AccessState != store.AccessGranted {
		t.Errorf("access %s", got.AccessState)
	}
}

// grantedSubscription subscribes user to "cloud" with GitHub login, grants
// it and accepts the invitation.
func (h *harness) grantedSubscription(user, login string) store.Subscription {
	h.t.Helper()
	s := h.subscribe("cloud", user, login)
	h.change(s, reconcile.SubscriptionChange{Cause: "sub:1", Access: store.AccessGranted})
	h.run()
	for _, inv := range h.gh.Invitations() {
		if strings.EqualFold(inv.Invitee, login) {
			h.gh.AcceptInvitation(inv.ID)
		}
	}
	return s
}

// moveTo does what PUT /api/me/github does: the account first, then the
// request; it returns how many subjects the request changed.
func (h *harness) moveTo(user, login string) int {
	h.t.Helper()
	if err := h.db.UpsertAccount(h.ctx, user, buyerEmail, login, h.clk.Now()); err != nil {
		h.t.Fatal(err)
	}
	n, err := h.ful.RequestAccess(h.ctx, user, login)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func collaboratorLogins(h *harness) []string {
	var out []string
	for _, c := range h.gh.Collaborators() {
		out = append(out, c.Login)
	}
	return out
}

// A subscriber who names another GitHub account moves their access: the
// new account is invited, then the old one removed and its grant revoked;
// naming it again changes nothing.
func TestPutGitHubMovesASubscriptionsAccess(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	h.gh.AddUser("dave")
	h.gh.AddUser("david")
	s := h.grantedSubscription("user-d", "dave")
	if c := collaboratorLogins(h); len(c) != 1 || c[0] != "dave" {
		t.Fatalf("collaborators before the move = %v", c)
	}

	if n := h.moveTo("user-d", "david"); n != 1 {
		t.Fatalf("RequestAccess = %d, want the subscription", n)
	}
	h.run()
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Errorf("collaborators after the move = %v, want dave removed", c)
	}
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "david" {
		t.Errorf("invitations = %+v, want david's", inv)
	}
	grants, err := h.db.SubscriptionGrants(h.ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]store.GrantState{}
	for _, g := range grants {
		states[g.GitHubLogin] = g.State
	}
	if states["dave"] != store.GrantRevoked || !states["david"].Active() {
		t.Errorf("grants = %v, want dave revoked and david active", states)
	}
	if got, _ := h.db.GetSubscription(h.ctx, s.ID); got.AccessState != store.AccessGranted {
		t.Errorf("access = %s, want granted", got.AccessState)
	}
	if n := h.moveTo("user-d", "David"); n != 0 {
		t.Errorf("RequestAccess with the login granted = %d, want 0", n)
	}
	// And back: a second move, not one deduplicated by the first's name.
	if n := h.moveTo("user-d", "dave"); n != 1 {
		t.Fatalf("RequestAccess back to dave = %d, want 1", n)
	}
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "dave" {
		t.Errorf("invitations after moving back = %+v, want dave's only", inv)
	}
}

// A move to a login GitHub does not know grants nothing, so the old
// account keeps its access; a move to an account another paid subject
// grants takes nothing from that subject.
func TestASubscriptionsMoveTakesBackOnlyWhatItReplaced(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	h.gh.AddUser("erin")
	h.gh.AddUser("erika")
	h.gh.AddUnknownUser("nobody-here")
	s := h.grantedSubscription("user-e", "erin")

	h.moveTo("user-e", "nobody-here")
	h.run()
	if c := collaboratorLogins(h); len(c) != 1 || c[0] != "erin" {
		t.Errorf("collaborators after a move to an unknown login = %v, want erin kept", c)
	}
	if got, _ := h.db.GetSubscription(h.ctx, s.ID); got.AccessState != store.AccessGranted {
		t.Errorf("access = %s, want still granted", got.AccessState)
	}

	// Another buyer's paid purchase grants erin too: the move leaves erin in.
	h.complete(buy{userID: "user-x", username: "erin"})
	h.run()
	h.moveTo("user-e", "erika")
	h.run()
	logins := collaboratorLogins(h)
	if len(logins) != 1 || logins[0] != "erin" {
		t.Errorf("collaborators = %v, want erin kept for the purchase", logins)
	}
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "erika" {
		t.Errorf("invitations = %+v, want erika's", inv)
	}
	grants, _ := h.db.SubscriptionGrants(h.ctx, s.ID)
	for _, g := range grants {
		if g.GitHubLogin == "erin" && g.State != store.GrantRevoked {
			t.Errorf("the subscription's grant to erin is %s, want revoked (kept in place for the purchase)", g.State)
		}
	}
}

// The drift pass's repairs run the access step: an ended subscription
// whose account was put back on GitHub loses it again (though its grant
// was already revoked); an entitled one removed by hand is invited again.
func TestSubscriptionAccessRepairs(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	h.gh.AddUser("fay")
	h.gh.AddUser("gus")
	ended := h.grantedSubscription("user-f", "fay")
	ended.Status, ended.Entitled = store.SubscriptionCanceled, false
	h.change(ended, reconcile.SubscriptionChange{Cause: "sub:2", Access: store.AccessRevoked})
	h.run()
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Fatalf("collaborators after the end = %v", c)
	}
	h.gh.AddCollaborator("fay", "pull") // put back by hand
	kept := h.grantedSubscription("user-g", "gus")
	h.gh.RemoveCollaborator("gus") // removed by hand

	repair := func(s store.Subscription, want store.AccessState) {
		t.Helper()
		h.tx(func(q *store.Queries) error {
			cur, err := q.LockSubscription(h.ctx, s.ID)
			if err != nil {
				return err
			}
			return h.ful.RepairSubscriptionAccess(h.ctx, q, cur, want)
		})
	}
	repair(ended, store.AccessRevoked)
	repair(kept, store.AccessGranted)
	repair(kept, store.AccessGranted) // asked twice before it ran: one step
	h.run()
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Errorf("collaborators after the repairs = %v, want fay removed again", c)
	}
	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "gus" {
		t.Errorf("invitations = %+v, want gus invited again", invs)
	}
	if n := h.stepsUnder(kept.ID, fulfillment.PrefixSubscriptionRepair); n != 1 {
		t.Errorf("%d repair steps for gus's subscription, want 1", n)
	}
}

// stepsUnder counts the steps of subjectID in pipelines whose name starts
// with prefix.
func (h *harness) stepsUnder(subjectID, prefix string) int {
	h.t.Helper()
	steps, err := h.db.SubjectSteps(h.ctx, subjectID)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, s := range steps {
		if strings.HasPrefix(s.Pipeline, prefix) {
			n++
		}
	}
	return n
}
