// Package githubfake is a recording, in-memory fake of the few GitHub REST
// endpoints paymentd uses to grant and revoke repository access: adding,
// removing and checking a collaborator, and listing and deleting repository
// invitations. It is an http.Handler, so tests serve it with httptest and a
// local development mode can serve it with net/http, pointing the real
// go-github client at it.
//
// Paths are accepted both as on api.github.com (/repos/...) and as on GitHub
// Enterprise Server (/api/v3/repos/...). Logins compare case-insensitively,
// as on GitHub. Faults (plain error statuses and primary or secondary rate
// limits) can be queued to exercise a client's error handling. A Fake is safe
// for concurrent use.
package githubfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Fake. The zero value is a fake that serves any
// owner/repo, requires no token and uses the wall clock.
type Options struct {
	// Owner and Repo, when both set, restrict the fake to that one
	// repository; requests for any other repository get 404. When empty,
	// every owner/repo shares the fake's single state.
	Owner, Repo string
	// Token, when set, must arrive as "Authorization: Bearer <Token>" (or
	// "token <Token>"); other requests get 401.
	Token string
	// Clock stamps invitations' created_at; nil means time.Now.
	Clock func() time.Time
}

// Collaborator is a user with access to the repository.
type Collaborator struct {
	Login      string
	Permission string // as requested: pull, triage, push, maintain or admin
}

// Invitation is a pending repository invitation.
type Invitation struct {
	ID         int64
	Invitee    string
	Permission string // as requested: pull, triage, push, maintain or admin
	CreatedAt  time.Time
}

// Request is one request the fake received, as recorded by Requests.
type Request struct {
	Method string
	// Path is the URL path as received, including any /api/v3 prefix.
	Path string
	// Query is the raw query string.
	Query string
	// Body is the request body.
	Body []byte
	// Authorization is the Authorization header as received.
	Authorization string
	// Status is the status code the fake answered with.
	Status int
}

// fault is one queued injected failure, consumed by the next request.
type fault struct {
	status  int
	header  http.Header
	message string
	docURL  string
}

// Fake is an in-memory GitHub repository collaborator API. Create it with New.
type Fake struct {
	opts    Options
	handler http.Handler

	mu            sync.Mutex
	collaborators map[string]Collaborator // keyed by lower-cased login
	invitations   map[int64]Invitation
	unknown       map[string]bool // lower-cased logins that do not exist
	nextID        int64
	faults        []fault
	requests      []Request
}

// New returns an empty Fake configured by opts.
func New(opts Options) *Fake {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	f := &Fake{
		opts:          opts,
		collaborators: make(map[string]Collaborator),
		invitations:   make(map[int64]Invitation),
		unknown:       make(map[string]bool),
		nextID:        1,
	}
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/api/v3"} {
		mux.HandleFunc("PUT "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.putCollaborator)
		mux.HandleFunc("DELETE "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.deleteCollaborator)
		mux.HandleFunc("GET "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.getCollaborator)
		mux.HandleFunc("GET "+prefix+"/repos/{owner}/{repo}/invitations", f.listInvitations)
		mux.HandleFunc("DELETE "+prefix+"/repos/{owner}/{repo}/invitations/{id}", f.deleteInvitation)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found")
	})
	f.handler = mux
	return f
}

