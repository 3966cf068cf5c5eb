// Package githubfake is a recording, in-memory fake of the few GitHub REST
// endpoints paymentd uses to grant and revoke repository access: looking a
// user up by login or by id, adding, removing, checking and listing
// collaborators, and listing and deleting repository invitations. It is an
// http.Handler, so tests serve it with httptest and a local development mode
// can serve it with net/http, pointing the real go-github client at it.
//
// Users have numeric ids that never change, as on GitHub: a login seen for
// the first time becomes a new user, RenameUser changes a user's login
// (their access and invitations follow them), and the login they left is
// free until AddUser registers it again, for someone else. Collaborators and
// invitations belong to user ids.
//
// Paths are accepted both as on api.github.com (/repos/...) and as on GitHub
// Enterprise Server (/api/v3/repos/...). Logins compare case-insensitively,
// as on GitHub. Faults (plain error statuses and primary or secondary rate
// limits) can be queued, for any request or for one route, to exercise a
// client's error handling. A Fake is safe for concurrent use.
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
	ID         int64  // the user's id
	Login      string // the user's current login
	Permission string // as requested: pull, triage, push, maintain or admin
}

// Invitation is a pending repository invitation.
type Invitation struct {
	ID         int64
	InviteeID  int64  // the invitee's user id
	Invitee    string // the invitee's current login
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

// fault is one queued injected failure, consumed by the next request it
// matches: any request when method is empty, else requests with that method
// whose path contains path.
type fault struct {
	method, path string
	status       int
	header       http.Header
	message      string
	docURL       string
}

func (ft fault) matches(r *http.Request) bool {
	return ft.method == "" || (r.Method == ft.method && strings.Contains(r.URL.Path, ft.path))
}

// Fake is an in-memory GitHub repository collaborator API. Create it with New.
type Fake struct {
	opts    Options
	handler http.Handler

	mu            sync.Mutex
	users         map[int64]string        // user id → current login
	logins        map[string]int64        // lower-cased login → user id
	released      map[string]bool         // lower-cased logins given up by a rename and not taken since
	unknown       map[string]bool         // lower-cased logins that do not exist
	collaborators map[int64]string        // user id → permission
	invitations   map[int64]invitationRow // by invitation id
	nextUser      int64
	nextID        int64
	faults        []fault
	requests      []Request
	before        func(method, path string)
}

// invitationRow is a pending invitation as stored: it belongs to a user id.
type invitationRow struct {
	id         int64
	invitee    int64
	permission string
	createdAt  time.Time
}

// New returns an empty Fake configured by opts.
func New(opts Options) *Fake {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	f := &Fake{
		opts:          opts,
		users:         make(map[int64]string),
		logins:        make(map[string]int64),
		released:      make(map[string]bool),
		unknown:       make(map[string]bool),
		collaborators: make(map[int64]string),
		invitations:   make(map[int64]invitationRow),
		// User ids and invitation ids come from different ranges, so a
		// test cannot pass one for the other by accident.
		nextUser: 1000,
		nextID:   1,
	}
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/api/v3"} {
		mux.HandleFunc("GET "+prefix+"/users/{login}", f.getUser)
		mux.HandleFunc("GET "+prefix+"/user/{id}", f.getUserByID)
		mux.HandleFunc("PUT "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.putCollaborator)
		mux.HandleFunc("DELETE "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.deleteCollaborator)
		mux.HandleFunc("GET "+prefix+"/repos/{owner}/{repo}/collaborators/{user}", f.getCollaborator)
		mux.HandleFunc("GET "+prefix+"/repos/{owner}/{repo}/collaborators", f.listCollaborators)
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
	before := f.before
	f.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, onStatus: func(status int) {
		f.mu.Lock()
		f.requests[index].Status = status
		f.mu.Unlock()
	}}
	if before != nil {
		before(r.Method, r.URL.Path)
	}

	if !f.authorized(r) {
		writeError(rec, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if ft, ok := f.popFault(r); ok {
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

// BeforeServe makes fn run for every request after it is recorded and
// before it is answered, outside the fake's lock: a test can block there
// to hold a request in flight. nil removes it.
func (f *Fake) BeforeServe(fn func(method, path string)) {
	f.mu.Lock()
	f.before = fn
	f.mu.Unlock()
}

// AddUnknownUser makes login a user that does not exist: looking it up or
// adding it as a collaborator answers 404, as GitHub does.
func (f *Fake) AddUnknownUser(login string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unknown[strings.ToLower(login)] = true
}

// AddUser registers login as a new user, even one a rename left free, and
// returns its id. A login already in use keeps its user.
func (f *Fake) AddUser(login string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := strings.ToLower(login)
	delete(f.released, key)
	delete(f.unknown, key)
	id, _ := f.userLocked(login)
	return id
}

// UserID returns the id of the user who has login now.
func (f *Fake) UserID(login string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.logins[strings.ToLower(login)]
	return id, ok
}

// RenameUser gives the user who has login oldLogin the login newLogin, as a
// GitHub user renaming their account: their id, access and invitations stay
// theirs, and oldLogin does not exist until AddUser registers it again. It
// reports whether oldLogin existed and newLogin was free.
func (f *Fake) RenameUser(oldLogin, newLogin string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldKey, newKey := strings.ToLower(oldLogin), strings.ToLower(newLogin)
	id, ok := f.logins[oldKey]
	if _, taken := f.logins[newKey]; !ok || (taken && newKey != oldKey) {
		return false
	}
	delete(f.logins, oldKey)
	f.logins[newKey] = id
	f.users[id] = newLogin
	delete(f.released, newKey)
	if newKey != oldKey {
		f.released[oldKey] = true
	}
	return true
}

// AddCollaborator seeds login (a new user if it has none) as a
// collaborator with permission.
func (f *Fake) AddCollaborator(login, permission string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := strings.ToLower(login)
	delete(f.released, key)
	delete(f.unknown, key)
	id, _ := f.userLocked(login)
	f.collaborators[id] = permission
}

// RemoveCollaborator removes login's access as someone would by hand on
// GitHub. It reports whether login was a collaborator.
func (f *Fake) RemoveCollaborator(login string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.logins[strings.ToLower(login)]
	if _, collab := f.collaborators[id]; !ok || !collab {
		return false
	}
	delete(f.collaborators, id)
	return true
}

// AddInvitation seeds a pending invitation for login (a new user if it has
// none) with permission and returns its id.
func (f *Fake) AddInvitation(login, permission string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := strings.ToLower(login)
	delete(f.released, key)
	delete(f.unknown, key)
	id, _ := f.userLocked(login)
	return f.inviteLocked(id, permission).id
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
	f.collaborators[inv.invitee] = inv.permission
	return true
}

// Collaborators returns the current collaborators, sorted by login.
func (f *Fake) Collaborators() []Collaborator {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sortedCollaboratorsLocked()
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

// FailNextRequest makes the next n requests with method whose path contains
// path answer status; other requests pass.
func (f *Fake) FailNextRequest(n int, method, path string, status int) {
	f.queue(n, fault{method: method, path: path, status: status, message: http.StatusText(status)})
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

// popFault takes the first queued fault that matches r.
func (f *Fake) popFault(r *http.Request) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ft := range f.faults {
		if ft.matches(r) {
			f.faults = append(f.faults[:i:i], f.faults[i+1:]...)
			return ft, true
		}
	}
	return fault{}, false
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

// userLocked returns the id of login's user, registering a login never
// seen as a new user. A login marked unknown, or left free by a rename,
// has no user.
func (f *Fake) userLocked(login string) (int64, bool) {
	key := strings.ToLower(login)
	if id, ok := f.logins[key]; ok {
		return id, true
	}
	if f.unknown[key] || f.released[key] {
		return 0, false
	}
	id := f.nextUser
	f.nextUser++
	f.users[id] = login
	f.logins[key] = id
	return id, true
}

func (f *Fake) getUser(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	id, ok := f.userLocked(r.PathValue("login"))
	login := f.users[id]
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, userJSON(id, login))
}

func (f *Fake) getUserByID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	login, ok := f.users[id]
	f.mu.Unlock()
	if err != nil || !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, userJSON(id, login))
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

	f.mu.Lock()
	id, ok := f.userLocked(r.PathValue("user"))
	if !ok {
		f.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if _, ok := f.collaborators[id]; ok {
		// GitHub changes an existing collaborator's permission, silently.
		f.collaborators[id] = perm
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// A pending invitation is updated and returned again, not duplicated.
	var inv invitationRow
	found := false
	for invID, existing := range f.invitations {
		if existing.invitee == id {
			existing.permission = perm
			f.invitations[invID] = existing
			inv, found = existing, true
			break
		}
	}
	if !found {
		inv = f.inviteLocked(id, perm)
	}
	out := f.invitationJSON(r, f.publicLocked(inv))
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

func (f *Fake) deleteCollaborator(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	if id, ok := f.logins[strings.ToLower(r.PathValue("user"))]; ok {
		delete(f.collaborators, id)
	}
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
	id, known := f.logins[strings.ToLower(r.PathValue("user"))]
	_, ok := f.collaborators[id]
	f.mu.Unlock()
	if !known || !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) listCollaborators(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	all := f.sortedCollaboratorsLocked()
	f.mu.Unlock()
	writePage(w, r, all, func(c Collaborator) any {
		u := userJSON(c.ID, c.Login)
		u["permissions"] = collaboratorPermissions(c.Permission)
		u["role_name"] = invitationPermission(c.Permission)
		return u
	})
}

func (f *Fake) listInvitations(w http.ResponseWriter, r *http.Request) {
	if !f.repoOK(r) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	f.mu.Lock()
	all := f.sortedInvitationsLocked()
	f.mu.Unlock()
	writePage(w, r, all, func(inv Invitation) any { return f.invitationJSON(r, inv) })
}

// writePage answers one page of all, as per_page and page ask (GitHub's
// default 30, at most 100), with GitHub's Link header.
func writePage[T any](w http.ResponseWriter, r *http.Request, all []T, render func(T) any) {
	perPage, page := 30, 1
	q := r.URL.Query()
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	last := max(1, (len(all)+perPage-1)/perPage)
	start := min((page-1)*perPage, len(all))
	end := min(start+perPage, len(all))
	out := make([]any, 0, end-start)
	for _, v := range all[start:end] {
		out = append(out, render(v))
	}

	var links []string
	link := func(p int, rel string) {
		u := url.URL{Scheme: scheme(r), Host: r.Host, Path: r.URL.Path}
		lq := url.Values{}
		for k, vs := range q {
			lq[k] = vs
		}
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

func (f *Fake) inviteLocked(userID int64, permission string) invitationRow {
	inv := invitationRow{
		id:         f.nextID,
		invitee:    userID,
		permission: permission,
		createdAt:  f.opts.Clock().UTC().Truncate(time.Second),
	}
	f.nextID++
	f.invitations[inv.id] = inv
	return inv
}

func (f *Fake) publicLocked(inv invitationRow) Invitation {
	return Invitation{ID: inv.id, InviteeID: inv.invitee, Invitee: f.users[inv.invitee], Permission: inv.permission,
		CreatedAt: inv.createdAt}
}

func (f *Fake) sortedInvitationsLocked() []Invitation {
	out := make([]Invitation, 0, len(f.invitations))
	for _, inv := range f.invitations {
		out = append(out, f.publicLocked(inv))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *Fake) sortedCollaboratorsLocked() []Collaborator {
	out := make([]Collaborator, 0, len(f.collaborators))
	for id, perm := range f.collaborators {
		out = append(out, Collaborator{ID: id, Login: f.users[id], Permission: perm})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := strings.ToLower(out[i].Login), strings.ToLower(out[j].Login)
		return a < b || (a == b && out[i].ID < out[j].ID)
	})
	return out
}

// userJSON renders a user as GitHub's simple user object.
func userJSON(id int64, login string) map[string]any {
	return map[string]any{"login": login, "id": id, "node_id": fmt.Sprintf("U_fake%d", id), "type": "User"}
}

// invitationJSON renders inv as GitHub's repository invitation object.
func (f *Fake) invitationJSON(r *http.Request, inv Invitation) map[string]any {
	owner, repo := r.PathValue("owner"), r.PathValue("repo")
	base := scheme(r) + "://" + r.Host
	return map[string]any{
		"id":          inv.ID,
		"node_id":     fmt.Sprintf("RI_fake%d", inv.ID),
		"invitee":     userJSON(inv.InviteeID, inv.Invitee),
		"inviter":     map[string]any{"login": owner, "type": "User"},
		"repository":  map[string]any{"name": repo, "full_name": owner + "/" + repo},
		"permissions": invitationPermission(inv.Permission),
		"created_at":  inv.CreatedAt.Format(time.RFC3339),
		"url":         fmt.Sprintf("%s/user/repository_invitations/%d", base, inv.ID),
		"html_url":    fmt.Sprintf("%s/%s/%s/invitations", base, owner, repo),
	}
}

// collaboratorPermissions is a collaborator's permissions object: each
// level up to the granted one is true.
func collaboratorPermissions(p string) map[string]bool {
	levels := []string{"pull", "triage", "push", "maintain", "admin"}
	switch p {
	case "read":
		p = "pull"
	case "write":
		p = "push"
	}
	out := map[string]bool{}
	reached := true
	for _, l := range levels {
		out[l] = reached
		if l == p {
			reached = false
		}
	}
	return out
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
