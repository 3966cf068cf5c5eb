// Package console is the operator console: server-rendered pages on the
// admin listener, under /console/, to see, search and repair purchases,
// subscriptions, orders and steps. It reads through store and acts through the
// functions the CLI and the reconciler use (store.RetryFailedStep, reconcile.Reconciler.Object,
// fulfillment.RepairAccess, steps.Engine.Schedule): there is no second code
// path for retry, reconcile or access. Every action is behind a
// confirmation page and written to the operator_audit table with the
// object before and after.
//
// A kind of object is a page template and a store query: purchases have
// purchase.html and store.SearchPurchases/PurchaseSteps, subscriptions
// subscription.html and store.SearchSubscriptions/SubjectSteps, orders
// order.html and store.SearchOrders/SubjectSteps; each reuses the
// timeline and audit partials.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// Reconciler reconciles one Stripe object now (*reconcile.Reconciler).
type Reconciler interface {
	Object(ctx context.Context, id string, rep *reconcile.Report) error
}

// AccessRepairer schedules a grant or a revocation of a purchase's access
// (*fulfillment.Fulfillment), inside the caller's transaction.
type AccessRepairer interface {
	RepairAccess(ctx context.Context, q *store.Queries, p store.Purchase, want store.AccessState) error
}

// TokenVerifier verifies a bearer token from the users' JWKS
// (*httpapi.Authenticator built without an HS256 secret).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (httpapi.User, error)
}

// Options are the console's dependencies. All but Tokens are required.
type Options struct {
	DB     *store.DB
	Clock  clock.Clock
	Log    *slog.Logger
	Config *config.Config
	// Engine schedules the new pipeline of a resent email.
	Engine     *steps.Engine
	Reconciler Reconciler
	Access     AccessRepairer
	// Renderer renders the previews of sent emails, and gives the brand.
	Renderer *mail.Renderer
	// Tokens lets operators sign in with a token carrying
	// console.role in console.role_claim; nil when no role is configured.
	Tokens TokenVerifier
	// Dev drops the cookie's Secure flag, for `paymentd dev` on plain-HTTP
	// localhost. Everywhere else the cookie is Secure.
	Dev bool
}

// Console serves the operator console.
type Console struct {
	db        *store.DB
	clock     clock.Clock
	log       *slog.Logger
	cfg       config.Console
	products  map[string]config.Product
	live      bool // the Stripe key is a live one: Dashboard links without /test
	engine    *steps.Engine
	rec       Reconciler
	access    AccessRepairer
	renderer  *mail.Renderer
	tokens    TokenVerifier
	dev       bool
	operators map[string]config.Operator // by lower-cased name
	pages     map[string]*template.Template
	css       []byte
}

//go:embed templates/*.html templates/*.css
var templateFS embed.FS

