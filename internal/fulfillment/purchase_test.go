package fulfillment_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

func TestPurchaseSendsEmailsGrantsAccessAndFollowsUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()

	conf := h.oneMail(mail.PurchaseConfirmation, buyerEmail)
	wantContains(t, "confirmation", conf.Text, "$199.00", "Acme Pro", p.ID)
	if want := "paymentd:" + p.ID + ":purchase:purchase_confirmation"; conf.Key != want {
		t.Errorf("confirmation idempotency key = %q, want %q", conf.Key, want)
	}
	admin := h.oneMail(mail.AdminPurchase, adminEmail)
	wantContains(t, "admin subject", admin.Subject, "$199.00")
	wantContains(t, "admin email", admin.Text, buyerEmail, p.ID)

	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "octocat" || invs[0].Permission != "pull" {
		t.Fatalf("invitations = %+v, want one for octocat with pull", invs)
	}
	got := h.reload(p)
	if got.AccessState != store.AccessGranted || got.AccessRef == nil || *got.AccessRef != strconv.FormatInt(invs[0].ID, 10) {
		t.Errorf("access = %s %v, want granted with invitation %d", got.AccessState, got.AccessRef, invs[0].ID)
	}
	wantContains(t, "access email", h.oneMail(mail.AccessGranted, buyerEmail).Text, repoURL, "@octocat")

	for _, fu := range []struct {
		day      int
		template string
	}{{7, mail.FollowupOnboarding}, {14, mail.FollowupFeedback}, {30, mail.FollowupTestimonial}} {
		due := time.Duration(fu.day) * day
		h.at(due - time.Minute)
		if n := len(h.mails(fu.template)); n != 0 {
			t.Fatalf("%s sent before day %d", fu.template, fu.day)
		}
		h.at(due)
		m := h.oneMail(fu.template, buyerEmail)
		wantContains(t, fu.template, m.Text, "/unsubscribe?")
	}
	h.at(60 * day)
	if n := len(h.mails("")); n != 6 {
		t.Errorf("%d emails in all, want 6: %v", n, h.categories())
	}
	if s := h.stepsNamed(p, fulfillment.StepAnalytics); len(s) != 0 {
		t.Errorf("analytics scheduled without PostHog: %+v", s)
	}
}

func TestFullRefundOnDayTenRevokesAccessAndCancelsFollowups(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	alice := h.complete(buy{email: "alice@example.com", username: "alice"})
	bob := h.complete(buy{email: "bob@example.com", username: "bob"})
	h.run()
	// Alice accepts her invitation; Bob's stays pending.
	for _, inv := range h.gh.Invitations() {
		if inv.Invitee == "alice" && !h.gh.AcceptInvitation(inv.ID) {
			t.Fatal("accept alice's invitation")
		}
	}
	if c := h.gh.Collaborators(); len(c) != 1 || c[0].Login != "alice" {
		t.Fatalf("collaborators = %+v", c)
	}
	h.at(7 * day)
	h.oneMail(mail.FollowupOnboarding, "alice@example.com")
	h.oneMail(mail.FollowupOnboarding, "bob@example.com")

	h.clk.Set(t0.Add(10 * day))
	h.refund(alice, "re_alice", 19900)
	h.refund(bob, "re_bob", 19900)
	h.run()

	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators after refunds = %+v, want none", c)
	}
	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Errorf("invitations after refunds = %+v, want none", invs)
	}
	for _, p := range []store.Purchase{alice, bob} {
		email := *p.Email
		if got := h.reload(p); got.AccessState != store.AccessRevoked || got.Status != store.PurchaseRefunded {
			t.Errorf("%s: access %s, status %s; want revoked, refunded", email, got.AccessState, got.Status)
		}
		m := h.oneMail(mail.RefundFull, email)
		wantContains(t, "refund email", m.Text, "$199.00", "access to Acme Pro has been removed")
		for _, name := range []string{mail.FollowupFeedback, mail.FollowupTestimonial} {
			if s := h.step(p, fulfillment.PipelinePurchase, name); s.Status != store.StepCanceled {
				t.Errorf("%s %s = %s, want canceled", email, name, s.Status)
			}
		}
	}
	if n := len(h.mails(mail.AdminRefund)); n != 2 {
		t.Errorf("%d admin refund emails, want 2", n)
	}
	wantContains(t, "admin refund", h.mails(mail.AdminRefund)[0].Subject, "Full refund", "$199.00")

	h.at(31 * day)
	for _, name := range []string{mail.FollowupFeedback, mail.FollowupTestimonial} {
		if n := len(h.mails(name)); n != 0 {
			t.Errorf("%d %s sent after a full refund", n, name)
		}
	}
}

