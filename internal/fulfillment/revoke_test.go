package fulfillment_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
)

// await waits for ch to close, or fails the test after a deadline.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// runInBackground runs due steps in another goroutine; wait returns once
// that run is over.
func (h *harness) runInBackground() (wait func()) {
	done := make(chan error, 1)
	go func() { _, err := h.eng.RunDue(h.ctx); done <- err }()
	return func() {
		h.t.Helper()
		select {
		case err := <-done:
			if err != nil {
				h.t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			h.t.Fatal("timed out waiting for the background run")
		}
	}
}

// verifiedTypes verifies every delivery as Standard Webhooks and returns
// their event types in the order the receiver acted on them.
func verifiedTypes(t *testing.T, ds []delivery) []string {
	t.Helper()
	verifier, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, d := range ds {
		if err := verifier.Verify(d.body, d.header); err != nil {
			t.Errorf("delivery %d does not verify: %v", i, err)
		}
		types = append(types, decodeDelivery(t, d).Type)
	}
	return types
}

// revoked is the recorded result of a revocation.
type revoked struct {
	Revoked bool `json:"revoked"`
	Grants  []struct {
		Username string `json:"github_username"`
		Outcome  string `json:"outcome"`
	} `json:"grants"`
}

// grantStates returns the states of a purchase's grants.
func (h *harness) grantStates(p store.Purchase) []store.GrantState {
	h.t.Helper()
	gs, err := h.db.PurchaseGrants(h.ctx, p.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.GrantState
	for _, g := range gs {
		out = append(out, g.State)
	}
	return out
}

func TestRefundDuringAPendingWebhookGrantSendsTheRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.hook.then(http.StatusInternalServerError) // the backend may have acted on it anyway
	p := h.complete(buy{product: "api", userID: "user_1"})
	h.run()
	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess); s.Status != store.StepPending || s.Attempts != 1 {
		t.Fatalf("grant = %s after %d attempts, want pending retry", s.Status, s.Attempts)
	}

	h.refund(p, "re_1", 19900)
	h.run()
	types := verifiedTypes(t, h.hook.deliveries())
	if len(types) != 2 || types[0] != access.EventPurchaseCompleted || types[1] != access.EventPurchaseRefunded {
		t.Fatalf("deliveries = %v, want the failed purchase.completed then purchase.refunded", types)
	}
	if body := decodeDelivery(t, h.hook.deliveries()[1]); body.Data.PurchaseID != p.ID || body.Data.AmountRefunded != 19900 {
		t.Errorf("purchase.refunded = %+v", body)
	}
	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess); s.Status != store.StepCanceled {
		t.Errorf("grant after the refund = %s, want canceled", s.Status)
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access = %s, want revoked", got.AccessState)
	}
	if st := h.grantStates(p); len(st) != 1 || st[0] != store.GrantRevoked {
		t.Errorf("grants = %v, want one revoked", st)
	}
}

func TestRefundDuringARunningWebhookGrantSendsTheRevocationLast(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	held := h.hook.holdNext()
	p := h.complete(buy{product: "api", userID: "user_1"})
	wait := h.runInBackground()
	await(t, held.arrived, "the grant's delivery")

	// The refund lands while purchase.completed is in flight, and its
	// revocation runs at once.
	h.refund(p, "re_1", 19900)
	h.run()
	close(held.release)
	wait()
	h.run()

	types := verifiedTypes(t, h.hook.deliveries())
	if len(types) < 2 || types[len(types)-1] != access.EventPurchaseRefunded {
		t.Fatalf("deliveries, in the order the backend acted on them = %v; want purchase.refunded last", types)
	}
	completedAt := strings.Join(types, " ")
	if !strings.Contains(completedAt, access.EventPurchaseCompleted+" "+access.EventPurchaseRefunded) {
		t.Errorf("deliveries = %v: no purchase.refunded after purchase.completed", types)
	}
	if got := h.reload(p); got.AccessState == store.AccessGranted {
		t.Errorf("access = granted after the purchase was refunded")
	}
	for _, st := range h.grantStates(p) {
		if st != store.GrantRevoked {
			t.Errorf("grants = %v, want revoked", h.grantStates(p))
		}
	}
	if n := len(h.mails(mail.AccessGranted)); n != 0 {
		t.Errorf("%d access emails for a refunded purchase", n)
	}
}

