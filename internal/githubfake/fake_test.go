// Tests of the fake through the real go-github client, so the fake stays
// faithful to what that client sends and expects.

package githubfake_test

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

	"github.com/google/go-github/v60/github"

	"github.com/paymentd/paymentd/internal/githubfake"
)

func newClient(t *testing.T, f *githubfake.Fake, enterprise bool) *github.Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := github.NewClient(srv.Client()).WithAuthToken("tok")
	if enterprise {
		var err error
		if c, err = c.WithEnterpriseURLs(srv.URL, srv.URL); err != nil {
			t.Fatalf("WithEnterpriseURLs: %v", err)
		}
		return c
	}
	base, err := c.BaseURL.Parse(srv.URL + "/")
	if err != nil {
		t.Fatalf("base URL: %v", err)
	}
	c.BaseURL = base
	return c
}

func TestCollaboratorLifecycle(t *testing.T) {
	for _, enterprise := range []bool{false, true} {
		t.Run(fmt.Sprintf("enterprise=%v", enterprise), func(t *testing.T) {
			f := githubfake.New(githubfake.Options{Owner: "acme", Repo: "product", Token: "tok"})
			c := newClient(t, f, enterprise)
			ctx := context.Background()

			inv, resp, err := c.Repositories.AddCollaborator(ctx, "acme", "product", "Alice",
				&github.RepositoryAddCollaboratorOptions{Permission: "pull"})
			if err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("AddCollaborator = %v, %v", resp, err)
			}
			if inv.GetID() == 0 || inv.GetInvitee().GetLogin() != "Alice" || inv.GetPermissions() != "read" {
				t.Fatalf("invitation = %+v", inv)
			}
			if ok, _, err := c.Repositories.IsCollaborator(ctx, "acme", "product", "alice"); err != nil || ok {
				t.Fatalf("IsCollaborator before acceptance = %v, %v", ok, err)
			}
			if !f.AcceptInvitation(inv.GetID()) {
				t.Fatal("AcceptInvitation: not found")
			}
			if ok, _, err := c.Repositories.IsCollaborator(ctx, "acme", "product", "alice"); err != nil || !ok {
				t.Fatalf("IsCollaborator after acceptance = %v, %v", ok, err)
			}
			_, resp, err = c.Repositories.AddCollaborator(ctx, "acme", "product", "alice", nil)
			if err != nil || resp.StatusCode != http.StatusNoContent {
				t.Fatalf("AddCollaborator of a collaborator = %v, %v; want 204", resp, err)
			}
			for range 2 { // 204 whether or not still a collaborator
				if resp, err := c.Repositories.RemoveCollaborator(ctx, "acme", "product", "ALICE"); err != nil || resp.StatusCode != 204 {
					t.Fatalf("RemoveCollaborator = %v, %v", resp, err)
				}
			}
			if got := f.Collaborators(); len(got) != 0 {
				t.Fatalf("collaborators = %+v", got)
			}
			wantPrefix := "/repos/"
			if enterprise {
				wantPrefix = "/api/v3/repos/"
			}
			for _, r := range f.Requests() {
				if !strings.HasPrefix(r.Path, wantPrefix) || r.Authorization != "Bearer tok" {
					t.Errorf("request %s %s auth %q", r.Method, r.Path, r.Authorization)
				}
			}
		})
	}
}

func TestUnknownUserAndOtherRepo(t *testing.T) {
	f := githubfake.New(githubfake.Options{Owner: "acme", Repo: "product"})
	c := newClient(t, f, false)
	ctx := context.Background()
	f.AddUnknownUser("Nobody")

	_, _, err := c.Repositories.AddCollaborator(ctx, "acme", "product", "nobody", nil)
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("AddCollaborator(unknown) = %v, want 404", err)
	}
	_, _, err = c.Repositories.AddCollaborator(ctx, "acme", "elsewhere", "alice", nil)
	if !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("AddCollaborator on another repo = %v, want 404", err)
	}
	if _, err := c.Repositories.DeleteInvitation(ctx, "acme", "product", 99); !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("DeleteInvitation(missing) = %v, want 404", err)
	}
	if got := f.Invitations(); len(got) != 0 {
		t.Fatalf("invitations = %+v", got)
	}
}

