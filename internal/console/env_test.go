// The test harness: the console over TLS (so its Secure cookie is sent
// back, as a browser would), on a real database, acting through the real
// reconciler against the Stripe emulator and the real fulfillment against
// the GitHub fake and the file outbox, on a fake clock. Logs are captured,
// so a test can check what was (and was never) logged.
package console

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

var t0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

const (
	product    = "pro_one_time"
	alicePass  = "correct horse battery staple"
	buyerEmail = "ada@example.com"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// syncLog is a log buffer the console and the test share.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
	t  testing.TB
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t       *testing.T
	ctx     context.Context
	clock   *clock.Fake
	db      *store.DB
	emu     *stripeemu.Emulator
	api     *stripeapi.API
	price   string
	gh      *githubfake.Fake
	engine  *steps.Engine
	ful     *fulfillment.Fulfillment
	rec     *reconcile.Reconciler
	cfg     *config.Config
	console *Console
	srv     *httptest.Server
	logs    *syncLog
	// aliceHash is alice's password hash, which must never show.
	aliceHash string
}

// envOptions change the console's configuration before it is built.
type envOptions struct {
	configure func(cfg *config.Config)
	tokens    TokenVerifier
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(t0)
	e := &env{t: t, ctx: ctx, clock: clk, logs: &syncLog{t: t}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	e.emu = stripeemu.New(stripeemu.Options{Clock: clk, Seed: 11})
	emuSrv := httptest.NewServer(e.emu)
	t.Cleanup(emuSrv.Close)
	t.Cleanup(func() { e.emu.Close() })
	e.emu.SetBaseURL(emuSrv.URL)
	e.api = stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emulator", APIBase: emuSrv.URL,
		RateLimit: 100, BackoffBase: time.Millisecond}))
	prod, err := e.api.CreateProduct(ctx, stripeapi.ProductSpec{Key: product, Name: "Acme Pro"}, "")
	if err != nil {
		t.Fatal(err)
	}
	price, err := e.api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: product, Currency: "usd",
		Amount: 19900}, "")
	if err != nil {
		t.Fatal(err)
	}
	e.price = price.ID

	e.gh = githubfake.New(githubfake.Options{Owner: "acme", Repo: "acme-pro"})
	ghSrv := httptest.NewServer(e.gh)
	t.Cleanup(ghSrv.Close)
	gh, err := access.NewGitHub(access.GitHubOptions{Token: "ghp_test", BaseURL: ghSrv.URL, Owner: "acme", Repo: "acme-pro",
		HTTPClient: ghSrv.Client(), Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load("../../config.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if e.aliceHash, err = HashPassword(alicePass); err != nil {
		t.Fatal(err)
	}
	cfg.Console.Operators = []config.Operator{{Name: "alice", PasswordHash: e.aliceHash}}
	cfg.Console.LoginFailures, cfg.Console.LoginWindow = 3, 3*time.Minute
	cfg.Products = append(cfg.Products, config.Product{Key: "ebook", Name: "Acme Ebook", Amount: 900, Currency: "usd",
		Access: "none"})
	cfg.Email.OutboxDir = t.TempDir()
	if o.configure != nil {
		o.configure(cfg)
	}
	e.cfg = cfg

	e.db = pgtest.New(t)
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.engine = steps.New(e.db, clk, log, steps.Config{MaxAttempts: 1}, nil)
	e.ful, err = fulfillment.New(fulfillment.Options{DB: e.db, Engine: e.engine, Clock: clk, Log: log, Config: cfg,
		Renderer: renderer, Mailer: mail.NewOutbox(cfg.Email.OutboxDir, clk.Now), GitHub: gh})
	if err != nil {
		t.Fatal(err)
	}
	e.ful.Register()
	e.ful.RegisterSubscriptions()
	e.ful.RegisterOrders(nil)
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Orders: e.ful, Clock: clk, Log: log,
		Products: cfg.Products, Subscriptions: reconcile.SubscriptionOptions{Fulfillment: e.ful,
			Grace: cfg.Subscriptions.Grace, DunningReminder: cfg.Subscriptions.DunningReminder}})
	e.rec = rec
	e.console, err = New(Options{DB: e.db, Clock: clk, Log: log, Config: cfg, Engine: e.engine, Reconciler: rec,
		Access: e.ful, Renderer: renderer, Tokens: o.tokens})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(e.console.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a client with its own cookies that does not follow
// redirects, so each answer can be checked.
type browser struct {
	e      *env
	client *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, client: c}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values) answer {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(data)}
}

func (b *browser) get(path string) answer { return b.do(http.MethodGet, path, nil) }

func (b *browser) post(path string, form url.Values) answer { return b.do(http.MethodPost, path, form) }

var hiddenRE = regexp.MustCompile(`name="(csrf|login_csrf)" value="([^"]+)"`)

// hidden returns the value of a hidden CSRF field of a page.
func hidden(t *testing.T, page, name string) string {
	t.Helper()
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	t.Fatalf("the page has no %s field:\n%.2000s", name, page)
	return ""
}

