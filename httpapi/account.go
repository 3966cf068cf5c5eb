// The caller's account: the GitHub username that repository access is
// granted to. Setting it also asks fulfillment to grant access for the
// purchases that were waiting for one, and to move access already granted
// to another login.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/paymentd/paymentd/store"
)

// githubChangeRate bounds how often a user may name another GitHub
// account: each change invites the new login from the seller's repository
// (GitHub caps the invitations a repository sends a day, so a loop of
// changes would spend them and delay real buyers' access) and schedules
// steps. Naming the account already set is free.
var githubChangeRate = store.Rate{N: 5, Per: time.Hour}

// AccessRequester grants repository access once a user names their GitHub
// account: it sets the username on the user's paid purchases, schedules the
// steps that grant it (and, for access granted to another login, revoke
// that), and returns how many purchases change.
type AccessRequester interface {
	RequestAccess(ctx context.Context, userID, username string) (int, error)
}

type githubRequest struct {
	Username string `json:"username"`
}

type githubResponse struct {
	GitHubUsername   string `json:"github_username"`
	PurchasesUpdated int    `json:"purchases_updated"`
}

func (a *api) setGitHub(w http.ResponseWriter, r *http.Request, u User) error {
	var req githubRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	if !validGitHubUsername(req.Username) {
		return Errorf(http.StatusBadRequest, "invalid_github_username",
			"a GitHub username has 1-39 letters, digits or single hyphens, and does not start or end with a hyphen")
	}
	if a.access == nil {
		return unavailable("repository access")
	}
	if err := a.limitGitHubChanges(w, r, u, req.Username); err != nil {
		return err
	}
	if err := a.db.UpsertAccount(r.Context(), u.ID, u.Email, req.Username, a.clock.Now()); err != nil {
		return err
	}
	n, err := a.access.RequestAccess(r.Context(), u.ID, req.Username)
	if err != nil {
		return fmt.Errorf("request access for %s: %w", u.ID, err)
	}
	a.log.InfoContext(r.Context(), "github username set", "user_id", u.ID, "purchases_updated", n)
	writeJSON(w, http.StatusOK, githubResponse{GitHubUsername: req.Username, PurchasesUpdated: n})
	return nil
}

// limitGitHubChanges spends the user's githubChangeRate when username is
// not the one their account holds (GitHub logins are case-insensitive).
func (a *api) limitGitHubChanges(w http.ResponseWriter, r *http.Request, u User, username string) error {
	acct, err := a.db.GetAccount(r.Context(), u.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case acct.GitHubUsername != nil && strings.EqualFold(*acct.GitHubUsername, username):
		return nil
	}
	return a.takeRate(w, r, "github:"+u.ID, githubChangeRate, "GitHub username changes")
}