func TestInvitationPagination(t *testing.T) {
	f := githubfake.New(githubfake.Options{})
	c := newClient(t, f, true)
	ctx := context.Background()
	var want []int64
	for i := range 5 {
		want = append(want, f.AddInvitation(fmt.Sprintf("user%d", i), "push"))
	}

	var got []int64
	opts := &github.ListOptions{PerPage: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		invs, resp, err := c.Repositories.ListInvitations(ctx, "any", "repo", opts)
		if err != nil {
			t.Fatalf("ListInvitations: %v", err)
		}
		if resp.LastPage != 0 && resp.LastPage != 3 {
			t.Errorf("LastPage = %d, want 3", resp.LastPage)
		}
		for _, inv := range invs {
			got = append(got, inv.GetID())
			if inv.GetPermissions() != "write" {
				t.Errorf("permissions = %q, want write", inv.GetPermissions())
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

func TestFaultInjection(t *testing.T) {
	f := githubfake.New(githubfake.Options{})
	c := newClient(t, f, false)
	ctx := context.Background()
	reset := time.Unix(1700000000, 0) // in the past, so go-github keeps sending

	f.FailNext(1, 502)
	f.RateLimitNext(1, reset)
	f.SecondaryRateLimitNext(1, 403, 7*time.Second)

	_, _, err := c.Repositories.IsCollaborator(ctx, "o", "r", "alice")
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 502 {
		t.Fatalf("first = %v, want 502", err)
	}
	_, _, err = c.Repositories.IsCollaborator(ctx, "o", "r", "alice")
	var rl *github.RateLimitError
	if !errors.As(err, &rl) || !rl.Rate.Reset.Time.Equal(reset) {
		t.Fatalf("second = %v, want RateLimitError resetting at %v", err, reset)
	}
	_, _, err = c.Repositories.IsCollaborator(ctx, "o", "r", "alice")
	var abuse *github.AbuseRateLimitError
	if !errors.As(err, &abuse) || abuse.RetryAfter == nil || *abuse.RetryAfter != 7*time.Second {
		t.Fatalf("third = %v, want AbuseRateLimitError with RetryAfter 7s", err)
	}
	// go-github now holds back until the secondary limit's Retry-After has
	// passed by the wall clock, so check the queue is spent directly.
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest("GET", "/repos/o/r/collaborators/alice", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("fourth = %d, want 404 (faults spent, not a collaborator)", rec.Code)
	}
	var statuses []int
	for _, r := range f.Requests() {
		statuses = append(statuses, r.Status)
	}
	if fmt.Sprint(statuses) != "[502 403 403 404]" {
		t.Fatalf("recorded statuses %v", statuses)
	}
}

func TestTokenRequired(t *testing.T) {
	f := githubfake.New(githubfake.Options{Token: "right"})
	srv := httptest.NewServer(f)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/repos/o/r/invitations")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without token = %d, want 401", resp.StatusCode)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := githubfake.New(githubfake.Options{})
	c := newClient(t, f, false)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", i%10) // pairs race on the same user
			if _, _, err := c.Repositories.AddCollaborator(ctx, "o", "r", user, nil); err != nil {
				t.Errorf("AddCollaborator(%s): %v", user, err)
			}
			_ = f.Invitations()
		}()
	}
	wg.Wait()
	if got := f.Invitations(); len(got) != 10 {
		t.Fatalf("%d invitations, want one per user (10)", len(got))
	}
	if got := len(f.Requests()); got != 20 {
		t.Fatalf("%d requests recorded, want 20", got)
	}
}

func TestUsersByLoginAndByIDAcrossARename(t *testing.T) {
	f := githubfake.New(githubfake.Options{Owner: "acme", Repo: "product"})
	c := newClient(t, f, false)
	ctx := context.Background()

	alice, _, err := c.Users.Get(ctx, "alice")
	if err != nil || alice.GetID() == 0 || alice.GetLogin() != "alice" {
		t.Fatalf("Users.Get(alice) = %+v, %v", alice, err)
	}
	inv, _, err := c.Repositories.AddCollaborator(ctx, "acme", "product", "ALICE", nil)
	if err != nil || inv.GetInvitee().GetID() != alice.GetID() {
		t.Fatalf("invitation = %+v, %v; want invitee %d", inv, err, alice.GetID())
	}
	f.AcceptInvitation(inv.GetID())

	if !f.RenameUser("alice", "alice2") || f.RenameUser("nobody", "x") {
		t.Fatal("RenameUser answered wrongly")
	}
	byID, _, err := c.Users.GetByID(ctx, alice.GetID())
	if err != nil || byID.GetLogin() != "alice2" {
		t.Fatalf("Users.GetByID after the rename = %+v, %v; want alice2", byID, err)
	}
	var er *github.ErrorResponse
	if _, _, err := c.Users.Get(ctx, "alice"); !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("Users.Get of the login left free = %v, want 404", err)
	}
	if ok, _, err := c.Repositories.IsCollaborator(ctx, "acme", "product", "alice2"); err != nil || !ok {
		t.Fatalf("access did not follow the rename: %v, %v", ok, err)
	}
	if c := f.Collaborators(); len(c) != 1 || c[0].ID != alice.GetID() || c[0].Login != "alice2" {
		t.Fatalf("collaborators = %+v", c)
	}

	stranger := f.AddUser("alice")
	if stranger == alice.GetID() {
		t.Fatal("a new user took the old user's id")
	}
	if ok, _, _ := c.Repositories.IsCollaborator(ctx, "acme", "product", "alice"); ok {
		t.Fatal("the stranger who took the login has the old user's access")
	}
	if _, _, err := c.Users.GetByID(ctx, 1); !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("Users.GetByID(unknown) = %v, want 404", err)
	}
	f.AddUnknownUser("ghost")
	if _, _, err := c.Users.Get(ctx, "ghost"); !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("Users.Get(unknown) = %v, want 404", err)
	}
}