func TestPartialRefundKeepsAccessAndShowsBothAmounts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	h.advance(3 * day)
	h.refund(p, "re_part", 5000)
	h.run()

	m := h.oneMail(mail.RefundPartial, buyerEmail)
	wantContains(t, "partial refund email", m.Text, "$50.00", "$199.00", "stays exactly as it is")
	wantContains(t, "admin refund", h.oneMail(mail.AdminRefund, adminEmail).Subject, "Partial refund")
	if got := h.reload(p); got.AccessState != store.AccessGranted {
		t.Errorf("access after a partial refund = %s, want granted", got.AccessState)
	}
	if invs := h.gh.Invitations(); len(invs) != 1 {
		t.Errorf("invitations = %+v, want the one kept", invs)
	}
	if s := h.step(p, fulfillment.PipelinePurchase, mail.FollowupFeedback); s.Status != store.StepPending {
		t.Errorf("follow-up after a partial refund = %s, want pending", s.Status)
	}
	if n := len(h.stepsNamed(p, fulfillment.StepRevokeAccess)); n != 0 {
		t.Errorf("%d revoke steps after a partial refund", n)
	}
}

func TestTwoPartialRefundsAddingUpToTheTotalRevokeAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	h.refund(p, "re_1", 5000)
	h.run()
	h.oneMail(mail.RefundPartial, buyerEmail)
	if got := h.reload(p); got.AccessState != store.AccessGranted {
		t.Fatalf("access after the first partial refund = %s", got.AccessState)
	}

	h.advance(time.Hour)
	h.refund(p, "re_2", 14900)
	h.run()
	full := h.oneMail(mail.RefundFull, buyerEmail)
	wantContains(t, "second refund email", full.Text, "$149.00", "has been removed")
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access after refunds adding up to the total = %s, want revoked", got.AccessState)
	}
	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Errorf("invitations = %+v, want none", invs)
	}
	var subjects []string
	for _, m := range h.mails(mail.AdminRefund) {
		subjects = append(subjects, m.Subject)
	}
	if len(subjects) != 2 || !strings.HasPrefix(subjects[0], "Partial refund: $50.00") ||
		!strings.HasPrefix(subjects[1], "Full refund: $199.00") {
		t.Errorf("admin refund subjects = %q", subjects)
	}
}

func TestGitHubFailingThreeTimesThenGranting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.gh.FailNext(3, http.StatusBadGateway)
	p := h.complete(buy{username: "octocat"})
	h.run()
	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess); s.Status != store.StepPending || s.Attempts != 1 {
		t.Fatalf("grant after a 502 = %s attempt %d, want pending after 1", s.Status, s.Attempts)
	}
	for range 3 {
		h.advance(time.Minute) // past each backoff (10s, 20s, 40s, ±20%)
	}
	grant := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess)
	if grant.Status != store.StepDone || grant.Attempts != 4 {
		t.Fatalf("grant = %s after %d attempts, want done after 4", grant.Status, grant.Attempts)
	}
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Errorf("invitations = %+v", invs)
	}
	h.oneMail(mail.PurchaseConfirmation, buyerEmail) // exactly once
	h.oneMail(mail.AccessGranted, buyerEmail)
	if n := len(h.stepsNamed(p, steps.AlertStep)); n != 0 {
		t.Errorf("%d operator alerts for a grant that succeeded", n)
	}
}

func TestFailingAdminEmailHoldsNothingBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.mail.setFail(func(to string) int {
		if to == adminEmail {
			return http.StatusInternalServerError
		}
		return 0
	})
	p := h.complete(buy{username: "octocat"})
	h.run()

	h.oneMail(mail.PurchaseConfirmation, buyerEmail)
	h.oneMail(mail.AccessGranted, buyerEmail)
	if invs := h.gh.Invitations(); len(invs) != 1 {
		t.Errorf("invitations = %+v, want one", invs)
	}
	admin := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepAdminPurchase)
	if admin.Status != store.StepPending || admin.LastError == nil || !strings.Contains(*admin.LastError, "500") {
		t.Fatalf("admin step = %s (%v), want pending after a 500", admin.Status, admin.LastError)
	}

	h.mail.setFail(nil)
	h.advance(time.Minute)
	h.oneMail(mail.AdminPurchase, adminEmail)
}

func TestUnknownGitHubUserFailsAtOnceAndAlertsTheOperator(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.gh.AddUnknownUser("ghost")
	p := h.complete(buy{userID: "user_1", username: "ghost"})
	h.run()

	grant := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess)
	if grant.Status != store.StepFailed || grant.Attempts != 1 {
		t.Fatalf("grant for an unknown user = %s after %d attempts, want failed after 1", grant.Status, grant.Attempts)
	}
	alert := h.oneMail(mail.OperatorAlert, adminEmail)
	wantContains(t, "alert subject", alert.Subject, p.ID, fulfillment.StepGrantAccess)
	wantContains(t, "alert", alert.Text, p.ID, fulfillment.StepGrantAccess, "ghost", "github user cannot be invited")
	if got := h.reload(p); got.AccessState != store.AccessFailed {
		t.Errorf("access = %s, want failed", got.AccessState)
	}
	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepAccessEmail); s.Status != store.StepCanceled {
		t.Errorf("access email = %s, want canceled with the grant it waited for", s.Status)
	}
	if n := len(h.mails(mail.AccessGranted)); n != 0 {
		t.Errorf("%d access emails without access", n)
	}

	// The buyer gives their real username: access follows.
	n, err := h.ful.RequestAccess(h.ctx, "user_1", "octocat")
	if err != nil || n != 1 {
		t.Fatalf("RequestAccess = %d, %v; want 1", n, err)
	}
	h.run()
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Errorf("invitations = %+v", invs)
	}
	wantContains(t, "access email", h.oneMail(mail.AccessGranted, buyerEmail).Text, "@octocat")
}

func TestRequestAccessGrantsAnEligiblePurchaseThatHadNoUsername(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	if err := h.db.UpsertAccount(h.ctx, "user_1", buyerEmail, "", h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	p := h.complete(buy{userID: "user_1"})
	h.complete(buy{userID: "user_1", product: "ebook", amount: 1900})
	refunded := h.complete(buy{userID: "user_1"})
	h.run()
	h.refund(refunded, "re_old", 19900)
	h.run()
	if n := len(h.stepsNamed(p, fulfillment.StepGrantAccess)); n != 0 || len(h.gh.Requests()) != 0 {
		t.Fatalf("a purchase without a username got %d grant steps and %d GitHub calls", n, len(h.gh.Requests()))
	}

	if err := h.db.UpsertAccount(h.ctx, "user_1", "", "octocat", h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // asked twice before it runs: scheduled once
		n, err := h.ful.RequestAccess(h.ctx, "user_1", "octocat")
		if err != nil || n != 1 {
			t.Fatalf("RequestAccess = %d, %v; want 1", n, err)
		}
	}
	if n := len(h.stepsNamed(p, fulfillment.StepGrantAccess)); n != 1 {
		t.Fatalf("%d grant steps, want 1", n)
	}
	h.run()

	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Fatalf("invitations = %+v, want one for octocat", invs)
	}
	got := h.reload(p)
	if got.AccessState != store.AccessGranted || got.GitHubUsername == nil || *got.GitHubUsername != "octocat" {
		t.Errorf("purchase = %s %v, want granted to octocat", got.AccessState, got.GitHubUsername)
	}
	if r := h.reload(refunded); r.AccessState == store.AccessGranted || r.GitHubUsername != nil {
		t.Errorf("refunded purchase = %s %v, want untouched", r.AccessState, r.GitHubUsername)
	}
	wantContains(t, "access email", h.oneMail(mail.AccessGranted, buyerEmail).Text, repoURL)
	if n, err := h.ful.RequestAccess(h.ctx, "user_1", "octocat"); err != nil || n != 0 {
		t.Errorf("RequestAccess once granted = %d, %v; want 0", n, err)
	}
}