func TestRefundDuringAPendingGitHubGrantRevokes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	// The invitation request fails: GitHub may have created it anyway.
	h.gh.FailNextRequest(1, http.MethodPut, "/collaborators/", http.StatusBadGateway)
	p := h.complete(buy{username: "octocat"})
	h.run()
	if s := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess); s.Status != store.StepPending {
		t.Fatalf("grant = %s, want pending retry", s.Status)
	}
	h.refund(p, "re_1", 19900)
	h.run()

	revoke := h.step(p, fulfillment.PrefixRefund+"re_1", fulfillment.StepRevokeAccess)
	if r := result[map[string]any](t, revoke); revoke.Status != store.StepDone || r["revoked"] != true {
		t.Fatalf("revoke = %s %s, want done and revoked", revoke.Status, revoke.Result)
	}
	removed := false
	for _, r := range h.gh.Requests() {
		removed = removed || (r.Method == http.MethodDelete && strings.HasSuffix(r.Path, "/collaborators/octocat"))
	}
	if !removed {
		t.Errorf("GitHub was never asked to remove octocat: %+v", h.gh.Requests())
	}
	if st := h.grantStates(p); len(st) != 1 || st[0] != store.GrantRevoked {
		t.Errorf("grants = %v, want one revoked", st)
	}
}

func TestRefundDuringARunningGitHubGrantRevokesTheInvitationItCreated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.gh.BeforeServe(func(method, path string) {
		if method == http.MethodPut {
			once.Do(func() { close(arrived); <-release })
		}
	})
	p := h.complete(buy{username: "octocat"})
	wait := h.runInBackground()
	await(t, arrived, "the invitation request")

	h.refund(p, "re_1", 19900)
	h.run() // the refund's revocation runs before the invitation exists
	close(release)
	wait()
	h.run()

	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Errorf("invitations = %+v: the late grant's invitation survived the refund", invs)
	}
	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators = %+v", c)
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access = %s, want revoked", got.AccessState)
	}
	if n := len(h.stepsNamed(p, fulfillment.StepRevokeAccess)); n != 2 {
		t.Errorf("%d revocations, want the refund's and the late grant's", n)
	}
}

func TestRenamedBuyerLosesAccessAndTheNewOwnerOfTheLoginIsUntouched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{userID: "user_1", username: "alice"})
	h.run()
	alice, _ := h.gh.UserID("alice")
	if !h.gh.AcceptInvitation(h.gh.Invitations()[0].ID) {
		t.Fatal("accept")
	}
	h.gh.RenameUser("alice", "alice2")
	h.gh.AddCollaborator("alice", "push") // a stranger registers alice and has access of their own
	stranger, _ := h.gh.UserID("alice")
	before := len(h.gh.Requests())

	h.refund(p, "re_1", 19900)
	h.run()
	c := h.gh.Collaborators()
	if len(c) != 1 || c[0].ID != stranger || c[0].Permission != "push" {
		t.Errorf("collaborators = %+v, want only the stranger (%d) with push; alice2 (%d) removed", c, stranger, alice)
	}
	for _, r := range h.gh.Requests()[before:] {
		if strings.HasSuffix(strings.ToLower(r.Path), "/alice") && r.Method != http.MethodGet {
			t.Errorf("the stranger's login was acted on: %s %s", r.Method, r.Path)
		}
	}
	revoke := h.step(p, fulfillment.PrefixRefund+"re_1", fulfillment.StepRevokeAccess)
	if r := result[revoked](t, revoke); len(r.Grants) != 1 || r.Grants[0].Username != "alice2" || r.Grants[0].Outcome != "removed" {
		t.Errorf("revoke result = %s, want alice2 removed", revoke.Result)
	}
}

func TestDriftRepairInvitesTheRecordedAccountNeverTheNewOwnerOfItsLogin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{userID: "user_1", username: "alice"})
	h.run()
	alice, _ := h.gh.UserID("alice")
	h.gh.AcceptInvitation(h.gh.Invitations()[0].ID)
	h.gh.RenameUser("alice", "alice2")
	h.gh.AddUser("alice")
	h.gh.RemoveCollaborator("alice2") // removed by hand; the drift check repairs

	h.tx(func(q *store.Queries) error { return h.ful.RepairAccess(h.ctx, q, h.reload(p), store.AccessGranted) })
	h.run()
	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].InviteeID != alice || invs[0].Invitee != "alice2" {
		t.Fatalf("invitations = %+v, want one to the buyer's account %d (now alice2)", invs, alice)
	}
	if n := len(h.mails(mail.AccessGranted)); n != 1 {
		t.Errorf("%d access emails, want only the purchase's", n)
	}
}

