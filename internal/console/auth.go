// Who may use the console: operators sign in with a password (or a token
// from the users' JWKS that carries the operator role) and get a session,
// kept server-side in console_sessions and named by an HttpOnly, Secure,
// SameSite=Strict cookie. Every state-changing form carries the session's
// CSRF token; the sign-in form carries one tied to a cookie of its own.
// Failed sign-ins are rate limited per address and per operator name, in
// the rate_limits table shared by every replica, and logged; a password or
// its hash is never logged or shown.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/paymentd/paymentd/store"
)

// Cookie names. The session cookie is scoped to /console/.
const (
	sessionCookie = "paymentd_console"
	loginCookie   = "paymentd_console_login"
)

// maxFormBytes bounds every console form; bulk retries of a page of steps
// are the largest.
const maxFormBytes = 64 << 10

// session is a signed-in operator.
type session struct {
	store.ConsoleSession
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashToken is what console_sessions keeps of a session token.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// sameToken compares two tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// cookie returns a console cookie with the flags every one of them has.
func (c *Console) cookie(name, value, path string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true, Secure: !c.dev,
		SameSite: http.SameSiteStrictMode}
}

// currentSession returns the request's session, or nil when it has none
// (no cookie, an unknown or expired token).
func (c *Console) currentSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	s, err := c.db.ConsoleSessionByHash(r.Context(), hashToken(ck.Value), c.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{s}, nil
}

// authed runs h for a request with a session. Without one, the browser is
// sent to the sign-in page (and back here after). A POST must carry the
// session's CSRF token, or it is refused and changes nothing.
func (c *Console) authed(h func(w http.ResponseWriter, r *http.Request, s *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.currentSession(r)
		if err != nil {
			c.log.ErrorContext(r.Context(), "console: read session", "err", err)
			http.Error(w, "the console could not read your session; the error has been logged", http.StatusInternalServerError)
			return
		}
		if s == nil {
			next := "/console/"
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				c.message(w, r, s, http.StatusBadRequest, "Bad form", "The form could not be read.")
				return
			}
			if !sameToken(r.PostForm.Get("csrf"), s.CSRFToken) {
				c.log.WarnContext(r.Context(), "console: form refused without a valid CSRF token", "operator", s.Operator,
					"path", r.URL.Path, "remote_addr", remoteHost(r))
				c.message(w, r, s, http.StatusForbidden, "Refused",
					"This form did not come from your console session (its CSRF token is missing or wrong). Nothing was changed. Reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	})
}

// remoteHost is the address a request came from, without its port. The
// admin listener is reached directly (or through an SSH tunnel): no proxy
// header is trusted.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		strings.HasPrefix(next, "/console/login") {
		return "/console/"
	}
	return next
}

// loginView is the sign-in page's data.
type loginView struct {
	Next       string
	LoginToken string
	Tokens     bool // token sign-in is offered
	Error      string
	Name       string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s, err := c.currentSession(r); err == nil && s != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

// showLogin renders the sign-in page with a fresh sign-in CSRF token.
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	token, err := randomToken()
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: sign-in token", "err", err)
		http.Error(w, "the console could not start a sign-in", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, c.cookie(loginCookie, token, "/console/login", 3600))
	v.LoginToken, v.Tokens = token, c.tokens != nil
	c.render(w, r, nil, status, "login", "Sign in", v, 0)
}

// loginForm reads a sign-in form and checks its CSRF token against the
// sign-in cookie. It reports false when it has already answered.
func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.showLogin(w, r, http.StatusBadRequest, loginView{Error: "The form could not be read."})
		return false
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(ck.Value, r.PostForm.Get("login_csrf")) {
		c.log.WarnContext(r.Context(), "console: sign-in refused without a valid CSRF token", "remote_addr", remoteHost(r))
		c.showLogin(w, r, http.StatusForbidden, loginView{Next: safeNext(r.PostForm.Get("next")),
			Error: "This sign-in form has expired or did not come from the console. Try again."})
		return false
	}
	return true
}

