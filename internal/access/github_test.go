// Tests of the GitHub provider: the real go-github client against
// githubfake served by httptest.

package access_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/steps"
)

const (
	testOwner = "acme"
	testRepo  = "product"
	testToken = "ghp_test"
)

// testNow is the injected clock, deliberately in the past: go-github refuses to send requests
// while its last seen rate limit has not reset by the wall clock, so rate
// limit resets computed from testNow are already over for the client.
func testNow() time.Time { return time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC) }

type ghEnv struct {
	gh   *access.GitHub
	fake *githubfake.Fake
	srv  *httptest.Server
}

func newGHEnv(t *testing.T, clock func() time.Time) ghEnv {
	t.Helper()
	if clock == nil {
		clock = testNow
	}
	fake := githubfake.New(githubfake.Options{Owner: testOwner, Repo: testRepo, Token: testToken, Clock: clock})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	gh, err := access.NewGitHub(access.GitHubOptions{
		Token:      testToken,
		BaseURL:    srv.URL,
		Owner:      testOwner,
		Repo:       testRepo,
		HTTPClient: srv.Client(),
		Clock:      clock,
	})
	if err != nil {
		t.Fatalf("NewGitHub: %v", err)
	}
	return ghEnv{gh: gh, fake: fake, srv: srv}
}

func TestGrantRecordsInvitation(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()

	res, err := env.gh.Grant(ctx, "alice", "grant:p1")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	invs := env.fake.Invitations()
	if len(invs) != 1 || invs[0].Invitee != "alice" || invs[0].Permission != "pull" {
		t.Fatalf("invitations = %+v, want one pull invitation for alice", invs)
	}
	if res.InvitationID != invs[0].ID || res.AlreadyCollaborator {
		t.Fatalf("Grant = %+v, want invitation %d", res, invs[0].ID)
	}

	reqs := env.fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %+v, want 1", reqs)
	}
	r := reqs[0]
	if r.Method != "PUT" || r.Path != "/api/v3/repos/acme/product/collaborators/alice" {
		t.Errorf("request = %s %s", r.Method, r.Path)
	}
	if r.Authorization != "Bearer "+testToken {
		t.Errorf("Authorization = %q", r.Authorization)
	}
	if !strings.Contains(string(r.Body), `"permission":"pull"`) {
		t.Errorf("body = %s, want permission pull", r.Body)
	}

	// A retry before acceptance gets the same invitation back.
	again, err := env.gh.Grant(ctx, "alice", "grant:p1")
	if err != nil {
		t.Fatalf("second Grant: %v", err)
	}
	if again != res || len(env.fake.Invitations()) != 1 {
		t.Fatalf("second Grant = %+v with %d invitations, want %+v and 1", again, len(env.fake.Invitations()), res)
	}
}

func TestGrantAfterAcceptanceIsAlreadyCollaborator(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	res, err := env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if !env.fake.AcceptInvitation(res.InvitationID) {
		t.Fatalf("invitation %d not found", res.InvitationID)
	}
	res, err = env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatalf("Grant after acceptance: %v", err)
	}
	if !res.AlreadyCollaborator || res.InvitationID != 0 {
		t.Fatalf("Grant = %+v, want AlreadyCollaborator and no invitation", res)
	}
}