func TestCollaboratorListingPages(t *testing.T) {
	f := githubfake.New(githubfake.Options{})
	c := newClient(t, f, true)
	ctx := context.Background()
	for i := range 5 {
		f.AddCollaborator(fmt.Sprintf("user%d", i), "pull")
	}
	f.AddCollaborator("admin", "admin")
	seen := map[string]int64{}
	opts := &github.ListCollaboratorsOptions{Affiliation: "direct", ListOptions: github.ListOptions{PerPage: 4}}
	pages := 0
	for {
		users, resp, err := c.Repositories.ListCollaborators(ctx, "any", "repo", opts)
		if err != nil {
			t.Fatalf("ListCollaborators: %v", err)
		}
		pages++
		for _, u := range users {
			seen[u.GetLogin()] = u.GetID()
			if u.GetLogin() == "user0" && (!u.GetPermissions()["pull"] || u.GetPermissions()["push"]) {
				t.Errorf("user0 permissions = %v, want pull only", u.GetPermissions())
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if pages != 2 || len(seen) != 6 {
		t.Fatalf("%d pages listing %v; want 2 pages of 6 users", pages, seen)
	}
	for login, id := range seen {
		if want, _ := f.UserID(login); id != want {
			t.Errorf("%s listed with id %d, want %d", login, id, want)
		}
	}
	for _, r := range f.Requests() {
		if !strings.Contains(r.Query, "affiliation=direct") {
			t.Errorf("request %s?%s lost the filter", r.Path, r.Query)
		}
	}
}

func TestFaultForOneRouteAndBeforeServe(t *testing.T) {
	f := githubfake.New(githubfake.Options{})
	c := newClient(t, f, false)
	ctx := context.Background()
	f.FailNextRequest(1, "PUT", "/collaborators/", http.StatusBadGateway)
	var seen []string
	f.BeforeServe(func(method, path string) { seen = append(seen, method+" "+path) })

	if _, _, err := c.Users.Get(ctx, "alice"); err != nil {
		t.Fatalf("a request the fault does not match failed: %v", err)
	}
	_, _, err := c.Repositories.AddCollaborator(ctx, "o", "r", "alice", nil)
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != http.StatusBadGateway {
		t.Fatalf("AddCollaborator = %v, want the queued 502", err)
	}
	if _, _, err := c.Repositories.AddCollaborator(ctx, "o", "r", "alice", nil); err != nil {
		t.Fatalf("the fault was not spent: %v", err)
	}
	if fmt.Sprint(seen) != "[GET /users/alice PUT /repos/o/r/collaborators/alice PUT /repos/o/r/collaborators/alice]" {
		t.Errorf("BeforeServe saw %v", seen)
	}
}
