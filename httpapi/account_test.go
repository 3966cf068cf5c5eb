package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// accessRecorder is an AccessRequester that records its calls.
type accessRecorder struct {
	mu      sync.Mutex
	calls   [][2]string
	updated int
	err     error
}

func (a *accessRecorder) RequestAccess(ctx context.Context, userID, username string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, [2]string{userID, username})
	return a.updated, a.err
}

func (a *accessRecorder) recorded() [][2]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][2]string(nil), a.calls...)
}

func (a *accessRecorder) fail(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
}

func TestSetGitHubUsername(t *testing.T) {
	t.Parallel()
	rec := &accessRecorder{updated: 2}
	h := newHarness(t, harnessOptions{deps: httpapi.APIDeps{Access: rec}})
	tok := h.token("user-gh", "gh@example.com")

	for _, bad := range []string{"", "-octocat", "octocat-", "octo--cat", "octo_cat", "octo cat", strings.Repeat("a", 40)} {
		r := h.do("PUT", "/api/me/github", tok, map[string]string{"username": bad})
		if r.status != http.StatusBadRequest || r.errorCode() != "invalid_github_username" {
			t.Errorf("username %q = %d %s; want 400 invalid_github_username", bad, r.status, r.body)
		}
	}
	if _, err := h.db.GetAccount(t.Context(), "user-gh"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rejected usernames created an account (%v)", err)
	}
	if calls := rec.recorded(); len(calls) != 0 {
		t.Fatalf("rejected usernames requested access: %v", calls)
	}

	name := "Octo-Cat-" + strings.Repeat("9", 30) // 39 characters
	r := h.do("PUT", "/api/me/github", tok, map[string]string{"username": name})
	var body struct {
		GitHubUsername   string `json:"github_username"`
		PurchasesUpdated int    `json:"purchases_updated"`
	}
	r.decode(t, &body)
	if r.status != http.StatusOK || body.GitHubUsername != name || body.PurchasesUpdated != 2 {
		t.Fatalf("PUT /api/me/github = %d %s", r.status, r.body)
	}
	acct, err := h.db.GetAccount(t.Context(), "user-gh")
	if err != nil || acct.GitHubUsername == nil || *acct.GitHubUsername != name || acct.Email == nil || *acct.Email != "gh@example.com" {
		t.Errorf("account = %+v, %v", acct, err)
	}
	if calls := rec.recorded(); len(calls) != 1 || calls[0] != [2]string{"user-gh", name} {
		t.Errorf("access requested as %v", calls)
	}

	rec.fail(errors.New("github is down"))
	if r := h.do("PUT", "/api/me/github", tok, map[string]string{"username": "octocat"}); r.status != http.StatusInternalServerError {
		t.Errorf("a failing access request = %d %s; want 500", r.status, r.body)
	}
}

// Each change of GitHub username invites a login from the seller's
// repository: a user gets five changes an hour (one more every 12 minutes);
// past that the change is refused with 429 and changes nothing. Naming the
// account already set costs nothing.
func TestGitHubUsernameChangesAreRateLimited(t *testing.T) {
	t.Parallel()
	rec := &accessRecorder{updated: 1}
	h := newHarness(t, harnessOptions{deps: httpapi.APIDeps{Access: rec}})
	tok := h.token("user-loop", "loop@example.com")
	put := func(name string) response {
		t.Helper()
		return h.do("PUT", "/api/me/github", tok, map[string]string{"username": name})
	}
	for i := range 5 {
		if r := put(fmt.Sprintf("victim-%d", i)); r.status != http.StatusOK {
			t.Fatalf("change %d = %d %s", i+1, r.status, r.body)
		}
	}
	if r := put("VICTIM-4"); r.status != http.StatusOK { // the same login, in another case
		t.Fatalf("naming the account already set = %d %s; want 200, free", r.status, r.body)
	}
	r := put("victim-5")
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "720" {
		t.Fatalf("sixth change in an hour = %d %s (Retry-After %q); want 429 rate_limited after 720 s", r.status, r.body,
			r.header.Get("Retry-After"))
	}
	if acct, err := h.db.GetAccount(t.Context(), "user-loop"); err != nil || acct.GitHubUsername == nil ||
		*acct.GitHubUsername != "VICTIM-4" {
		t.Errorf("account after the refused change = %+v, %v; want it unchanged", acct, err)
	}
	if calls := rec.recorded(); len(calls) != 6 || calls[5][1] != "VICTIM-4" {
		t.Errorf("access requested %d times (%v); want 6, none for the refused change", len(calls), calls)
	}
	if other := h.do("PUT", "/api/me/github", h.token("user-other", "o@example.com"),
		map[string]string{"username": "octocat"}); other.status != http.StatusOK {
		t.Errorf("another user = %d %s", other.status, other.body)
	}
	h.clock.Advance(12 * time.Minute)
	if r := put("victim-5"); r.status != http.StatusOK {
		t.Errorf("a change 12 minutes later = %d %s; want 200", r.status, r.body)
	}
}