func TestRevokeRemovesCollaborator(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	res, err := env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	env.fake.AcceptInvitation(res.InvitationID)
	env.fake.AddCollaborator("bob", "pull")

	if err := env.gh.Revoke(ctx, access.User{Login: "alice"}, res.InvitationID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	got := env.fake.Collaborators()
	if len(got) != 1 || got[0].Login != "bob" {
		t.Fatalf("collaborators = %+v, want only bob", got)
	}
}

func TestRevokeDeletesPendingInvitationByID(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	res, err := env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	other := env.fake.AddInvitation("carol", "pull")

	// Refunded before alice accepted.
	if err := env.gh.Revoke(ctx, access.User{Login: "alice"}, res.InvitationID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	invs := env.fake.Invitations()
	if len(invs) != 1 || invs[0].ID != other {
		t.Fatalf("invitations = %+v, want only carol's", invs)
	}
	if env.fake.AcceptInvitation(res.InvitationID) {
		t.Fatal("revoked invitation could still be accepted")
	}
	var deletedByID bool
	for _, r := range env.fake.Requests() {
		if r.Method == "DELETE" && strings.HasSuffix(r.Path, fmt.Sprintf("/invitations/%d", res.InvitationID)) && r.Status == 204 {
			deletedByID = true
		}
	}
	if !deletedByID {
		t.Errorf("no DELETE of invitation %d in %+v", res.InvitationID, env.fake.Requests())
	}
}

func TestRevokeFindsInvitationOnlyByListing(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	// 150 unrelated invitations push alice's onto the second page.
	for i := range 150 {
		env.fake.AddInvitation(fmt.Sprintf("user%d", i), "pull")
	}
	// Invited under a different spelling, and the id was never recorded.
	aliceID := env.fake.AddInvitation("Alice", "pull")

	if err := env.gh.Revoke(ctx, access.User{Login: "alice"}, 0); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	invs := env.fake.Invitations()
	if len(invs) != 150 {
		t.Fatalf("%d invitations left, want 150", len(invs))
	}
	for _, inv := range invs {
		if inv.ID == aliceID {
			t.Fatalf("alice's invitation %d survived", aliceID)
		}
	}
	var pages []string
	for _, r := range env.fake.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/invitations") {
			pages = append(pages, r.Query)
		}
	}
	if len(pages) != 2 || !strings.Contains(pages[1], "page=2") {
		t.Errorf("invitation listing queries = %q, want two pages", pages)
	}
}

func TestRevokeAlreadyGoneSucceeds(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	if err := env.gh.Revoke(ctx, access.User{Login: "ghost"}, 4242); err != nil {
		t.Fatalf("Revoke of someone never granted: %v", err)
	}
	// And repeating a completed revoke is just as fine.
	res, err := env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	for i := range 2 {
		if err := env.gh.Revoke(ctx, access.User{Login: "alice"}, res.InvitationID); err != nil {
			t.Fatalf("Revoke #%d: %v", i+1, err)
		}
	}
}

func TestGrantUnknownUserIsPermanent(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	env.fake.AddUnknownUser("nobody")

	_, err := env.gh.Grant(ctx, "nobody", "k")
	if !steps.IsPermanent(err) || !errors.Is(err, access.ErrUnknownUser) {
		t.Fatalf("Grant(unknown) = %v, want permanent ErrUnknownUser", err)
	}
	if !strings.Contains(err.Error(), `"nobody"`) {
		t.Errorf("error %q does not name the user", err)
	}

	env.fake.FailNext(1, 422)
	_, err = env.gh.Grant(ctx, "someone", "k")
	if !steps.IsPermanent(err) || !errors.Is(err, access.ErrUnknownUser) {
		t.Fatalf("Grant after 422 = %v, want permanent ErrUnknownUser", err)
	}
}

func TestInvalidUsernameIsPermanentWithoutRequest(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	for _, name := range []string{"", "../admin", "a/b", "-lead", strings.Repeat("x", 40), "al ice"} {
		_, err := env.gh.Grant(ctx, name, "k")
		if !steps.IsPermanent(err) || !errors.Is(err, access.ErrInvalidUsername) {
			t.Errorf("Grant(%q) = %v, want permanent ErrInvalidUsername", name, err)
		}
		if err := env.gh.Revoke(ctx, access.User{Login: name}, 0); !steps.IsPermanent(err) {
			t.Errorf("Revoke(%q) = %v, want permanent", name, err)
		}
	}
	if n := len(env.fake.Requests()); n != 0 {
		t.Fatalf("%d requests sent for invalid usernames", n)
	}
}

func TestRateLimitRetriesAfterReset(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	reset := testNow().Add(90 * time.Second)

	env.fake.RateLimitNext(1, reset)
	_, err := env.gh.Grant(ctx, "alice", "k")
	assertRetryAfter(t, "Grant", err, 90*time.Second)

	env.fake.RateLimitNext(1, reset)
	err = env.gh.Revoke(ctx, access.User{Login: "alice"}, 0)
	assertRetryAfter(t, "Revoke", err, 90*time.Second)

	env.fake.RateLimitNext(1, reset)
	_, err = env.gh.Snapshot(ctx)
	assertRetryAfter(t, "Snapshot", err, 90*time.Second)

	env.fake.RateLimitNext(1, reset)
	_, err = env.gh.User(ctx, "alice")
	assertRetryAfter(t, "User", err, 90*time.Second)

	// Once the limit is over, the same call goes through.
	if _, err := env.gh.Grant(ctx, "alice", "k"); err != nil {
		t.Fatalf("Grant after reset: %v", err)
	}
}

