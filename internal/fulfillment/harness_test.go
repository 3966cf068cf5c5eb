// The test harness: a real Postgres per test, the real SDKs behind HTTP
// fakes (SendGrid through an httptest server, GitHub through githubfake,
// the access webhook through an httptest receiver), a fake clock, and the
// engine driven with RunDue.
package fulfillment_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// The reconciler drives a Fulfillment through this interface.
var _ reconcile.Fulfillment = (*fulfillment.Fulfillment)(nil)

// t0 is when every test's first purchase completes.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const (
	day         = 24 * time.Hour
	adminEmail  = "admin@acme.test"
	buyerEmail  = "ada@example.com"
	repoURL     = "https://github.com/acme/acme-pro"
	pricingURL  = "https://acme.test/pricing"
	hookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	githubToken = "ghp_test"
)

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// sentMail is one message SendGrid accepted.
type sentMail struct {
	To, Subject, Text, HTML, Category, Key string
}

// sendGridFake is the SendGrid v3 mail send endpoint: it accepts with 202
// unless fail names a status for the recipient, and records what it accepted.
type sendGridFake struct {
	mu       sync.Mutex
	fail     func(to string) int
	sent     []sentMail
	attempts int
}

func (s *sendGridFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Personalizations []struct {
			To []struct {
				Email string `json:"email"`
			} `json:"to"`
		} `json:"personalizations"`
		Subject string `json:"subject"`
		Content []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"content"`
		Categories []string          `json:"categories"`
		CustomArgs map[string]string `json:"custom_args"`
	}
	raw, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/v3/mail/send" || json.Unmarshal(raw, &body) != nil || len(body.Personalizations) != 1 {
		http.Error(w, `{"errors":[{"message":"bad request"}]}`, http.StatusBadRequest)
		return
	}
	m := sentMail{To: body.Personalizations[0].To[0].Email, Subject: body.Subject, Key: body.CustomArgs[mail.IdempotencyArg]}
	for _, c := range body.Content {
		if c.Type == "text/plain" {
			m.Text = c.Value
		} else {
			m.HTML = c.Value
		}
	}
	if len(body.Categories) > 0 {
		m.Category = body.Categories[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.fail != nil {
		if status := s.fail(m.To); status != 0 {
			w.WriteHeader(status)
			io.WriteString(w, `{"errors":[{"message":"internal error"}]}`)
			return
		}
	}
	s.sent = append(s.sent, m)
	w.WriteHeader(http.StatusAccepted)
}

func (s *sendGridFake) setFail(fail func(to string) int) {
	s.mu.Lock()
	s.fail = fail
	s.mu.Unlock()
}

// delivery is one request the webhook receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is the product's backend: it answers queued statuses, then 204.
// It records a delivery when it answers it, the moment it acts on it.
type receiver struct {
	mu        sync.Mutex
	responses []int
	got       []delivery
	// held, when set, holds the next delivery until release is closed,
	// signaling arrived once it is held.
	held *hold
}

// hold is one delivery held in flight.
type hold struct {
	arrived, release chan struct{}
}

// holdNext holds the next delivery until the returned hold's release is
// closed.
func (rc *receiver) holdNext() *hold {
	hd := &hold{arrived: make(chan struct{}), release: make(chan struct{})}
	rc.mu.Lock()
	rc.held = hd
	rc.mu.Unlock()
	return hd
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	hd := rc.held
	rc.held = nil
	rc.mu.Unlock()
	if hd != nil {
		close(hd.arrived)
		<-hd.release
	}
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body})
	status := http.StatusNoContent
	if len(rc.responses) > 0 {
		status, rc.responses = rc.responses[0], rc.responses[1:]
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) then(status int) {
	rc.mu.Lock()
	rc.responses = append(rc.responses, status)
	rc.mu.Unlock()
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

type harness struct {
	t    *testing.T
	ctx  context.Context
	db   *store.DB
	clk  *clock.Fake
	eng  *steps.Engine
	ful  *fulfillment.Fulfillment
	cfg  *config.Config
	mail *sendGridFake
	gh   *githubfake.Fake
	hook *receiver
	// github is the client the Fulfillment uses, for changes "by hand".
	github *access.GitHub
}

type harnessOptions struct {
	// configure adjusts the configuration before the Fulfillment is built.
	configure func(*config.Config)
	// posthog, when set, serves PostHog's capture endpoint.
	posthog http.Handler
	// quiet builds the Fulfillment with Options.Quiet.
	quiet bool
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// testConfig sells a GitHub product, a webhook product and an ebook
// without access, with the default follow-ups.
func testConfig(hookURL string) *config.Config {
	cfg := config.Defaults()
	cfg.Brand = config.Brand{ProductName: "Acme", FromAddress: "hello@acme.test", FromName: "Acme",
		SupportEmail: "support@acme.test", AdminEmail: adminEmail, PricingURL: pricingURL}
	cfg.HTTP.PublicURL = "https://pay.acme.test"
	cfg.Email.UnsubscribeSecret = "test-unsubscribe-secret"
	cfg.GitHub = config.GitHub{Owner: "acme", Repo: "acme-pro", Permission: "pull"}
	cfg.Webhook = config.Webhook{URL: hookURL, Secret: hookSecret}
	cfg.Products = []config.Product{
		{Key: "pro", Name: "Acme Pro", Amount: 19900, Currency: "usd", Access: "github", RepoURL: repoURL},
		{Key: "api", Name: "Acme API", Amount: 19900, Currency: "usd", Access: "webhook"},
		{Key: "ebook", Name: "Acme Ebook", Amount: 1900, Currency: "usd"},
	}
	return cfg
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), db: pgtest.New(t), clk: clock.NewFake(t0),
		mail: &sendGridFake{}, hook: &receiver{}}
	// steps.subject_id has no foreign key (it names a row of one of several
	// tables): every step a flow schedules must belong to a real subject.
	t.Cleanup(func() {
		orphans, err := h.db.StepsWithoutSubject(context.Background())
		if err != nil {
			t.Error(err)
		}
		for _, s := range orphans {
			t.Errorf("step %d %s/%s belongs to %s %v, which does not exist", s.ID, s.Pipeline, s.Name, s.SubjectKind, *s.SubjectID)
		}
	})
	h.gh = githubfake.New(githubfake.Options{Owner: "acme", Repo: "acme-pro", Token: githubToken, Clock: h.clk.Now})
	ghSrv, sgSrv, hookSrv := serve(t, h.gh), serve(t, h.mail), serve(t, h.hook)

	h.cfg = testConfig(hookSrv.URL + "/hooks/paymentd")
	if opts.configure != nil {
		opts.configure(h.cfg)
	}
	h.eng = steps.New(h.db, h.clk, testLogger(t), steps.Config{MaxAttempts: 5, BackoffBase: 10 * time.Second,
		BackoffMax: time.Hour}, nil)
	renderer, err := fulfillment.NewRenderer(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	gh, err := access.NewGitHub(access.GitHubOptions{Token: githubToken, BaseURL: ghSrv.URL, Owner: "acme",
		Repo: "acme-pro", HTTPClient: ghSrv.Client(), Clock: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	// The webhook stamps messages with the wall clock: receivers check
	// the timestamp against theirs.
	hook, err := access.NewWebhook(access.WebhookOptions{URL: h.cfg.Webhook.URL, Secret: hookSecret,
		HTTPClient: hookSrv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	h.github = gh
	fo := fulfillment.Options{DB: h.db, Engine: h.eng, Clock: h.clk, Log: testLogger(t), Config: h.cfg,
		Renderer: renderer, Mailer: mail.NewSendGrid("SG.test-key", sgSrv.URL, 0, sgSrv.Client()),
		GitHub: gh, Webhook: hook, Quiet: opts.quiet}
	if opts.posthog != nil {
		phSrv := serve(t, opts.posthog)
		if fo.PostHog, err = access.NewPostHog(access.PostHogOptions{APIKey: "phc_test", Host: phSrv.URL,
			HTTPClient: phSrv.Client(), Clock: h.clk.Now}); err != nil {
			t.Fatal(err)
		}
	}
	if h.ful, err = fulfillment.New(fo); err != nil {
		t.Fatal(err)
	}
	h.ful.Register()
	return h
}

// buy describes a purchase for the factories; zero fields take defaults.
type buy struct {
	product  string // default "pro"
	email    string // default buyerEmail
	noEmail  bool
	userID   string
	username string
	amount   int64 // default 19900
	// edit adjusts the row before it is inserted.
	edit func(*store.Purchase)
}

func (h *harness) insert(b buy, status store.PurchaseStatus) store.Purchase {
	h.t.Helper()
	if b.product == "" {
		b.product = "pro"
	}
	if b.email == "" {
		b.email = buyerEmail
	}
	if b.amount == 0 {
		b.amount = 19900
	}
	now := h.clk.Now()
	p := store.Purchase{ID: uuid.NewString(), ProductKey: b.product, Quantity: 1, Status: status,
		StripeSessionID: "cs_test_" + uuid.NewString()[:8], AmountTotal: b.amount, Currency: "usd",
		AccessState: store.AccessNone, CreatedAt: now.Add(-10 * time.Minute), UpdatedAt: now}
	if !b.noEmail {
		p.Email = &b.email
	}
	if b.userID != "" {
		p.UserID = &b.userID
	}
	if b.username != "" {
		p.GitHubUsername = &b.username
	}
	if status != store.PurchasePending && status != store.PurchaseExpired && status != store.PurchaseFailed {
		p.CompletedAt = &now
	}
	if b.edit != nil {
		b.edit(&p)
	}
	if _, err := h.db.InsertPurchase(h.ctx, p); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// tx runs fn in a transaction, as the reconciler calls the Fulfillment.
func (h *harness) tx(fn func(q *store.Queries) error) {
	h.t.Helper()
	if err := h.db.InTx(h.ctx, fn); err != nil {
		h.t.Fatal(err)
	}
}

// complete records a completed purchase and schedules its pipeline.
func (h *harness) complete(b buy) store.Purchase {
	h.t.Helper()
	p := h.insert(b, store.PurchaseCompleted)
	h.tx(func(q *store.Queries) error { return h.ful.Completed(h.ctx, q, []store.Purchase{p}, false) })
	return p
}

// refund records refund id of amount as the reconciler does: the purchase's
// cumulative refunded amount and status move, then Refunded is called.
func (h *harness) refund(p store.Purchase, id string, amount int64) store.Purchase {
	h.t.Helper()
	return h.refundAt(p, id, amount, h.clk.Now())
}

// reverseRefund records that refund id of p ended in status (failed or
// canceled), every cent of p paid again, as the reconciler does, hands it
// to the Fulfillment and runs what is due.
func (h *harness) reverseRefund(p store.Purchase, id, status string) {
	h.t.Helper()
	h.tx(func(q *store.Queries) error {
		cur, err := q.LockPurchase(h.ctx, p.ID)
		if err != nil {
			return err
		}
		cur.AmountRefunded, cur.Status = 0, store.PurchaseCompleted
		if err := q.UpdatePurchase(h.ctx, cur, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.RefundReversed(h.ctx, q, cur, store.Refund{ID: id, PurchaseID: p.ID, Amount: cur.AmountTotal,
			Currency: "usd", Status: status})
	})
	h.run()
}

// refundAt is refund for a refund Stripe created at createdAt.
func (h *harness) refundAt(p store.Purchase, id string, amount int64, createdAt time.Time) store.Purchase {
	h.t.Helper()
	var cur store.Purchase
	h.tx(func(q *store.Queries) error {
		var err error
		if cur, err = q.LockPurchase(h.ctx, p.ID); err != nil {
			return err
		}
		cur.AmountRefunded += amount
		cur.Status = store.PurchasePartiallyRefunded
		if cur.AmountRefunded >= cur.AmountTotal {
			cur.Status = store.PurchaseRefunded
		}
		if err := q.UpdatePurchase(h.ctx, cur, h.clk.Now()); err != nil {
			return err
		}
		r := store.Refund{ID: id, PurchaseID: p.ID, Amount: amount, Currency: "usd", Status: "succeeded",
			CreatedAt: createdAt}
		if _, _, err := q.UpsertRefund(h.ctx, r, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.Refunded(h.ctx, q, cur, r)
	})
	return cur
}

// run runs every due step.
func (h *harness) run() int {
	h.t.Helper()
	n, err := h.eng.RunDue(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// at moves the clock to t0+d and runs every due step.
func (h *harness) at(d time.Duration) {
	h.t.Helper()
	h.clk.Set(t0.Add(d))
	h.run()
}

// advance moves the clock forward by d and runs every due step.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clk.Advance(d)
	h.run()
}

// mails returns the accepted messages made from template (every one for "").
func (h *harness) mails(template string) []sentMail {
	h.mail.mu.Lock()
	defer h.mail.mu.Unlock()
	var out []sentMail
	for _, m := range h.mail.sent {
		if template == "" || m.Category == template {
			out = append(out, m)
		}
	}
	return out
}

// oneMail returns the only message made from template to recipient.
func (h *harness) oneMail(template, to string) sentMail {
	h.t.Helper()
	var found []sentMail
	for _, m := range h.mails(template) {
		if m.To == to {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("%d %s emails to %s, want 1 (all sent: %v)", len(found), template, to, h.categories())
	}
	return found[0]
}

func (h *harness) categories() []string {
	var out []string
	for _, m := range h.mails("") {
		out = append(out, m.Category+"→"+m.To)
	}
	return out
}

// step returns the step name of pipeline for purchase p.
func (h *harness) step(p store.Purchase, pipeline, name string) store.Step {
	h.t.Helper()
	all, err := h.db.PurchaseSteps(h.ctx, p.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range all {
		if s.Pipeline == pipeline && s.Name == name {
			return s
		}
	}
	h.t.Fatalf("no step %s/%s for purchase %s", pipeline, name, p.ID)
	return store.Step{}
}

// stepsNamed returns the purchase's steps called name, in any pipeline.
func (h *harness) stepsNamed(p store.Purchase, name string) []store.Step {
	h.t.Helper()
	all, err := h.db.PurchaseSteps(h.ctx, p.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.Step
	for _, s := range all {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// reload reads a purchase as it is now.
func (h *harness) reload(p store.Purchase) store.Purchase {
	h.t.Helper()
	cur, err := h.db.GetPurchase(h.ctx, p.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return cur
}

// result decodes a step's recorded result.
func result[T any](t *testing.T, s store.Step) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(s.Result, &v); err != nil {
		t.Fatalf("result of %s/%s = %s: %v", s.Pipeline, s.Name, s.Result, err)
	}
	return v
}

// skipped is the part of a step result that says why nothing was done.
type skipped struct {
	Sent    bool   `json:"sent"`
	Skipped string `json:"skipped"`
}

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}
