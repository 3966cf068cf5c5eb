// GitHub repository access: a purchase invites the buyer as a collaborator
// on a private repository, and a refund removes the collaborator and deletes
// any invitation still pending, so an unaccepted invitation cannot be used
// after the money went back.

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
	// invitationsPerPage is the page size for listing invitations
	// (GitHub's maximum).
	invitationsPerPage = 100
	// maxInvitationPages bounds the invitation listing.
	maxInvitationPages = 100
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

// Access is a user's current state on the repository, for drift detection.
type Access struct {
	// Collaborator reports whether the user is a collaborator.
	Collaborator bool
	// PendingInvitationID is the id of a pending invitation for the user,
	// or 0 if there is none.
	PendingInvitationID int64
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
// reports that the user is already a collaborator. GitHub has no idempotency
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

// Revoke takes username's access away: it deletes the pending invitation
// invitationID (if not 0) and every other pending invitation whose invitee is
// username (compared case-insensitively, found by listing them all), then
// removes username as a collaborator. Invitations go first so that one
// accepted mid-way is still caught by the removal. Anything already gone
// counts as done, so Revoke is safe to repeat. Errors are classified as for
// Grant.
func (g *GitHub) Revoke(ctx context.Context, username string, invitationID int64) error {
	what := fmt.Sprintf("access: github: revoke %q from %s/%s", username, g.owner, g.repo)
	if err := checkLogin(username); err != nil {
		return steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	if invitationID != 0 {
		if err := g.deleteInvitation(ctx, invitationID); err != nil {
			return g.classify(what, err)
		}
	}
	pending, err := g.pendingInvitations(ctx, username)
	if err != nil {
		return g.classify(what, err)
	}
	for _, inv := range pending {
		if err := g.deleteInvitation(ctx, inv.GetID()); err != nil {
			return g.classify(what, err)
		}
	}
	_, err = g.client.Repositories.RemoveCollaborator(ctx, g.owner, g.repo, username)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return g.classify(what, fmt.Errorf("remove collaborator: %w", err))
	}
	return nil
}

// Check reports username's current access, for drift detection. Errors are
// classified as for Grant.
func (g *GitHub) Check(ctx context.Context, username string) (Access, error) {
	what := fmt.Sprintf("access: github: check %q on %s/%s", username, g.owner, g.repo)
	if err := checkLogin(username); err != nil {
		return Access{}, steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	isCollab, _, err := g.client.Repositories.IsCollaborator(ctx, g.owner, g.repo, username)
	if err != nil {
		return Access{}, g.classify(what, fmt.Errorf("check collaborator: %w", err))
	}
	pending, err := g.pendingInvitations(ctx, username)
	if err != nil {
		return Access{}, g.classify(what, err)
	}
	a := Access{Collaborator: isCollab}
	if len(pending) > 0 {
		a.PendingInvitationID = pending[0].GetID()
	}
	return a, nil
}

// deleteInvitation deletes invitation id; one already gone is no error.
func (g *GitHub) deleteInvitation(ctx context.Context, id int64) error {
	_, err := g.client.Repositories.DeleteInvitation(ctx, g.owner, g.repo, id)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return fmt.Errorf("delete invitation %d: %w", id, err)
	}
	return nil
}

// pendingInvitations lists the repository's pending invitations, page by
// page, and returns those whose invitee is username.
func (g *GitHub) pendingInvitations(ctx context.Context, username string) ([]*github.RepositoryInvitation, error) {
	var out []*github.RepositoryInvitation
	opts := &github.ListOptions{PerPage: invitationsPerPage}
	for range maxInvitationPages {
		invs, resp, err := g.client.Repositories.ListInvitations(ctx, g.owner, g.repo, opts)
		if err != nil {
			return nil, fmt.Errorf("list invitations (page %d): %w", max(opts.Page, 1), err)
		}
		for _, inv := range invs {
			if strings.EqualFold(inv.GetInvitee().GetLogin(), username) && inv.GetID() != 0 {
				out = append(out, inv)
			}
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
	return nil, fmt.Errorf("list invitations: more than %d pages", maxInvitationPages)
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