func TestSecondaryRateLimitUsesRetryAfter(t *testing.T) {
	for _, status := range []int{403, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			env := newGHEnv(t, nil)
			env.fake.SecondaryRateLimitNext(1, status, 30*time.Second)
			_, err := env.gh.Grant(context.Background(), "alice", "k")
			d, ok := steps.RetryDelay(err)
			if !ok || d != 30*time.Second || steps.IsPermanent(err) {
				t.Fatalf("Grant = %v (delay %v, %v), want RetryAfter 30s", err, d, ok)
			}
		})
	}
}

func TestRateLimitKnownToClientSkipsRequest(t *testing.T) {
	// With the wall clock, the reset is in the future for go-github too: the
	// second call is refused by the client itself, and is still RetryAfter.
	now := time.Now().Truncate(time.Second)
	env := newGHEnv(t, func() time.Time { return now })
	env.fake.RateLimitNext(1, now.Add(time.Hour))

	for i := range 2 {
		_, err := env.gh.Grant(context.Background(), "alice", "k")
		assertRetryAfter(t, fmt.Sprintf("Grant #%d", i+1), err, time.Hour)
	}
	if n := len(env.fake.Requests()); n != 1 {
		t.Fatalf("%d requests reached GitHub, want 1", n)
	}
}

func TestServerErrorIsRetryable(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	env.fake.FailNext(1, 500)
	_, err := env.gh.Grant(ctx, "alice", "k")
	assertPlain(t, "Grant after 500", err)

	env.fake.FailNext(1, 502)
	assertPlain(t, "Revoke after 502", env.gh.Revoke(ctx, access.User{Login: "alice"}, 0))

	if _, err := env.gh.Grant(ctx, "alice", "k"); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestTransportErrorIsRetryable(t *testing.T) {
	env := newGHEnv(t, nil)
	env.srv.Close()
	_, err := env.gh.Grant(context.Background(), "alice", "k")
	assertPlain(t, "Grant to a closed server", err)
}

func TestBadTokenIsPermanent(t *testing.T) {
	env := newGHEnv(t, nil)
	gh, err := access.NewGitHub(access.GitHubOptions{
		Token: "wrong", BaseURL: env.srv.URL, Owner: testOwner, Repo: testRepo, HTTPClient: env.srv.Client(),
	})
	if err != nil {
		t.Fatalf("NewGitHub: %v", err)
	}
	if _, err := gh.Grant(context.Background(), "alice", "k"); !steps.IsPermanent(err) {
		t.Fatalf("Grant with bad token = %v, want permanent", err)
	}
}

func TestSnapshotListsAccessByUserID(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	for i := range 150 {
		env.fake.AddCollaborator(fmt.Sprintf("member%d", i), "pull")
	}
	for i := range 120 {
		env.fake.AddInvitation(fmt.Sprintf("invitee%d", i), "pull")
	}
	before := len(env.fake.Requests())
	s, err := env.gh.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if n := len(env.fake.Requests()) - before; n != 4 {
		t.Errorf("%d requests, want 4 (2 pages of collaborators, 2 of invitations)", n)
	}
	if len(s.Collaborators) != 150 || len(s.Invitations) != 120 {
		t.Fatalf("snapshot has %d collaborators and %d invitations, want 150 and 120", len(s.Collaborators), len(s.Invitations))
	}
	member, _ := env.fake.UserID("member7")
	invitee, _ := env.fake.UserID("invitee7")
	if !s.Has(member) || !s.Has(invitee) || s.Has(1) {
		t.Errorf("Has(member7, invitee7, 1) = %v %v %v", s.Has(member), s.Has(invitee), s.Has(1))
	}
	if id, ok := s.IDOf("MEMBER7"); !ok || id != member {
		t.Errorf("IDOf(MEMBER7) = %d %v, want %d", id, ok, member)
	}
	for _, r := range env.fake.Requests()[before:] {
		if strings.HasSuffix(r.Path, "/collaborators") && !strings.Contains(r.Query, "affiliation=direct") {
			t.Errorf("collaborators listed without affiliation=direct: %s", r.Query)
		}
	}
}

func TestRevokeByIDReachesARenamedUserAndNotTheNewOwnerOfTheLogin(t *testing.T) {
	env := newGHEnv(t, nil)
	ctx := context.Background()
	alice, err := env.gh.User(ctx, "alice")
	if err != nil || alice.ID == 0 || alice.Login != "alice" {
		t.Fatalf("User(alice) = %+v, %v", alice, err)
	}
	res, err := env.gh.Grant(ctx, "alice", "k")
	if err != nil {
		t.Fatal(err)
	}
	env.fake.AcceptInvitation(res.InvitationID)
	bob, _ := env.gh.User(ctx, "bob")
	if _, err := env.gh.Grant(ctx, "bob", "k2"); err != nil { // bob's invitation stays pending
		t.Fatal(err)
	}

	env.fake.RenameUser("alice", "alice2")
	env.fake.RenameUser("bob", "bobby")
	stranger := env.fake.AddUser("alice")
	env.fake.AddCollaborator("alice", "push") // the new alice has access of their own

	for _, id := range []int64{alice.ID, bob.ID} {
		now, err := env.gh.UserByID(ctx, id)
		if err != nil {
			t.Fatalf("UserByID(%d): %v", id, err)
		}
		if err := env.gh.Revoke(ctx, now, 0); err != nil {
			t.Fatalf("Revoke(%+v): %v", now, err)
		}
	}
	if invs := env.fake.Invitations(); len(invs) != 0 {
		t.Errorf("invitations = %+v, want bobby's deleted", invs)
	}
	if c := env.fake.Collaborators(); len(c) != 1 || c[0].ID != stranger || c[0].Permission != "push" {
		t.Errorf("collaborators = %+v, want only the new alice (%d), untouched", c, stranger)
	}
	if ok, err := env.gh.IsCollaborator(ctx, "alice2"); err != nil || ok {
		t.Errorf("IsCollaborator(alice2) = %v, %v; want false", ok, err)
	}
	if _, err := env.gh.UserByID(ctx, 1); !errors.Is(err, access.ErrNoSuchUser) || steps.IsPermanent(err) {
		t.Errorf("UserByID(deleted) = %v, want ErrNoSuchUser, not permanent", err)
	}
	env.fake.AddUnknownUser("ghost")
	if _, err := env.gh.User(ctx, "ghost"); !errors.Is(err, access.ErrUnknownUser) || !steps.IsPermanent(err) {
		t.Errorf("User(unknown) = %v, want permanent ErrUnknownUser", err)
	}
}

func TestBaseURLForms(t *testing.T) {
	fake := githubfake.New(githubfake.Options{Owner: testOwner, Repo: testRepo})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/api/v3", srv.URL + "/api/v3/"} {
		gh, err := access.NewGitHub(access.GitHubOptions{
			Token: "t", BaseURL: base, Owner: testOwner, Repo: testRepo, HTTPClient: srv.Client(),
		})
		if err != nil {
			t.Fatalf("NewGitHub(%q): %v", base, err)
		}
		if _, err := gh.IsCollaborator(context.Background(), "alice"); err != nil {
			t.Errorf("IsCollaborator via %q: %v", base, err)
		}
	}
	for _, r := range fake.Requests() {
		if !strings.HasPrefix(r.Path, "/api/v3/repos/") {
			t.Errorf("request path %q, want /api/v3/repos/...", r.Path)
		}
	}
}