func TestPutGitHubMovesAGrantedPurchase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	clk := clock.NewFake(time.Now())
	cfg := loadConfig(t)
	fake := githubfake.New(githubfake.Options{Owner: cfg.GitHub.Owner, Repo: cfg.GitHub.Repo})
	ghSrv := httptest.NewServer(fake)
	t.Cleanup(ghSrv.Close)
	gh, err := access.NewGitHub(access.GitHubOptions{Token: "t", BaseURL: ghSrv.URL, Owner: cfg.GitHub.Owner,
		Repo: cfg.GitHub.Repo, HTTPClient: ghSrv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	eng := steps.New(db, clk, testLogger(t), steps.Config{}, nil)
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: eng, Clock: clk, Config: cfg, Renderer: renderer,
		Mailer: mail.NewOutbox(t.TempDir(), clk.Now), GitHub: gh})
	if err != nil {
		t.Fatal(err)
	}
	ful.Register()
	h := newHarness(t, harnessOptions{db: db, clock: clk, deps: httpapi.APIDeps{Access: ful}})
	runSteps := func() {
		t.Helper()
		if _, err := eng.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// user-gh bought with the login bob, who accepted the invitation.
	user, email, login, now := "user-gh", "gh@example.com", "bob", clk.Now()
	p := store.Purchase{ID: uuid.NewString(), UserID: &user, Email: &email, ProductKey: "pro_one_time", Quantity: 1,
		Status: store.PurchaseCompleted, StripeSessionID: "cs_test_move", AmountTotal: 19900, Currency: "usd",
		GitHubUsername: &login, AccessState: store.AccessNone, CreatedAt: now, UpdatedAt: now, CompletedAt: &now}
	if _, err := db.InsertPurchase(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(q *store.Queries) error { return ful.Completed(ctx, q, []store.Purchase{p}, false) }); err != nil {
		t.Fatal(err)
	}
	runSteps()
	if invs := fake.Invitations(); len(invs) != 1 || !fake.AcceptInvitation(invs[0].ID) {
		t.Fatalf("invitations = %+v", invs)
	}

	r := h.do("PUT", "/api/me/github", h.token(user, email), map[string]string{"username": "robert"})
	var body struct {
		PurchasesUpdated int `json:"purchases_updated"`
	}
	r.decode(t, &body)
	if r.status != http.StatusOK || body.PurchasesUpdated != 1 {
		t.Fatalf("PUT /api/me/github = %d %s", r.status, r.body)
	}
	runSteps()
	if c := fake.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators = %+v, want bob removed", c)
	}
	if invs := fake.Invitations(); len(invs) != 1 || invs[0].Invitee != "robert" {
		t.Errorf("invitations = %+v, want one for robert", invs)
	}
	got, err := db.GetPurchase(ctx, p.ID)
	if err != nil || got.AccessState != store.AccessGranted || *got.GitHubUsername != "robert" {
		t.Errorf("purchase = %s %v (%v), want granted to robert", got.AccessState, got.GitHubUsername, err)
	}
}