// signIn signs in as name with password and returns the answer to the
// sign-in POST.
func (b *browser) signIn(name, password string) answer {
	b.e.t.Helper()
	page := b.get("/console/login?next=/console/")
	return b.post("/console/login", url.Values{"login_csrf": {hidden(b.e.t, page.body, "login_csrf")},
		"name": {name}, "password": {password}, "next": {"/console/"}})
}

// signedIn returns a browser signed in as alice.
func (e *env) signedIn() *browser {
	e.t.Helper()
	b := e.browser()
	if a := b.signIn("alice", alicePass); a.status != http.StatusSeeOther {
		e.t.Fatalf("sign in = %d\n%s", a.status, a.body)
	}
	return b
}

// csrf returns the signed-in browser's CSRF token, from a page's form.
func (b *browser) csrf() string {
	b.e.t.Helper()
	return hidden(b.e.t, b.get("/console/").body, "csrf")
}

// paidPurchase records a completed purchase of product with its steps as
// given (name → status), and returns it with the steps by name.
func (e *env) paidPurchase(productKey string, stepStates map[string]store.StepStatus) (store.Purchase, map[string]store.Step) {
	e.t.Helper()
	now := e.clock.Now()
	user, email, login := "user-1", buyerEmail, "octocat"
	pi, ch := "pi_"+uuid.NewString()[:8], "ch_"+uuid.NewString()[:8]
	p := store.Purchase{ID: uuid.NewString(), UserID: &user, Email: &email, ProductKey: productKey, Quantity: 1,
		Status: store.PurchaseCompleted, StripeSessionID: "cs_test_" + uuid.NewString()[:8], StripePaymentIntentID: &pi,
		StripeChargeID: &ch, AmountTotal: 19900, Currency: "usd", GitHubUsername: &login, AccessState: store.AccessNone,
		CreatedAt: now, UpdatedAt: now, CompletedAt: &now}
	if _, err := e.db.InsertPurchase(e.ctx, p); err != nil {
		e.t.Fatal(err)
	}
	order := []string{"purchase_confirmation", "grant_access", "access_email"}
	var rows []store.NewStep
	for _, name := range order {
		if _, ok := stepStates[name]; !ok {
			continue
		}
		ns := store.NewStep{PurchaseID: p.ID, Pipeline: "purchase", Name: name, RunAt: now, MaxAttempts: 1}
		if name == "grant_access" {
			ns.Blocking, ns.Tags = true, []string{"access"}
		}
		if name == "access_email" {
			ns.After, ns.Tags = "grant_access", []string{"access"}
		}
		rows = append(rows, ns)
	}
	if _, err := e.db.InsertSteps(e.ctx, now, rows); err != nil {
		e.t.Fatal(err)
	}
	got := map[string]store.Step{}
	all, err := e.db.PurchaseSteps(e.ctx, p.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range all {
		switch stepStates[s.Name] {
		case store.StepDone:
			result := `{"sent": true, "template": "purchase_confirmation", "to": "` + buyerEmail + `"}`
			if s.Name == "access_email" {
				result = `{"sent": true, "template": "access_granted", "to": "` + buyerEmail + `"}`
			}
			if s.Name == "grant_access" {
				result = `{"granted": true, "provider": "github", "github_username": "octocat"}`
			}
			e.exec(`UPDATE steps SET status = 'done', attempts = 1, result = $2, finished_at = $3, updated_at = $3
				WHERE id = $1`, s.ID, result, now)
		case store.StepFailed:
			e.exec(`UPDATE steps SET status = 'failed', attempts = 1, last_error = 'github: add collaborator: 502 Bad Gateway',
				finished_at = $2, updated_at = $2 WHERE id = $1`, s.ID, now)
		}
		if got[s.Name], err = e.db.GetStep(e.ctx, s.ID); err != nil {
			e.t.Fatal(err)
		}
	}
	return p, got
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) step(id int64) store.Step {
	e.t.Helper()
	s, err := e.db.GetStep(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) auditCount() int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM operator_audit`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// checkout creates a session on the emulator as POST /api/checkout does,
// with its pending purchase row.
func (e *env) checkout() (sessionID, purchaseID string) {
	e.t.Helper()
	purchaseID = uuid.NewString()
	user, email := "user-2", "grace@example.com"
	s, err := e.api.CreateCheckoutSession(e.ctx, stripeapi.CheckoutRequest{
		PriceID: e.price, Quantity: 1, SuccessURL: "http://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
		CancelURL: "http://app.test/pricing", ClientReferenceID: user, CustomerEmail: email,
		Metadata: map[string]string{"user_id": user, "product": product, "purchase_id": purchaseID},
	}, "checkout:"+purchaseID)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	if _, err := e.db.InsertPurchase(e.ctx, store.Purchase{ID: purchaseID, UserID: &user, Email: &email, ProductKey: product,
		Quantity: 1, Status: store.PurchasePending, StripeSessionID: s.ID, AmountTotal: s.AmountTotal, Currency: "usd",
		AccessState: store.AccessNone, CreatedAt: now, UpdatedAt: now}); err != nil {
		e.t.Fatal(err)
	}
	return s.ID, purchaseID
}