// loginRate is the limit on failed sign-ins per address and per name.
func (c *Console) loginRate() store.Rate {
	return store.Rate{N: c.cfg.LoginFailures, Per: c.cfg.LoginWindow}
}

// loginKeys are the rate-limit keys of a sign-in attempt: its address and,
// for a password, the (lower-cased) operator name tried.
func loginKeys(addr, name string) []string {
	keys := []string{"console_login_addr:" + addr}
	if name != "" {
		keys = append(keys, "console_login_name:"+strings.ToLower(name))
	}
	return keys
}

// throttled reports how long until a sign-in is allowed under keys; 0
// when it is allowed now.
func (c *Console) throttled(ctx context.Context, keys []string) (time.Duration, error) {
	var wait time.Duration
	for _, k := range keys {
		d, err := c.db.PeekRate(ctx, k, c.loginRate(), c.now())
		if err != nil {
			return 0, err
		}
		if !d.Allowed {
			wait = max(wait, d.RetryAfter)
		}
	}
	return wait, nil
}

// failed counts a failed sign-in against keys.
func (c *Console) failed(ctx context.Context, keys []string) {
	for _, k := range keys {
		if _, err := c.db.TakeRate(ctx, k, c.loginRate(), c.now()); err != nil {
			c.log.ErrorContext(ctx, "console: count a failed sign-in", "key", k, "err", err)
		}
	}
}

// refuseThrottled answers a sign-in over the limit.
func (c *Console) refuseThrottled(w http.ResponseWriter, r *http.Request, wait time.Duration, name string) {
	secs := int((wait + time.Second - 1) / time.Second)
	c.log.WarnContext(r.Context(), "console: sign-in refused: too many failed attempts", "operator", name,
		"remote_addr", remoteHost(r), "retry_after_s", secs)
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	c.showLogin(w, r, http.StatusTooManyRequests, loginView{Next: safeNext(r.PostForm.Get("next")), Name: name,
		Error: fmt.Sprintf("Too many failed sign-ins. Try again in %d seconds.", secs)})
}

// dummyHash is verified against when the name is unknown, so an unknown
// name takes as long as a wrong password.
var dummyHash, _ = HashPassword("paymentd-console-no-such-operator")

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !c.loginForm(w, r) {
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	password := r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	if len(name) > 64 || len(password) > 1024 {
		c.showLogin(w, r, http.StatusBadRequest, loginView{Next: next, Error: "Wrong name or password."})
		return
	}
	keys := loginKeys(remoteHost(r), name)
	wait, err := c.throttled(r.Context(), keys)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: check the sign-in limit", "err", err)
		http.Error(w, "the console could not check the sign-in limit; the error has been logged", http.StatusInternalServerError)
		return
	}
	if wait > 0 {
		c.refuseThrottled(w, r, wait, name)
		return
	}
	op, known := c.operators[strings.ToLower(name)]
	hash := dummyHash
	if known {
		hash = op.PasswordHash
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil { // New checked every hash: this is a bug, not a bad password
		c.log.ErrorContext(r.Context(), "console: verify password", "operator", op.Name, "err", err)
	}
	if !known || !ok {
		c.failed(r.Context(), keys)
		c.log.WarnContext(r.Context(), "console: sign-in failed", "operator", name, "known_operator", known,
			"remote_addr", remoteHost(r))
		c.showLogin(w, r, http.StatusUnauthorized, loginView{Next: next, Name: name, Error: "Wrong name or password."})
		return
	}
	c.startSession(w, r, op.Name, store.SourcePassword, next)
}

// loginToken signs in an operator with a token from the users' JWKS whose
// role claim holds the operator role.
func (c *Console) loginToken(w http.ResponseWriter, r *http.Request) {
	if !c.loginForm(w, r) {
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	raw := strings.TrimSpace(r.PostForm.Get("token"))
	keys := loginKeys(remoteHost(r), "")
	wait, err := c.throttled(r.Context(), keys)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: check the sign-in limit", "err", err)
		http.Error(w, "the console could not check the sign-in limit; the error has been logged", http.StatusInternalServerError)
		return
	}
	if wait > 0 {
		c.refuseThrottled(w, r, wait, "")
		return
	}
	operator, err := c.verifyOperatorToken(r.Context(), raw)
	if err != nil {
		c.failed(r.Context(), keys)
		c.log.WarnContext(r.Context(), "console: token sign-in failed", "err", err, "remote_addr", remoteHost(r))
		c.showLogin(w, r, http.StatusUnauthorized, loginView{Next: next,
			Error: "The token was refused: it must be valid, from the configured identity provider, and carry the operator role."})
		return
	}
	c.startSession(w, r, operator, store.SourceJWT, next)
}