// ServeHTTP records the request, then answers it with a queued fault if any,
// otherwise as GitHub would.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	// Record the request before answering it, and its status before the
	// response leaves, so a caller that has its response sees it recorded.
	f.mu.Lock()
	f.requests = append(f.requests, Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          body,
		Authorization: r.Header.Get("Authorization"),
		Status:        http.StatusOK,
	})
	index := len(f.requests) - 1
	f.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, onStatus: func(status int) {
		f.mu.Lock()
		f.requests[index].Status = status
		f.mu.Unlock()
	}}

	if !f.authorized(r) {
		writeError(rec, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if ft, ok := f.popFault(); ok {
		for k, vs := range ft.header {
			rec.Header()[k] = vs
		}
		writeJSON(rec, ft.status, map[string]string{
			"message":           ft.message,
			"documentation_url": ft.docURL,
		})
		return
	}
	f.handler.ServeHTTP(rec, r)
}

// AddUnknownUser makes login a user that does not exist: adding it as a
// collaborator answers 404, as GitHub does.
func (f *Fake) AddUnknownUser(login string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unknown[strings.ToLower(login)] = true
}

// AddCollaborator seeds login as a collaborator with permission.
func (f *Fake) AddCollaborator(login, permission string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.collaborators[strings.ToLower(login)] = Collaborator{Login: login, Permission: permission}
}

// AddInvitation seeds a pending invitation for login with permission and
// returns its id.
func (f *Fake) AddInvitation(login, permission string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inviteLocked(login, permission).ID
}

// AcceptInvitation accepts the pending invitation id, as its invitee would:
// the invitation disappears and the invitee becomes a collaborator. It
// reports whether the invitation existed.
func (f *Fake) AcceptInvitation(id int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invitations[id]
	if !ok {
		return false
	}
	delete(f.invitations, id)
	f.collaborators[strings.ToLower(inv.Invitee)] = Collaborator{Login: inv.Invitee, Permission: inv.Permission}
	return true
}

// Collaborators returns the current collaborators, sorted by login.
func (f *Fake) Collaborators() []Collaborator {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Collaborator, 0, len(f.collaborators))
	for _, c := range f.collaborators {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Login) < strings.ToLower(out[j].Login) })
	return out
}

// Invitations returns the pending invitations, sorted by id.
func (f *Fake) Invitations() []Invitation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sortedInvitationsLocked()
}

// Requests returns every request received so far, in arrival order.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// FailNext makes the next n requests, whatever their endpoint, answer status
// with a GitHub-style JSON error body.
func (f *Fake) FailNext(n int, status int) {
	f.queue(n, fault{status: status, message: http.StatusText(status)})
}

// RateLimitNext makes the next n requests answer as GitHub does when the
// primary rate limit is exhausted: 403 with x-ratelimit-remaining: 0 and
// x-ratelimit-reset set to reset (unix seconds). go-github reports this as
// *github.RateLimitError.
func (f *Fake) RateLimitNext(n int, reset time.Time) {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Used", "5000")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	f.queue(n, fault{
		status:  http.StatusForbidden,
		header:  h,
		message: "API rate limit exceeded for user ID 1.",
		docURL:  "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
	})
}

// SecondaryRateLimitNext makes the next n requests answer as GitHub does
// when a secondary rate limit trips: status (403 or 429) with a Retry-After
// header of retryAfter, whole seconds. With 403, go-github reports this as
// *github.AbuseRateLimitError.
func (f *Fake) SecondaryRateLimitNext(n int, status int, retryAfter time.Duration) {
	h := http.Header{}
	h.Set("Retry-After", strconv.FormatInt(int64(retryAfter/time.Second), 10))
	f.queue(n, fault{
		status:  status,
		header:  h,
		message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
		docURL:  "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
	})
}

func (f *Fake) queue(n int, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.faults = append(f.faults, ft)
	}
}

func (f *Fake) popFault() (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.faults) == 0 {
		return fault{}, false
	}
	ft := f.faults[0]
	f.faults = f.faults[1:]
	return ft, true
}

func (f *Fake) authorized(r *http.Request) bool {
	if f.opts.Token == "" {
		return true
	}
	got := r.Header.Get("Authorization")
	return got == "Bearer "+f.opts.Token || got == "token "+f.opts.Token
}

// repoOK reports whether the request names the served repository.
func (f *Fake) repoOK(r *http.Request) bool {
	if f.opts.Owner == "" || f.opts.Repo == "" {
		return true
	}
	return strings.EqualFold(r.PathValue("owner"), f.opts.Owner) &&
		strings.EqualFold(r.PathValue("repo"), f.opts.Repo)
}

