// GitHub repository access: a purchase invites the buyer as a collaborator
// on a private repository, and a refund removes the collaborator and deletes
// any invitation still pending, so an unaccepted invitation cannot be used
// after the money went back.
//
// A GitHub user is known by a numeric id that never changes; the login is a
// name the user may change, and someone else may take the old one. So a
// grant records the id (User), a revocation finds the current login from
// the id (UserByID), and drift detection compares ids (Snapshot).

package access

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/paymentd/paymentd/steps"
)

// ErrUnknownUser is wrapped (inside steps.Permanent) by GitHub.Grant when
// GitHub refuses the login: the user does not exist, cannot be invited, or
// the repository is not visible to the token.
var ErrUnknownUser = errors.New("github user cannot be invited")

// ErrNoSuchUser is wrapped by GitHub.UserByID when no account has the id
// any more: the user deleted it.
var ErrNoSuchUser = errors.New("github account no longer exists")

// ErrInvalidUsername is wrapped (inside steps.Permanent) when a username is
// not a syntactically valid GitHub login; no request is made.
var ErrInvalidUsername = errors.New("invalid github username")

const (
	// defaultPermission is the collaborator permission granted when
	// GitHubOptions.Permission is empty: read-only access.
	defaultPermission = "pull"
	// defaultHTTPTimeout bounds each GitHub request when the caller gives
	// no HTTP client.
	defaultHTTPTimeout = 30 * time.Second
	// defaultRateLimitDelay is how long to wait when GitHub rate limits
	// without saying until when.
	defaultRateLimitDelay = time.Minute
	// rateLimitMargin is added to a rate limit's reset time, which has
	// one-second resolution, so the retry does not arrive a moment early.
	rateLimitMargin = time.Second
	// perPage is the page size for listing invitations and collaborators
	// (GitHub's maximum).
	perPage = 100
	// maxPages bounds a listing: 100,000 entries.
	maxPages = 1000
)

// GitHubOptions configures a GitHub provider.
type GitHubOptions struct {
	// Token is a token allowed to administer the repository's
	// collaborators. Required.
	Token string
	// BaseURL is the REST API root. Empty means https://api.github.com/.
	// For GitHub Enterprise Server give https://ghe.example.com/api/v3/ (or
	// just https://ghe.example.com; the /api/v3/ suffix and trailing slash
	// are added when missing, as go-github's WithEnterpriseURLs does).
	BaseURL string
	// Owner and Repo name the repository access is granted to. Required.
	Owner, Repo string
	// Permission is the collaborator permission granted: pull, triage,
	// push, maintain or admin. Empty means pull.
	Permission string
	// HTTPClient sends the requests; nil means a client with a 30 second
	// timeout.
	HTTPClient *http.Client
	// Clock tells the time for rate limit delays; nil means time.Now.
	Clock func() time.Time
}

// GitHub grants and revokes collaborator access to one repository. It is
// safe for concurrent use.
type GitHub struct {
	client     *github.Client
	owner      string
	repo       string
	permission string
	now        func() time.Time
}

// GrantResult is the outcome of GitHub.Grant.
type GrantResult struct {
	// InvitationID is the id of the pending invitation GitHub created (or
	// already had) for the user; 0 if the user was already a collaborator.
	InvitationID int64
	// AlreadyCollaborator reports that the user already had access, so no
	// invitation was needed.
	AlreadyCollaborator bool
}

// User is a GitHub account: ID never changes, Login may.
type User struct {
	ID    int64
	Login string
}

// Snapshot is the repository's access at one moment, as one listing of its
// direct collaborators and pending invitations sees it. Use it from one
// goroutine.
type Snapshot struct {
	// Collaborators maps a collaborator's user id to their login.
	Collaborators map[int64]string
	// Invitations maps an invitee's user id to their pending invitation.
	Invitations map[int64]Invitation
	// logins maps every lower-cased login listed to its user id; IDOf
	// builds it on first use.
	logins map[string]int64
}

// Invitation is a pending repository invitation, as a Snapshot lists it.
type Invitation struct {
	ID    int64
	Login string // the invitee's login
}

// Has reports whether user id is a collaborator or has a pending
// invitation.
func (s *Snapshot) Has(id int64) bool {
	_, collab := s.Collaborators[id]
	_, invited := s.Invitations[id]
	return collab || invited
}