// verifyOperatorToken verifies raw (signature, issuer, audience, expiry)
// and checks its role claim; it returns the operator's name for the audit:
// the token's email, or its subject. Errors never contain the token.
func (c *Console) verifyOperatorToken(ctx context.Context, raw string) (string, error) {
	if raw == "" || len(raw) > 16<<10 {
		return "", errors.New("no token, or one too long")
	}
	u, err := c.tokens.Verify(ctx, raw)
	if err != nil {
		return "", err
	}
	// The signature was just verified; reading the claims again only
	// looks for the role.
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		return "", fmt.Errorf("read claims: %w", err)
	}
	if !hasRole(claims, c.cfg.RoleClaim, c.cfg.Role) {
		return "", fmt.Errorf("the token of %s lacks role %q in claim %q", u.ID, c.cfg.Role, c.cfg.RoleClaim)
	}
	if u.Email != "" {
		return u.Email, nil
	}
	return u.ID, nil
}

// hasRole reports whether the claim at the dotted path holds role: the
// claim is the role itself, or a list containing it.
func hasRole(claims map[string]any, path, role string) bool {
	var v any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[part]; !ok {
			return false
		}
	}
	switch v := v.(type) {
	case string:
		return v == role
	case []any:
		for _, item := range v {
			if s, ok := item.(string); ok && s == role {
				return true
			}
		}
	}
	return false
}

// startSession records a new session for operator, sets its cookie,
// audits the sign-in and sends the browser on.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, operator string, source store.SessionSource, next string) {
	token, err := randomToken()
	if err == nil {
		var csrf string
		if csrf, err = randomToken(); err == nil {
			now := c.now()
			s := store.ConsoleSession{TokenHash: hashToken(token), Operator: operator, Source: source, CSRFToken: csrf,
				CreatedAt: now, ExpiresAt: now.Add(c.cfg.SessionTTL)}
			err = c.db.InTx(r.Context(), func(q *store.Queries) error {
				if _, err := q.DeleteExpiredConsoleSessions(r.Context(), now); err != nil {
					return err
				}
				if err := q.CreateConsoleSession(r.Context(), s); err != nil {
					return err
				}
				_, err := q.InsertAudit(r.Context(), store.AuditEntry{At: now, Operator: operator, Action: "sign_in",
					ObjectKind: "operator", ObjectID: operator, Note: "signed in with a " + string(source) + " from " + remoteHost(r)})
				return err
			})
		}
	}
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: start a session", "operator", operator, "err", err)
		http.Error(w, "the console could not sign you in; the error has been logged", http.StatusInternalServerError)
		return
	}
	c.log.InfoContext(r.Context(), "console: signed in", "operator", operator, "source", string(source),
		"remote_addr", remoteHost(r))
	http.SetCookie(w, c.cookie(loginCookie, "", "/console/login", -1))
	http.SetCookie(w, c.cookie(sessionCookie, token, "/console/", int(c.cfg.SessionTTL/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	err := c.db.InTx(r.Context(), func(q *store.Queries) error {
		if err := q.DeleteConsoleSession(r.Context(), s.TokenHash); err != nil {
			return err
		}
		_, err := q.InsertAudit(r.Context(), store.AuditEntry{At: c.now(), Operator: s.Operator, Action: "sign_out",
			ObjectKind: "operator", ObjectID: s.Operator})
		return err
	})
	if err != nil {
		c.fail(w, r, s, "sign you out", err)
		return
	}
	http.SetCookie(w, c.cookie(sessionCookie, "", "/console/", -1))
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}