func (f *Fake) putCollaborator(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var req struct {
		Permission string `json:"permission"`
	}
	if body, err := io.ReadAll(r.Body); err == nil && len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
	}
	perm := req.Permission
	if perm == "" {
		perm = "push" // GitHub's default
	}
	if invitationPermission(perm) == "" {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed")
		return
	}
	user := r.PathValue("user")
	key := strings.ToLower(user)

	f.mu.Lock()
	if f.unknown[key] {
		f.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if c, ok := f.collaborators[key]; ok {
		c.Permission = perm
		f.collaborators[key] = c
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// A pending invitation is updated and returned again, not duplicated.
	var inv Invitation
	found := false
	for id, existing := range f.invitations {
		if strings.EqualFold(existing.Invitee, user) {
			existing.Permission = perm
			f.invitations[id] = existing
			inv, found = existing, true
			break
		}
	}
	if !found {
		inv = f.inviteLocked(user, perm)
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, f.invitationJSON(r, inv))
}

func (f *Fake) deleteCollaborator(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	delete(f.collaborators, strings.ToLower(r.PathValue("user")))
	f.mu.Unlock()
	// GitHub answers 204 whether or not the user was a collaborator.
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) getCollaborator(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	_, ok := f.collaborators[strings.ToLower(r.PathValue("user"))]
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) listInvitations(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	perPage, page := 30, 1
	q := r.URL.Query()
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	f.mu.Lock()
	all := f.sortedInvitationsLocked()
	f.mu.Unlock()

	last := max(1, (len(all)+perPage-1)/perPage)
	start := min((page-1)*perPage, len(all))
	end := min(start+perPage, len(all))
	out := make([]any, 0, end-start)
	for _, inv := range all[start:end] {
		out = append(out, f.invitationJSON(r, inv))
	}

	var links []string
	link := func(p int, rel string) {
		u := url.URL{Scheme: scheme(r), Host: r.Host, Path: r.URL.Path}
		lq := url.Values{}
		lq.Set("per_page", strconv.Itoa(perPage))
		lq.Set("page", strconv.Itoa(p))
		u.RawQuery = lq.Encode()
		links = append(links, fmt.Sprintf("<%s>; rel=%q", u.String(), rel))
	}
	if page < last {
		link(page+1, "next")
		link(last, "last")
	}
	if page > 1 {
		link(1, "first")
		link(min(page-1, last), "prev")
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Fake) deleteInvitation(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	_, ok := f.invitations[id]
	delete(f.invitations, id)
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) inviteLocked(login, permission string) Invitation {
	inv := Invitation{
		ID:         f.nextID,
		Invitee:    login,
		Permission: permission,
		CreatedAt:  f.opts.Clock().UTC().Truncate(time.Second),
	}
	f.nextID++
	f.invitations[inv.ID] = inv
	return inv
}

func (f *Fake) sortedInvitationsLocked() []Invitation {
	out := make([]Invitation, 0, len(f.invitations))
	for _, inv := range f.invitations {
		out = append(out, inv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// invitationJSON renders inv as GitHub's repository invitation object.
func (f *Fake) invitationJSON(r *http.Request, inv Invitation) map[string]any {
	owner, repo := r.PathValue("owner"), r.PathValue("repo")
	base := scheme(r) + "://" + r.Host
	return map[string]any{
		"id":          inv.ID,
		"node_id":     fmt.Sprintf("RI_fake%d", inv.ID),
		"invitee":     map[string]any{"login": inv.Invitee, "type": "User"},
		"inviter":     map[string]any{"login": owner, "type": "User"},
		"repository":  map[string]any{"name": repo, "full_name": owner + "/" + repo},
		"permissions": invitationPermission(inv.Permission),
		"created_at":  inv.CreatedAt.Format(time.RFC3339),
		"url":         fmt.Sprintf("%s/user/repository_invitations/%d", base, inv.ID),
		"html_url":    fmt.Sprintf("%s/%s/%s/invitations", base, owner, repo),
	}
}

// invitationPermission maps a requested permission to the name GitHub uses
// in invitation objects, or "" if the permission is not valid.
func invitationPermission(p string) string {
	switch p {
	case "pull", "read":
		return "read"
	case "push", "write":
		return "write"
	case "triage", "maintain", "admin":
		return p
	}
	return ""
}

// maxBody bounds how much of a request body the fake reads.
const maxBody = 1 << 20

// readBody reads r's body and replaces it with a fresh reader over the same
// bytes, so the handlers can read it again.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("request body exceeds %d bytes", maxBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	onStatus    func(int)
}

// WriteHeader records status and passes it on.
func (s *statusRecorder) WriteHeader(status int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = status, true
		if s.onStatus != nil {
			s.onStatus(status)
		}
	}
	s.ResponseWriter.WriteHeader(status)
}

// Write marks the status as 200 if no header was written yet.
func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// scheme is the scheme the request arrived over, for absolute links.
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client hung up; nothing to do
}

// writeError answers status with a GitHub-style error body.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{
		"message":           message,
		"documentation_url": "https://docs.github.com/rest",
	})
}