// IDOf returns the user id a login belongs to, if it was listed (compared
// case-insensitively).
func (s *Snapshot) IDOf(login string) (int64, bool) {
	if s.logins == nil {
		s.logins = make(map[string]int64, len(s.Collaborators)+len(s.Invitations))
		for id, l := range s.Collaborators {
			s.logins[strings.ToLower(l)] = id
		}
		for id, inv := range s.Invitations {
			s.logins[strings.ToLower(inv.Login)] = id
		}
	}
	id, ok := s.logins[strings.ToLower(login)]
	return id, ok
}

// NewGitHub returns a GitHub provider configured by opts.
func NewGitHub(opts GitHubOptions) (*GitHub, error) {
	if opts.Token == "" {
		return nil, errors.New("access: github: token is required")
	}
	if opts.Owner == "" || opts.Repo == "" {
		return nil, errors.New("access: github: owner and repo are required")
	}
	perm := opts.Permission
	if perm == "" {
		perm = defaultPermission
	}
	switch perm {
	case "pull", "triage", "push", "maintain", "admin":
	default:
		return nil, fmt.Errorf("access: github: unknown permission %q (want pull, triage, push, maintain or admin)", perm)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: defaultHTTPTimeout}
	}
	client := github.NewClient(hc).WithAuthToken(opts.Token)
	if opts.BaseURL != "" {
		u, err := url.Parse(opts.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("access: github: base URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("access: github: base URL %q is not an absolute http(s) URL", opts.BaseURL)
		}
		client, err = client.WithEnterpriseURLs(opts.BaseURL, opts.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("access: github: base URL: %w", err)
		}
	}
	now := opts.Clock
	if now == nil {
		now = time.Now
	}
	return &GitHub{client: client, owner: opts.Owner, repo: opts.Repo, permission: perm, now: now}, nil
}

// Grant invites username as a collaborator with the configured permission.
// Repeating it is harmless: GitHub returns the same pending invitation, or
// reports that the user is already a collaborator. For a collaborator,
// though, GitHub silently sets the permission to ours, which would demote
// someone who had more: check IsCollaborator first. GitHub has no idempotency
// keys, so idemKey only labels errors for correlation with the step.
//
// An unknown user (GitHub's 404 or 422) or an invalid login is
// steps.Permanent wrapping ErrUnknownUser or ErrInvalidUsername; a rate limit
// is steps.RetryAfter until the limit resets; server and transport errors
// are plain errors.
func (g *GitHub) Grant(ctx context.Context, username, idemKey string) (GrantResult, error) {
	what := fmt.Sprintf("access: github: invite %q to %s/%s (key %s)", username, g.owner, g.repo, idemKey)
	if err := checkLogin(username); err != nil {
		return GrantResult{}, steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	inv, resp, err := g.client.Repositories.AddCollaborator(ctx, g.owner, g.repo, username,
		&github.RepositoryAddCollaboratorOptions{Permission: g.permission})
	if err != nil {
		if s := statusOf(err); s == http.StatusNotFound || s == http.StatusUnprocessableEntity {
			return GrantResult{}, steps.Permanent(fmt.Errorf(
				"%s: %w: GitHub answered %d (no such user, or the repository is not visible to the token): %w",
				what, ErrUnknownUser, s, err))
		}
		return GrantResult{}, g.classify(what, err)
	}
	if resp.StatusCode == http.StatusNoContent {
		return GrantResult{AlreadyCollaborator: true}, nil
	}
	if inv.GetID() == 0 {
		return GrantResult{}, fmt.Errorf("%s: GitHub answered %d without an invitation id", what, resp.StatusCode)
	}
	return GrantResult{InvitationID: inv.GetID()}, nil
}

// User looks up the account that has login now. An unknown login (404) or
// an invalid one is steps.Permanent wrapping ErrUnknownUser or
// ErrInvalidUsername; other errors are classified as for Grant.
func (g *GitHub) User(ctx context.Context, login string) (User, error) {
	what := fmt.Sprintf("access: github: look up user %q", login)
	if err := checkLogin(login); err != nil {
		return User{}, steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	u, _, err := g.client.Users.Get(ctx, login)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return User{}, steps.Permanent(fmt.Errorf("%s: %w: GitHub answered 404: %w", what, ErrUnknownUser, err))
		}
		return User{}, g.classify(what, err)
	}
	if u.GetID() == 0 {
		return User{}, fmt.Errorf("%s: GitHub answered without a user id", what)
	}
	return User{ID: u.GetID(), Login: u.GetLogin()}, nil
}

