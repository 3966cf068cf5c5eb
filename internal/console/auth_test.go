package console

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"golang.org/x/crypto/bcrypt"
)

func TestPasswordHashes(t *testing.T) {
	t.Parallel()
	argon, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !config.IsPasswordHash(argon) || !strings.HasPrefix(argon, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash = %q", argon)
	}
	if again, _ := HashPassword("s3cret"); again == argon {
		t.Error("two hashes of one password are equal: the salt is not fresh")
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, hash, password string
		ok                   bool
		bad                  bool
	}{
		{"argon2id right", argon, "s3cret", true, false},
		{"argon2id wrong", argon, "s3cret ", false, false},
		{"argon2id empty", argon, "", false, false},
		{"bcrypt right", string(bc), "s3cret", true, false},
		{"bcrypt wrong", string(bc), "S3cret", false, false},
		{"argon2 other version", strings.Replace(argon, "v=19", "v=16", 1), "s3cret", false, true},
		{"argon2 huge memory", strings.Replace(argon, "m=19456", "m=99999999", 1), "s3cret", false, true},
		{"argon2 no salt", strings.Join(append(strings.Split(argon, "$")[:4], "", strings.Split(argon, "$")[5]), "$"), "s3cret", false, true},
		{"plaintext", "s3cret", "s3cret", false, true},
		{"argon2i", strings.Replace(argon, "argon2id", "argon2i", 1), "s3cret", false, true},
	} {
		ok, err := VerifyPassword(c.hash, c.password)
		if ok != c.ok || (err != nil) != c.bad {
			t.Errorf("%s: VerifyPassword = %v, %v; want %v, error %v", c.name, ok, err, c.ok, c.bad)
		}
		if checkErr := checkHash(c.hash); (checkErr != nil) != c.bad {
			t.Errorf("%s: checkHash = %v", c.name, checkErr)
		}
		if err != nil && strings.Contains(err.Error(), c.hash) {
			t.Errorf("%s: the error quotes the hash: %v", c.name, err)
		}
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("an empty password was hashed")
	}
}

func TestAConsoleWithABadHashDoesNotStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cfg := *e.cfg
	cfg.Console.Operators = []config.Operator{{Name: "bob", PasswordHash: "$argon2id$v=19$m=1,t=1,p=1$xx$yy"}}
	_, err := New(Options{DB: e.db, Clock: e.clock, Log: e.console.log, Config: &cfg, Engine: e.engine,
		Reconciler: e.console.rec, Access: e.ful, Renderer: e.console.renderer})
	if err == nil || !strings.Contains(err.Error(), "console.operators[0] (bob): password_hash:") {
		t.Errorf("New with a bad hash = %v", err)
	}
}