func TestNewGitHubValidates(t *testing.T) {
	for name, opts := range map[string]access.GitHubOptions{
		"no token":     {Owner: "o", Repo: "r"},
		"no repo":      {Token: "t", Owner: "o"},
		"bad perm":     {Token: "t", Owner: "o", Repo: "r", Permission: "read-write"},
		"relative URL": {Token: "t", Owner: "o", Repo: "r", BaseURL: "ghe.example.com"},
	} {
		if _, err := access.NewGitHub(opts); err == nil {
			t.Errorf("%s: NewGitHub succeeded", name)
		}
	}
}

// assertRetryAfter checks err asks for a retry about want from now: the
// provider adds a second of margin to a reset time.
func assertRetryAfter(t *testing.T, what string, err error, want time.Duration) {
	t.Helper()
	d, ok := steps.RetryDelay(err)
	if !ok || steps.IsPermanent(err) {
		t.Fatalf("%s = %v, want RetryAfter", what, err)
	}
	if d < want || d > want+2*time.Second {
		t.Fatalf("%s: retry delay %v, want about %v", what, d, want)
	}
}

// assertPlain checks err is a plain, retry-with-backoff error.
func assertPlain(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if steps.IsPermanent(err) {
		t.Fatalf("%s = %v, want retryable, got permanent", what, err)
	}
	if _, ok := steps.RetryDelay(err); ok {
		t.Fatalf("%s = %v, want plain backoff, got RetryAfter", what, err)
	}
}