// UserByID looks up the account with id, whatever its login is now. A
// deleted account (404) wraps ErrNoSuchUser; other errors are classified
// as for Grant.
func (g *GitHub) UserByID(ctx context.Context, id int64) (User, error) {
	what := fmt.Sprintf("access: github: look up user %d", id)
	u, _, err := g.client.Users.GetByID(ctx, id)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return User{}, fmt.Errorf("%s: %w", what, ErrNoSuchUser)
		}
		return User{}, g.classify(what, err)
	}
	if err := checkLogin(u.GetLogin()); err != nil {
		return User{}, fmt.Errorf("%s: %w", what, err)
	}
	return User{ID: id, Login: u.GetLogin()}, nil
}

// IsCollaborator reports whether login has access to the repository now,
// as a collaborator or through an organization. Errors are classified as
// for Grant.
func (g *GitHub) IsCollaborator(ctx context.Context, login string) (bool, error) {
	what := fmt.Sprintf("access: github: check %q on %s/%s", login, g.owner, g.repo)
	if err := checkLogin(login); err != nil {
		return false, steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	ok, _, err := g.client.Repositories.IsCollaborator(ctx, g.owner, g.repo, login)
	if err != nil {
		return false, g.classify(what, err)
	}
	return ok, nil
}

// Revoke takes user's access away: it deletes the pending invitation
// invitationID (if not 0) and every other pending invitation whose invitee
// is user (by id; by login, case-insensitively, when the id is 0), found by
// listing them all, then removes user.Login as a collaborator (unless it is
// empty). Invitations go first so that one accepted mid-way is still caught
// by the removal. Anything already gone counts as done, so Revoke is safe
// to repeat. Errors are classified as for Grant.
func (g *GitHub) Revoke(ctx context.Context, user User, invitationID int64) error {
	what := fmt.Sprintf("access: github: revoke %q (id %d) from %s/%s", user.Login, user.ID, g.owner, g.repo)
	if user.Login != "" {
		if err := checkLogin(user.Login); err != nil {
			return steps.Permanent(fmt.Errorf("%s: %w", what, err))
		}
	} else if user.ID == 0 {
		return steps.Permanent(fmt.Errorf("%s: neither a user id nor a login", what))
	}
	if invitationID != 0 {
		if err := g.deleteInvitation(ctx, invitationID); err != nil {
			return g.classify(what, err)
		}
	}
	var pending []int64
	err := g.listInvitations(ctx, func(inv *github.RepositoryInvitation) {
		invitee := inv.GetInvitee()
		if inv.GetID() != 0 && ((user.ID != 0 && invitee.GetID() == user.ID) ||
			(user.ID == 0 && strings.EqualFold(invitee.GetLogin(), user.Login))) {
			pending = append(pending, inv.GetID())
		}
	})
	if err != nil {
		return g.classify(what, err)
	}
	for _, id := range pending {
		if err := g.deleteInvitation(ctx, id); err != nil {
			return g.classify(what, err)
		}
	}
	if user.Login == "" {
		return nil
	}
	_, err = g.client.Repositories.RemoveCollaborator(ctx, g.owner, g.repo, user.Login)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return g.classify(what, fmt.Errorf("remove collaborator: %w", err))
	}
	return nil
}