// Without a session every console page sends the browser to the sign-in
// page, and back after; a wrong password is refused; the session cookie
// has its flags; the hash never shows in a page or a log line.
func TestSignInSessionsAndSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	for _, path := range []string{"/console/", "/console/search?q=ada%40example.com", "/console/steps", "/console/nowhere"} {
		a := b.get(path)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/login?next="+url.QueryEscape(path) {
			t.Errorf("GET %s without a session = %d → %q", path, a.status, a.header.Get("Location"))
		}
	}
	if a := b.post("/console/steps/1/retry", url.Values{"csrf": {"x"}}); a.status != http.StatusSeeOther ||
		!strings.HasPrefix(a.header.Get("Location"), "/console/login") {
		t.Errorf("POST without a session = %d → %q", a.status, a.header.Get("Location"))
	}

	login := b.get("/console/login?next=/console/steps")
	if login.status != http.StatusOK || !strings.Contains(login.body, `name="password"`) {
		t.Fatalf("sign-in page = %d\n%s", login.status, login.body)
	}
	if !strings.Contains(login.header.Get("Content-Security-Policy"), "default-src 'none'") ||
		login.header.Get("X-Frame-Options") != "DENY" || login.header.Get("Cache-Control") != "no-store" {
		t.Errorf("console headers = %v", login.header)
	}
	wrong := b.post("/console/login", url.Values{"login_csrf": {hidden(t, login.body, "login_csrf")}, "name": {"alice"},
		"password": {"wrong"}, "next": {"/console/steps"}})
	if wrong.status != http.StatusUnauthorized || !strings.Contains(wrong.body, "Wrong name or password") {
		t.Fatalf("a wrong password = %d\n%s", wrong.status, wrong.body)
	}
	if a := b.get("/console/"); a.status != http.StatusSeeOther {
		t.Fatalf("after a wrong password the console answers %d", a.status)
	}
	if !strings.Contains(e.logs.String(), "console: sign-in failed") {
		t.Error("the failed sign-in was not logged")
	}

	right := b.post("/console/login", url.Values{"login_csrf": {hidden(t, wrong.body, "login_csrf")}, "name": {"Alice"},
		"password": {alicePass}, "next": {"/console/steps"}})
	if right.status != http.StatusSeeOther || right.header.Get("Location") != "/console/steps" {
		t.Fatalf("the right password = %d → %q\n%s", right.status, right.header.Get("Location"), right.body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: right.header}).Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode ||
		session.Path != "/console/" || session.MaxAge != int((12*time.Hour)/time.Second) {
		t.Fatalf("session cookie = %+v", session)
	}
	var stored string
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT token_hash FROM console_sessions`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == session.Value || stored != hashToken(session.Value) {
		t.Error("the session table does not hold (only) the token's hash")
	}
	overview := b.get("/console/")
	if overview.status != http.StatusOK || !strings.Contains(overview.body, "Overview") ||
		!strings.Contains(overview.body, `<meta http-equiv="refresh" content="15">`) {
		t.Fatalf("overview = %d\n%s", overview.status, overview.body)
	}

	for what, text := range map[string]string{"sign-in page": login.body, "refused sign-in": wrong.body,
		"overview": overview.body, "logs": e.logs.String()} {
		if strings.Contains(text, e.aliceHash) || strings.Contains(text, strings.Split(e.aliceHash, "$")[5]) {
			t.Errorf("the %s shows alice's password hash", what)
		}
		if strings.Contains(text, alicePass) {
			t.Errorf("the %s shows alice's password", what)
		}
	}

	// The session ends with its TTL.
	e.clock.Advance(12*time.Hour + time.Second)
	if a := b.get("/console/"); a.status != http.StatusSeeOther {
		t.Errorf("an expired session still opens the console: %d", a.status)
	}
	e.clock.Set(t0)

	// Sign out: the session is gone, and it is in the audit.
	out := b.post("/console/logout", url.Values{"csrf": {hidden(t, overview.body, "csrf")}})
	if out.status != http.StatusSeeOther || out.header.Get("Location") != "/console/login" {
		t.Fatalf("sign out = %d %q", out.status, out.header.Get("Location"))
	}
	if a := b.get("/console/"); a.status != http.StatusSeeOther {
		t.Errorf("after signing out the console answers %d", a.status)
	}
	audit, err := e.db.RecentAudit(e.ctx, 10)
	if err != nil || len(audit) != 2 || audit[0].Action != "sign_out" || audit[1].Action != "sign_in" ||
		audit[1].Operator != "alice" {
		t.Errorf("audit = %+v, %v", audit, err)
	}
}

// A form posted without the session's CSRF token changes nothing, and so
// does a sign-in without the sign-in form's token.
func TestFormsWithoutTheCSRFTokenAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, st := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepFailed})
	b := e.signedIn()
	before := e.auditCount()
	for _, form := range []url.Values{{}, {"csrf": {"forged"}}} {
		a := b.post("/console/steps/"+itoa(st["grant_access"].ID)+"/retry", form)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "CSRF token is missing or wrong") {
			t.Errorf("retry with %v = %d\n%s", form, a.status, a.body)
		}
	}
	if s := e.step(st["grant_access"].ID); s.Status != store.StepFailed {
		t.Errorf("the step is %s after forged retries", s.Status)
	}
	if e.auditCount() != before {
		t.Error("a refused form was audited as done")
	}
	if a := b.post("/console/logout", nil); a.status != http.StatusForbidden {
		t.Errorf("sign out without a token = %d", a.status)
	}

	other := e.browser()
	a := other.post("/console/login", url.Values{"name": {"alice"}, "password": {alicePass}})
	if a.status != http.StatusForbidden {
		t.Errorf("a sign-in without its form's token = %d", a.status)
	}
	if a := other.get("/console/"); a.status != http.StatusSeeOther {
		t.Errorf("the forged sign-in opened the console: %d", a.status)
	}
}

// Failed sign-ins are limited per address and per operator name, in the
// database, so replicas share the count; a success does not count.
func TestFailedSignInsAreRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	h := e.console.Handler()
	// A second replica on the same database.
	replica, err := New(Options{DB: e.db, Clock: e.clock, Log: e.console.log, Config: e.cfg, Engine: e.engine,
		Reconciler: e.console.rec, Access: e.ful, Renderer: e.console.renderer})
	if err != nil {
		t.Fatal(err)
	}
	h2 := replica.Handler()
	attempt := func(h http.Handler, addr, name, password string) *httptest.ResponseRecorder {
		t.Helper()
		form := url.Values{"login_csrf": {"tok"}, "name": {name}, "password": {password}}
		req := httptest.NewRequest(http.MethodPost, "https://admin/console/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: loginCookie, Value: "tok"})
		req.RemoteAddr = addr + ":40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	// Successes do not count.
	for range 5 {
		if w := attempt(h, "10.0.0.1", "alice", alicePass); w.Code != http.StatusSeeOther {
			t.Fatalf("a right password = %d", w.Code)
		}
	}
	// Three failures from one address, on two replicas, use its burst.
	attempt(h, "10.0.0.1", "mallory", "x")
	attempt(h2, "10.0.0.1", "alice", "x")
	attempt(h, "10.0.0.1", "trent", "x")
	w := attempt(h2, "10.0.0.1", "alice", alicePass)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("the 4th attempt from one address = %d (Retry-After %q); want 429, 60s", w.Code, w.Header().Get("Retry-After"))
	}
	// From another address alice's name still has one failure left.
	if w := attempt(h, "10.0.0.2", "alice", "y"); w.Code != http.StatusUnauthorized {
		t.Errorf("a failure from another address = %d", w.Code)
	}
	attempt(h, "10.0.0.3", "alice", "z")
	if w := attempt(h2, "10.0.0.4", "alice", alicePass); w.Code != http.StatusTooManyRequests {
		t.Errorf("alice's name after three failures from three addresses = %d; want 429", w.Code)
	}
	if !strings.Contains(e.logs.String(), "too many failed attempts") {
		t.Error("the refusal was not logged")
	}
	// A minute refills one attempt.
	e.clock.Advance(61 * time.Second)
	if w := attempt(h, "10.0.0.4", "alice", alicePass); w.Code != http.StatusSeeOther {
		t.Errorf("after a minute = %d", w.Code)
	}
}

// jwks serves one RSA key as a JWKS, like an identity provider.
func jwks(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64url(key.N.Bytes()), "e": b64url(big.NewInt(int64(key.E)).Bytes())}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return key, srv.URL
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestTokenSignInNeedsTheRole(t *testing.T) {
	t.Parallel()
	key, jwksURL := jwks(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	verifier, err := httpapi.NewAuthenticator(ctx, httpapi.AuthOptions{JWKSURL: jwksURL, Issuer: "idp", Audience: "paymentd"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{tokens: verifier, configure: func(cfg *config.Config) {
		cfg.Auth.JWKSURL, cfg.Console.RoleClaim, cfg.Console.Role = jwksURL, "realm_access.roles", "paymentd-operator"
	}})
	sign := func(method jwt.SigningMethod, k any, roles any) string {
		t.Helper()
		claims := jwt.MapClaims{"iss": "idp", "aud": "paymentd", "sub": "u-42", "email": "ops@acme.test",
			"exp": time.Now().Add(time.Hour).Unix(), "realm_access": map[string]any{"roles": roles}}
		tok := jwt.NewWithClaims(method, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	try := func(token string) answer {
		b := e.browser()
		page := b.get("/console/login")
		if !strings.Contains(page.body, `action="/console/login/token"`) {
			t.Fatal("the sign-in page offers no token sign-in")
		}
		a := b.post("/console/login/token", url.Values{"login_csrf": {hidden(t, page.body, "login_csrf")}, "token": {token}})
		if a.status == http.StatusSeeOther {
			if o := b.get("/console/"); o.status != http.StatusOK || !strings.Contains(o.body, "Sign out ops@acme.test") {
				t.Errorf("after a token sign-in the overview = %d", o.status)
			}
		}
		return a
	}
	if a := try(sign(jwt.SigningMethodRS256, key, []any{"viewer", "paymentd-operator"})); a.status != http.StatusSeeOther {
		t.Errorf("a token with the role = %d\n%s", a.status, a.body)
	}
	if a := try(sign(jwt.SigningMethodRS256, key, []any{"viewer"})); a.status != http.StatusUnauthorized {
		t.Errorf("a token without the role = %d", a.status)
	}
	// An HS256 token, even with the role and the users' secret, never makes an operator.
	if a := try(sign(jwt.SigningMethodHS256, []byte(e.cfg.Auth.JWTSecret), "paymentd-operator")); a.status != http.StatusUnauthorized {
		t.Errorf("an HS256 token = %d", a.status)
	}
	audit, _ := e.db.RecentAudit(e.ctx, 5)
	if len(audit) != 1 || audit[0].Operator != "ops@acme.test" || !strings.Contains(audit[0].Note, "jwt") {
		t.Errorf("audit = %+v", audit)
	}
}

func TestHasRoleAndSafeNext(t *testing.T) {
	t.Parallel()
	claims := map[string]any{"roles": []any{"a", "ops"}, "role": "ops", "realm_access": map[string]any{"roles": []any{"ops"}},
		"n": 3.0}
	for _, c := range []struct {
		path string
		want bool
	}{{"roles", true}, {"role", true}, {"realm_access.roles", true}, {"realm_access", false}, {"n", false},
		{"missing", false}, {"roles.x", false}} {
		if got := hasRole(claims, c.path, "ops"); got != c.want {
			t.Errorf("hasRole(%q) = %v", c.path, got)
		}
	}
	for in, want := range map[string]string{"/console/steps": "/console/steps", "": "/console/",
		"https://evil.test/console/": "/console/", "//evil.test/console/": "/console/", "/console/login": "/console/",
		"/metrics": "/console/", "/console/\\evil": "/console/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