func TestPreexistingCollaboratorIsNeitherDemotedNorRemoved(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.gh.AddCollaborator("carol", "maintain")
	p := h.complete(buy{email: "carol@example.com", username: "carol"})
	h.run()

	for _, r := range h.gh.Requests() {
		if r.Method == http.MethodPut {
			t.Errorf("paymentd invited a collaborator: %s %s %s", r.Method, r.Path, r.Body)
		}
	}
	if got := h.reload(p); got.AccessState != store.AccessGranted {
		t.Errorf("access = %s, want granted", got.AccessState)
	}
	wantContains(t, "access email", h.oneMail(mail.AccessGranted, "carol@example.com").Text, "@carol")

	h.refund(p, "re_1", 19900)
	h.run()
	if c := h.gh.Collaborators(); len(c) != 1 || c[0].Login != "carol" || c[0].Permission != "maintain" {
		t.Errorf("collaborators after the refund = %+v, want carol kept as maintainer", c)
	}
	revoke := h.step(p, fulfillment.PrefixRefund+"re_1", fulfillment.StepRevokeAccess)
	if r := result[revoked](t, revoke); len(r.Grants) != 1 || r.Grants[0].Outcome != "preexisting" {
		t.Errorf("revoke result = %s, want carol left in place as preexisting", revoke.Result)
	}
	if got := h.reload(p); got.AccessState != store.AccessRevoked {
		t.Errorf("access = %s, want revoked (the purchase's own)", got.AccessState)
	}
}

func TestGrantRetriedAfterItsInvitationWasAcceptedIsNotPreexisting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	// GitHub creates the invitation but the answer is lost, and the buyer
	// accepts before the retry: the retry finds a collaborator of
	// paymentd's own making.
	var once sync.Once
	h.gh.BeforeServe(func(method, path string) {
		if method == http.MethodPut {
			once.Do(func() {
				h.gh.AddCollaborator("octocat", "pull")
				h.gh.FailNextRequest(1, http.MethodPut, "/collaborators/", http.StatusBadGateway)
			})
		}
	})
	p := h.complete(buy{username: "octocat"})
	h.run()
	h.advance(time.Minute)
	if got := h.reload(p); got.AccessState != store.AccessGranted {
		t.Fatalf("access after the retry = %s", got.AccessState)
	}
	h.refund(p, "re_1", 19900)
	h.run()
	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators after the refund = %+v, want octocat removed", c)
	}
}

func TestPutGitHubMovesAGrantedPurchaseToAnotherLogin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.complete(buy{userID: "user_1", username: "bob"})
	h.run()
	h.gh.AcceptInvitation(h.gh.Invitations()[0].ID)

	n, err := h.ful.RequestAccess(h.ctx, "user_1", "robert")
	if err != nil || n != 1 {
		t.Fatalf("RequestAccess = %d, %v; want 1", n, err)
	}
	h.run()
	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators = %+v, want bob removed", c)
	}
	invs := h.gh.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "robert" {
		t.Errorf("invitations = %+v, want one for robert", invs)
	}
	got := h.reload(p)
	if got.AccessState != store.AccessGranted || got.GitHubUsername == nil || *got.GitHubUsername != "robert" {
		t.Errorf("purchase = %s %v, want granted to robert", got.AccessState, got.GitHubUsername)
	}
	mails := h.mails(mail.AccessGranted)
	if len(mails) != 2 || !strings.Contains(mails[1].Text, "@robert") {
		t.Errorf("access emails = %d, want a second one for @robert", len(mails))
	}
	if n, err := h.ful.RequestAccess(h.ctx, "user_1", "Robert"); err != nil || n != 0 {
		t.Errorf("RequestAccess with the same login = %d, %v; want 0", n, err)
	}
}

func TestPutGitHubWithTheBuyersNewLoginKeepsTheirAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.complete(buy{userID: "user_1", username: "bob"})
	h.run()
	h.gh.AcceptInvitation(h.gh.Invitations()[0].ID)
	h.gh.RenameUser("bob", "bobby") // the buyer renamed, then tells paymentd

	if n, err := h.ful.RequestAccess(h.ctx, "user_1", "bobby"); err != nil || n != 1 {
		t.Fatalf("RequestAccess = %d, %v", n, err)
	}
	h.run()
	if c := h.gh.Collaborators(); len(c) != 1 || c[0].Login != "bobby" {
		t.Errorf("collaborators = %+v, want bobby kept", c)
	}
	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Errorf("invitations = %+v, want none", invs)
	}
}