// Snapshot lists the repository's direct collaborators and its pending
// invitations, 100 to a page: the fewest requests GitHub allows for the
// whole picture. Errors are classified as for Grant.
func (g *GitHub) Snapshot(ctx context.Context) (Snapshot, error) {
	what := fmt.Sprintf("access: github: list access to %s/%s", g.owner, g.repo)
	s := Snapshot{Collaborators: map[int64]string{}, Invitations: map[int64]Invitation{}}
	opts := &github.ListCollaboratorsOptions{Affiliation: "direct", ListOptions: github.ListOptions{PerPage: perPage}}
	for page := 0; ; page++ {
		if page == maxPages {
			return s, fmt.Errorf("%s: more than %d pages of collaborators", what, maxPages)
		}
		users, resp, err := g.client.Repositories.ListCollaborators(ctx, g.owner, g.repo, opts)
		if err != nil {
			return s, g.classify(what, fmt.Errorf("list collaborators (page %d): %w", max(opts.Page, 1), err))
		}
		for _, u := range users {
			if u.GetID() != 0 {
				s.Collaborators[u.GetID()] = u.GetLogin()
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	err := g.listInvitations(ctx, func(inv *github.RepositoryInvitation) {
		if u := inv.GetInvitee(); u.GetID() != 0 && inv.GetID() != 0 {
			s.Invitations[u.GetID()] = Invitation{ID: inv.GetID(), Login: u.GetLogin()}
		}
	})
	if err != nil {
		return s, g.classify(what, err)
	}
	return s, nil
}

// DeleteInvitation deletes the repository invitation id; 0, or one
// already gone, is no error. Errors are classified as for Grant.
func (g *GitHub) DeleteInvitation(ctx context.Context, id int64) error {
	if id == 0 {
		return nil
	}
	if err := g.deleteInvitation(ctx, id); err != nil {
		return g.classify(fmt.Sprintf("access: github: delete invitation %d from %s/%s", id, g.owner, g.repo), err)
	}
	return nil
}

// deleteInvitation deletes invitation id; one already gone is no error.
func (g *GitHub) deleteInvitation(ctx context.Context, id int64) error {
	_, err := g.client.Repositories.DeleteInvitation(ctx, g.owner, g.repo, id)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return fmt.Errorf("delete invitation %d: %w", id, err)
	}
	return nil
}

// listInvitations calls fn with each of the repository's pending
// invitations, listed page by page.
func (g *GitHub) listInvitations(ctx context.Context, fn func(*github.RepositoryInvitation)) error {
	opts := &github.ListOptions{PerPage: perPage}
	for range maxPages {
		invs, resp, err := g.client.Repositories.ListInvitations(ctx, g.owner, g.repo, opts)
		if err != nil {
			return fmt.Errorf("list invitations (page %d): %w", max(opts.Page, 1), err)
		}
		for _, inv := range invs {
			fn(inv)
		}
		if resp.NextPage == 0 {
			return nil
		}
		opts.Page = resp.NextPage
	}
	return fmt.Errorf("list invitations: more than %d pages", maxPages)
}

// classify turns a go-github error into a step outcome: rate limits become
// steps.RetryAfter, client errors that retrying cannot fix become
// steps.Permanent, and the rest (5xx, transport, context) stay plain errors
// so the step retries with backoff.
func (g *GitHub) classify(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)

	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		d := defaultRateLimitDelay
		if reset := rl.Rate.Reset.Time; !reset.IsZero() {
			d = reset.Sub(g.now()) + rateLimitMargin
		}
		return steps.RetryAfter(d, fmt.Errorf("rate limited: %w", err))
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		d, ok := g.headerDelay(abuse.Response)
		switch {
		case ok:
		case abuse.RetryAfter != nil:
			d = *abuse.RetryAfter
		default:
			d = defaultRateLimitDelay
		}
		return steps.RetryAfter(d, fmt.Errorf("secondary rate limit: %w", err))
	}
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return err // transport error, context cancellation, bad JSON
	}
	status := er.Response.StatusCode
	if status == http.StatusForbidden || status == http.StatusTooManyRequests {
		if d, ok := g.headerDelay(er.Response); ok {
			return steps.RetryAfter(d, fmt.Errorf("rate limited: %w", err))
		}
	}
	switch {
	case status == http.StatusTooManyRequests:
		return steps.RetryAfter(defaultRateLimitDelay, fmt.Errorf("rate limited: %w", err))
	case status >= 500, status == http.StatusRequestTimeout,
		status == http.StatusConflict, status == http.StatusTooEarly:
		return err
	case status == http.StatusUnauthorized:
		return steps.Permanent(fmt.Errorf("GitHub rejected the token: %w", err))
	case status == http.StatusForbidden:
		return steps.Permanent(fmt.Errorf("the token may not manage collaborators: %w", err))
	case status >= 400:
		return steps.Permanent(err)
	}
	return err
}

// headerDelay reads how long a rate limited response asks us to wait, from
// Retry-After (seconds) or else x-ratelimit-reset (unix seconds).
func (g *GitHub) headerDelay(resp *http.Response) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
	}
	if v := resp.Header.Get("X-RateLimit-Reset"); v != "" {
		if unix, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && unix > 0 {
			return time.Unix(unix, 0).Sub(g.now()) + rateLimitMargin, true
		}
	}
	return 0, false
}

// statusOf returns the HTTP status of a go-github error response, or 0.
func statusOf(err error) int {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// checkLogin rejects strings that cannot be GitHub logins: 1 to 39 ASCII
// letters, digits and hyphens, not starting with a hyphen. Checking first
// also keeps the login from altering the request path.
func checkLogin(login string) error {
	if login == "" || len(login) > 39 || login[0] == '-' {
		return fmt.Errorf("%w: %q", ErrInvalidUsername, login)
	}
	for _, c := range login {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: %q", ErrInvalidUsername, login)
		}
	}
	return nil
}
