package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/paymentd/paymentd/httpapi"
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