func TestAnalyticsFailureIsLoggedNotRetried(t *testing.T) {
	t.Parallel()
	var captures atomic.Int32
	h := newHarness(t, harnessOptions{posthog: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		captures.Add(1)
		http.Error(w, "ingestion down", http.StatusServiceUnavailable)
	})})
	p := h.complete(buy{username: "octocat"})
	h.run()
	h.advance(time.Hour)

	s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepAnalytics)
	r := result[map[string]any](t, s)
	if s.Status != store.StepDone || s.Attempts != 1 || r["captured"] != false || !strings.Contains(r["error"].(string), "503") {
		t.Errorf("analytics = %s after %d attempts, result %s; want done once, not captured", s.Status, s.Attempts, s.Result)
	}
	if n := captures.Load(); n != 1 {
		t.Errorf("%d capture requests, want 1", n)
	}
	if n := len(h.stepsNamed(p, steps.AlertStep)); n != 0 {
		t.Errorf("%d operator alerts for analytics", n)
	}
	h.oneMail(mail.PurchaseConfirmation, buyerEmail)
}

func TestDisputeOpenedThenLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	d := store.Dispute{ID: "dp_1", PurchaseID: p.ID, Amount: 19900, Currency: "usd", Status: "needs_response",
		Reason: "fraudulent"}
	h.tx(func(q *store.Queries) error { return h.ful.DisputeOpened(h.ctx, q, p, d) })
	h.run()
	opened := h.oneMail(mail.DisputeOpened, adminEmail)
	wantContains(t, "dispute email", opened.Text, "dp_1", "fraudulent", "$199.00", p.ID)

	h.advance(2 * day)
	d.Status = "lost"
	h.tx(func(q *store.Queries) error {
		cur, err := q.LockPurchase(h.ctx, p.ID)
		if err != nil {
			return err
		}
		cur.Status, cur.Disputed = store.PurchaseRefunded, true
		if err := q.UpdatePurchase(h.ctx, cur, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.DisputeLost(h.ctx, q, cur, d)
	})
	h.run()
	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Errorf("invitations after a lost dispute = %+v", invs)
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access after a lost dispute = %s", got.AccessState)
	}
	wantContains(t, "admin email", h.oneMail(mail.AdminRefund, adminEmail).Text, "dispute dp_1 lost", "Revoked")
	if n := len(h.mails(mail.RefundFull)) + len(h.mails(mail.RefundPartial)); n != 0 {
		t.Errorf("%d customer refund emails for a lost dispute", n)
	}
	if s := h.step(p, fulfillment.PipelinePurchase, mail.FollowupOnboarding); s.Status != store.StepCanceled {
		t.Errorf("follow-up after a lost dispute = %s, want canceled", s.Status)
	}
}

func TestReversedRefundRestoresAccessAndTellsTheOperator(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	h.refund(p, "re_1", 19900)
	h.run()
	if got := h.reload(p); got.AccessState != store.AccessRevoked || len(h.gh.Invitations()) != 0 {
		t.Fatalf("after the refund: access %s, invitations %+v", got.AccessState, h.gh.Invitations())
	}

	h.advance(day)
	h.reverseRefund(p, "re_1", "failed")
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Errorf("invitations after the reversal = %+v", invs)
	}
	if got := h.reload(p); got.AccessState != store.AccessGranted {
		t.Errorf("access after the reversal = %s, want granted", got.AccessState)
	}
	wantContains(t, "operator email", h.oneMail(mail.RefundReversed, adminEmail).Text, "$199.00", p.ID, "re_1 failed")
}

// A full refund cancels the follow-ups; its reversal brings back those
// still ahead (never one already due, never twice), also after a second
// refund and reversal, so each follow-up is sent once in all.
func TestReversedRefundRestoresTheFollowUpsStillAhead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	reverse := func(id string) { h.reverseRefund(p, id, "failed") }
	h.at(8 * day) // the onboarding follow-up (day 7) is sent
	h.refund(p, "re_1", 19900)
	h.run()
	h.at(15 * day) // the feedback follow-up (day 14) passes while refunded
	reverse("re_1")
	h.at(16 * day)
	h.refund(p, "re_2", 19900)
	h.run()
	reverse("re_2")
	h.at(30*day - time.Minute)
	if n := len(h.mails(mail.FollowupTestimonial)); n != 0 {
		t.Errorf("the testimonial follow-up sent before day 30")
	}
	h.at(60 * day)
	for template, want := range map[string]int{mail.FollowupOnboarding: 1, mail.FollowupFeedback: 0,
		mail.FollowupTestimonial: 1} {
		if n := len(h.mails(template)); n != want {
			t.Errorf("%s sent %d times, want %d", template, n, want)
		}
	}
}