// New checks the options (every operator's hash must parse) and returns
// the console.
func New(o Options) (*Console, error) {
	var missing []string
	for name, absent := range map[string]bool{"DB": o.DB == nil, "Clock": o.Clock == nil, "Log": o.Log == nil,
		"Config": o.Config == nil, "Engine": o.Engine == nil, "Reconciler": o.Reconciler == nil,
		"Access": o.Access == nil, "Renderer": o.Renderer == nil} {
		if absent {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("new console: missing %s", strings.Join(missing, ", "))
	}
	c := &Console{db: o.DB, clock: o.Clock, log: o.Log, cfg: o.Config.Console, products: map[string]config.Product{},
		engine: o.Engine, rec: o.Reconciler, access: o.Access, renderer: o.Renderer, tokens: o.Tokens, dev: o.Dev,
		operators: map[string]config.Operator{}}
	key := o.Config.Stripe.SecretKey
	c.live = strings.HasPrefix(key, "sk_live_") || strings.HasPrefix(key, "rk_live_")
	for _, p := range o.Config.Products {
		c.products[p.Key] = p
	}
	for i, op := range o.Config.Console.Operators {
		if err := checkHash(op.PasswordHash); err != nil {
			return nil, fmt.Errorf("console.operators[%d] (%s): password_hash: %w", i, op.Name, err)
		}
		c.operators[strings.ToLower(op.Name)] = op
	}
	if c.cfg.RoleClaim != "" && c.tokens == nil {
		return nil, errors.New("new console: console.role_claim is set but no token verifier was given")
	}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	return c, nil
}

// pageFiles are the pages; each is parsed with the layout and partials.
var pageFiles = []string{"login", "overview", "search", "purchase", "subscription", "order", "steps", "confirm", "message"}

func (c *Console) parseTemplates() error {
	base, err := template.New("").Funcs(c.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return fmt.Errorf("parse console templates: %w", err)
	}
	c.pages = map[string]*template.Template{}
	for _, name := range pageFiles {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("parse console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	css, err := fs.ReadFile(templateFS, "templates/console.css")
	if err != nil {
		return err
	}
	b := c.renderer.Brand()
	c.css = []byte(strings.NewReplacer("#4f46e5", b.PrimaryColor, "#f4f4f7", b.BackgroundColor,
		"#1f2937", b.TextColor).Replace(string(css)))
	return nil
}

// Handler returns the console's routes, all under /console/.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.login)
	if c.tokens != nil {
		mux.HandleFunc("POST /console/login/token", c.loginToken)
	}
	mux.HandleFunc("GET /console/static/console.css", c.stylesheet)
	mux.Handle("POST /console/logout", c.authed(c.logout))

	mux.Handle("GET /console/{$}", c.authed(c.overview))
	mux.Handle("GET /console/search", c.authed(c.search))
	mux.Handle("GET /console/purchases/{id}", c.authed(c.purchase))
	mux.Handle("GET /console/purchases/{id}/steps/{step}/email", c.authed(c.emailPreview))
	mux.Handle("GET /console/purchases/{id}/reconcile", c.authed(c.reconcileConfirm))
	mux.Handle("POST /console/purchases/{id}/reconcile", c.authed(c.reconcileDo))
	mux.Handle("GET /console/purchases/{id}/access/{want}", c.authed(c.accessConfirm))
	mux.Handle("POST /console/purchases/{id}/access/{want}", c.authed(c.accessDo))
	mux.Handle("GET /console/subscriptions/{id}", c.authed(c.subscription))
	mux.Handle("GET /console/subscriptions/{id}/steps/{step}/email", c.authed(c.subscriptionEmailPreview))
	mux.Handle("GET /console/subscriptions/{id}/reconcile", c.authed(c.subscriptionReconcileConfirm))
	mux.Handle("POST /console/subscriptions/{id}/reconcile", c.authed(c.subscriptionReconcileDo))
	mux.Handle("GET /console/orders/{id}", c.authed(c.order))
	mux.Handle("GET /console/orders/{id}/steps/{step}/email", c.authed(c.orderEmailPreview))
	mux.Handle("GET /console/orders/{id}/reconcile", c.authed(c.orderReconcileConfirm))
	mux.Handle("POST /console/orders/{id}/reconcile", c.authed(c.orderReconcileDo))
	mux.Handle("GET /console/steps", c.authed(c.stepsPage))
	mux.Handle("GET /console/steps/retry", c.authed(c.bulkRetryConfirm))
	mux.Handle("POST /console/steps/retry", c.authed(c.bulkRetryDo))
	mux.Handle("GET /console/steps/{id}/{action}", c.authed(c.stepConfirm))
	mux.Handle("POST /console/steps/{id}/{action}", c.authed(c.stepDo))
	mux.Handle("/console/", c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.message(w, r, s, http.StatusNotFound, "Not found", "There is no such page in the console.")
	}))
	return c.headers(mux)
}

// headers sets what every console response carries: no caching, no
// framing, no sniffing, no referrer, and a policy that allows this
// origin's stylesheet and nothing else (no script at all).
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "+
			"frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) stylesheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write(c.css)
}

// page is what every page template receives.
type page struct {
	Title    string
	Brand    string
	Operator string
	CSRF     string
	// Refresh, when positive, reloads the page every Refresh seconds.
	Refresh int
	// Flash is the audit entry of the action just done, if any.
	Flash []store.AuditEntry
	Data  any
}

// render executes the named page into a buffer, so a template error is a
// clean 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, title string, data any,
	refresh int) {
	p := page{Title: title, Brand: c.renderer.Brand().ProductName, Refresh: refresh, Data: data}
	if s != nil {
		p.Operator, p.CSRF = s.Operator, s.CSRFToken
		p.Flash = c.flash(r, s)
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.ErrorContext(r.Context(), "render console page", "page", name, "err", err)
		http.Error(w, "the page failed to render; it has been logged", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// message renders a page that only says something (errors, refusals).
func (c *Console) message(w http.ResponseWriter, r *http.Request, s *session, status int, title, text string) {
	c.render(w, r, s, status, "message", title, text, 0)
}

// fail logs an unexpected error once and shows a safe message.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the operator went away
	}
	c.log.ErrorContext(r.Context(), "console: "+what, "err", err, "operator", s.Operator, "path", r.URL.Path)
	c.message(w, r, s, http.StatusInternalServerError, "Something went wrong",
		"The console could not "+what+". The error has been logged.")
}

// now is the console's clock.
func (c *Console) now() time.Time { return c.clock.Now() }