func TestRepairAccessSchedulesOneGrantAtATime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{username: "octocat"})
	h.run()
	// Someone deleted the invitation on GitHub by hand.
	if err := h.github.DeleteInvitation(h.ctx, h.gh.Invitations()[0].ID); err != nil || len(h.gh.Invitations()) != 0 {
		t.Fatalf("revoke by hand: %v, invitations %+v", err, h.gh.Invitations())
	}
	for range 2 { // the drift check runs twice before the repair does
		h.tx(func(q *store.Queries) error { return h.ful.RepairAccess(h.ctx, q, h.reload(p), store.AccessGranted) })
	}
	if n := len(h.stepsNamed(p, fulfillment.StepGrantAccess)); n != 2 {
		t.Fatalf("%d grant steps, want the purchase's and one repair", n)
	}
	h.run()
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Errorf("invitations after the repair = %+v", invs)
	}
	if n := len(h.mails(mail.AccessGranted)); n != 1 {
		t.Errorf("%d access emails, want only the purchase's", n)
	}
	h.tx(func(q *store.Queries) error { return h.ful.RepairAccess(h.ctx, q, h.reload(p), store.AccessGranted) })
	if n := len(h.stepsNamed(p, fulfillment.StepGrantAccess)); n != 3 {
		t.Errorf("%d grant steps after a second drift, want 3", n)
	}
	if err := h.ful.RepairAccess(h.ctx, h.db.Queries, p, "sideways"); err == nil {
		t.Error("RepairAccess towards an unknown state succeeded")
	}
}

func TestNewRejectsFollowupsThatAreNotFollowupTemplates(t *testing.T) {
	t.Parallel()
	for _, fus := range [][]config.FollowUp{
		{{Delay: day, Template: mail.PurchaseConfirmation}},
		{{Delay: day, Template: "followup_typo"}},
		{{Delay: day, Template: mail.FollowupFeedback}, {Delay: 2 * day, Template: mail.FollowupFeedback}},
	} {
		cfg := testConfig("https://hooks.acme.test")
		cfg.Fulfillment.FollowUps = fus
		r, err := fulfillment.NewRenderer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fulfillment.New(fulfillment.Options{DB: &store.DB{}, Engine: &steps.Engine{}, Config: cfg,
			Renderer: r, Mailer: mail.NewOutbox(t.TempDir(), nil)})
		if err == nil {
			t.Errorf("New accepted follow-ups %+v", fus)
		}
	}
}

func TestRefundBeforeTheGrantRanCancelsItAndAReversalRestoresIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.gh.FailNext(1, http.StatusBadGateway)
	p := h.complete(buy{username: "octocat"})
	h.run() // the grant fails once and waits to retry
	h.refund(p, "re_1", 19900)
	h.advance(time.Hour)

	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess); s.Status != store.StepCanceled {
		t.Fatalf("grant after a full refund = %s, want canceled", s.Status)
	}
	if n := len(h.gh.Requests()); n != 1 || len(h.gh.Invitations()) != 0 {
		t.Fatalf("%d GitHub requests, invitations %+v; want only the failed grant", n, h.gh.Invitations())
	}
	revoke := h.step(p, fulfillment.PrefixRefund+"re_1", fulfillment.StepRevokeAccess)
	if r := result[map[string]any](t, revoke); revoke.Status != store.StepDone || r["skipped"] != "access was never granted" {
		t.Errorf("revoke = %s %s, want done and skipped", revoke.Status, revoke.Result)
	}

	h.reverseRefund(p, "re_1", "canceled")
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "octocat" {
		t.Errorf("invitations after the reversal = %+v", invs)
	}
	h.oneMail(mail.AccessGranted, buyerEmail)
	h.oneMail(mail.RefundReversed, adminEmail)
}
