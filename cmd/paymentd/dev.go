package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net"
	"net/http"
	netmail "net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/console"
	"github.com/paymentd/paymentd/internal/devpg"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
)

// runDev is `make run`: the whole daemon on config.yaml's dev defaults, with
// no accounts or keys: a throwaway PostgreSQL cluster under ./.data (unless
// DATABASE_URL is set), the Stripe emulator, a recording GitHub fake, the
// file outbox, the catalog synced to the emulator, a dev storefront on /,
// the operator console with a dev operator, and a walkthrough.
func runDev(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("dev", env)
	dataDir := fs.String("data", ".data", "`directory` for the throwaway cluster and the outbox")
	emuAddr := fs.String("stripe-addr", "127.0.0.1:12111", "listen `address` of the Stripe emulator")
	ghAddr := fs.String("github-addr", "127.0.0.1:12112", "listen `address` of the GitHub fake")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	return devStack(ctx, env, cfg, devOptions{dataDir: *dataDir, emuAddr: *emuAddr, ghAddr: *ghAddr})
}

// devOptions are where the dev stack keeps its data and listens, and what
// to call once it is up (tests).
type devOptions struct {
	dataDir, emuAddr, ghAddr string
	ready                    func(devInfo)
}

// devInfo is the running dev stack, as the walkthrough and tests see it.
type devInfo struct {
	listeners listeners
	app       *app
	emu       *stripeemu.Emulator
	emuURL    string
	github    *githubfake.Fake
	ghURL     string
	outbox    string
	// operator and password sign in to the console ("" without one).
	operator, password string
	token              string // the dev JWT the storefront uses
}

// devOperator is the console operator the dev stack adds.
const devOperator = "dev"

// devStack runs the dev stack on cfg until ctx ends.
func devStack(ctx context.Context, env *cliEnv, cfg *config.Config, o devOptions) error {
	log := newLogger(cfg.Log, env.stderr)
	if cfg.Database.URL == "" {
		cluster, err := devpg.Open(filepath.Join(o.dataDir, "pg"))
		if err != nil {
			return err
		}
		url, started, err := cluster.Start(ctx, "paymentd")
		if err != nil {
			return fmt.Errorf("start dev database: %w", err)
		}
		if started {
			defer func() {
				if err := cluster.Stop(context.WithoutCancel(ctx)); err != nil {
					fmt.Fprintln(env.stderr, "stop dev database:", err)
				}
			}()
		}
		cfg.Database.URL = url
		fmt.Fprintf(env.stdout, "dev database: %s (data in %s)\n", dbInfo(url), cluster.Dir)
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	applied, err := db.Migrate(ctx)
	db.Close()
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		fmt.Fprintf(env.stdout, "applied %d migration(s)\n", len(applied))
	}

	// The Stripe emulator, delivering signed webhooks to our endpoint, several
	// at once and so in no guaranteed order, as Stripe does.
	emu := stripeemu.New(stripeemu.Options{Clock: clock.Real{}, Logger: log.With("component", "stripe-emulator"),
		WebhookConcurrency: 8})
	defer emu.Close()
	emuURL, stopEmu, err := listenAndServe(ctx, o.emuAddr, emu)
	if err != nil {
		return fmt.Errorf("start the Stripe emulator: %w", err)
	}
	defer stopEmu()
	emu.SetBaseURL(emuURL)
	apiHost := cfg.HTTP.Addr
	emu.SetWebhook("http://"+apiHost+"/api/stripe/webhook", cfg.Stripe.WebhookSecret, 0)
	cfg.Stripe.APIBase = emuURL

	// A recording GitHub fake for repository access.
	gh := githubfake.New(githubfake.Options{Owner: cfg.GitHub.Owner, Repo: cfg.GitHub.Repo})
	ghURL, stopGH, err := listenAndServe(ctx, o.ghAddr, gh)
	if err != nil {
		return fmt.Errorf("start the GitHub fake: %w", err)
	}
	defer stopGH()
	cfg.GitHub.APIBase = ghURL
	if cfg.GitHub.Token == "" {
		cfg.GitHub.Token = "dev-github-token"
	}

	// The catalog, synced to the emulator.
	stripeAPI := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: cfg.Stripe.SecretKey, APIBase: emuURL}))
	rep, err := catalog.Sync(ctx, stripeAPI, cfg.Products, false)
	if err != nil {
		return fmt.Errorf("sync the catalog to the emulator: %w", err)
	}
	rep.WriteTo(env.stdout)
	if err := seedPromotionCode(emu); err != nil {
		return err
	}

	info := devInfo{emu: emu, emuURL: emuURL, github: gh, ghURL: ghURL, token: devToken(cfg)}
	info.outbox, _ = filepath.Abs(cfg.Email.OutboxDir)
	if cfg.HTTP.AdminAddr != "" {
		if info.operator, info.password, err = addDevOperator(cfg); err != nil {
			return err
		}
	}
	front, err := newStorefront(cfg, info.token, info.outbox)
	if err != nil {
		return err
	}
	front.data.ElementsURL = emuURL + "/elements/"

	return serve(ctx, env, cfg, roles{"api": true, "worker": true, "reconciler": true}, hooks{
		dev:   true,
		mount: front.mount,
		ready: func(l listeners, a *app) {
			info.listeners, info.app = l, a
			walkthrough(env.stdout, cfg, info)
			if o.ready != nil {
				o.ready(info)
			}
		},
	})
}

// addDevOperator adds the console operator "dev" with a fresh random
// password to the dev stack's configuration (never to config.yaml) and
// returns its name and password.
func addDevOperator(cfg *config.Config) (name, password string, err error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("dev operator password: %w", err)
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	hash, err := console.HashPassword(password)
	if err != nil {
		return "", "", err
	}
	cfg.Console.Operators = append(cfg.Console.Operators, config.Operator{Name: devOperator, PasswordHash: hash})
	return devOperator, password, nil
}

// devPromotionCode is the promotion code the dev emulator knows: 20% off.
const devPromotionCode = "LAUNCH20"

// seedPromotionCode gives the dev emulator a coupon and a promotion code
// on it, so the walkthrough can show a discounted checkout.
func seedPromotionCode(emu *stripeemu.Emulator) error {
	coupon, err := emu.CreateCoupon(stripeemu.CouponParams{Name: "Launch 20% off", PercentOff: 20})
	if err != nil {
		return fmt.Errorf("seed the dev coupon: %w", err)
	}
	if _, err := emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: devPromotionCode, Coupon: coupon}); err != nil {
		return fmt.Errorf("seed the dev promotion code: %w", err)
	}
	return nil
}

// listenAndServe serves h on addr until ctx ends, returning its base URL.
func listenAndServe(ctx context.Context, addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}

const devUser, devEmail = "dev-user-1", "buyer@example.com"

func devToken(cfg *config.Config) string {
	tok, err := httpapi.DevToken([]byte(cfg.Auth.JWTSecret), cfg.Auth.Issuer, cfg.Auth.Audience, devUser, devEmail,
		24*time.Hour, time.Now())
	if err != nil {
		return "(no dev token: " + err.Error() + ")"
	}
	return tok
}

// walkthrough prints how to click through a purchase on the dev stack.
func walkthrough(w io.Writer, cfg *config.Config, info devInfo) {
	l := info.listeners
	base := "http://" + l.api
	product := cfg.Products[0].Key
	metrics := "(set http.admin_addr, or http.public_metrics)"
	switch {
	case l.admin != "":
		metrics = "http://" + l.admin + "/metrics   Readiness details: http://" + l.admin + "/readyz"
	case cfg.HTTP.PublicMetrics:
		metrics = base + "/metrics"
	}
	console := "(set http.admin_addr for the operator console)"
	if info.operator != "" {
		console = fmt.Sprintf("http://%s/console/   sign in as %s / %s", l.admin, info.operator, info.password)
	}
	fmt.Fprintf(w, `
paymentd is up on %[1]s  (Stripe emulator %[2]s, GitHub fake %[3]s)

Storefront:        %[1]s/   (buy, pay on the emulator's page, watch the purchase and its emails)
Operator console:  %[11]s

Or walk the API by hand:

1. A dev JWT for user %[4]s <%[5]s>, valid 24h:
   export TOKEN=%[6]s

2. Start a checkout:
   curl -s -X POST %[1]s/api/checkout -H "Authorization: Bearer $TOKEN" \
     -H 'Content-Type: application/json' -d '{"product":"%[7]s","github_username":"octocat"}'
   (add "promotion_code":"%[9]s" for 20%% off: a promotion code the emulator knows)

3. Open the "url" it returns in a browser and press Pay (the emulator's checkout page).

4. Claim the purchase with the session id from the redirect:
   curl -s -X POST %[1]s/api/purchases/claim -H "Authorization: Bearer $TOKEN" \
     -H 'Content-Type: application/json' -d '{"session_id":"cs_test_..."}'
   curl -s %[1]s/api/purchases -H "Authorization: Bearer $TOKEN"

5. Emails land in %[8]s (.eml and .html); the GitHub invitation shows in the log.
   Health: %[1]s/readyz   Metrics: %[10]s

6. A cart (the storefront's Cart box does the same), stock in `+"`paymentd stock list`"+`:
   curl -s -X PUT %[1]s/api/cart -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
     -d '{"items":[{"product":"%[7]s","quantity":1},{"product":"acme_stickers","quantity":2}],"promotion_code":"%[9]s"}'
   curl -s -X POST %[1]s/api/checkout -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
     -d '{"cart":true,"ui_mode":"hosted"}'      # open "url", pay on the emulator's checkout page
   curl -s -X POST %[1]s/api/checkout -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
     -d '{"cart":true,"ui_mode":"embedded"}'    # pay on %[2]s/elements/<client_secret>
   curl -s %[1]s/api/orders -H "Authorization: Bearer $TOKEN"
   Ctrl-C stops everything.
%[12]s
`, base, info.emuURL, info.ghURL, devUser, devEmail, info.token, product, info.outbox, devPromotionCode, metrics, console,
		subscriptionWalkthrough(cfg, base, info.emuURL))
}

// subscriptionWalkthrough is the walkthrough's part about the first
// subscription product, "" when the catalog sells none.
func subscriptionWalkthrough(cfg *config.Config, base, emuURL string) string {
	for _, p := range cfg.Products {
		if !p.IsSubscription() || len(p.Prices) == 0 {
			continue
		}
		trial := "the first invoice is paid at once"
		if p.TrialDays > 0 {
			trial = fmt.Sprintf("a %d-day trial: nothing is charged yet", p.TrialDays)
		}
		return fmt.Sprintf(`
Subscriptions:

6. Subscribe to %[3]s (%[4]s), then pay on the emulator's page and claim as in 4:
   curl -s -X POST %[1]s/api/checkout -H "Authorization: Bearer $TOKEN" \
     -H 'Content-Type: application/json' -d '{"product":"%[3]s","price":"%[5]s","organization_id":"org_demo"}'
   curl -s %[1]s/api/subscriptions -H "Authorization: Bearer $TOKEN"

7. Move the emulator's clock (a Stripe test clock) and watch renewals, receipts and the trial's end:
   curl -s -X POST '%[2]s/_emulator/advance?seconds=1296000'    # 15 days
   The emulator's webhooks wake the reconciler; subscription_started, trial_ending and invoice_receipt land
   in the outbox.

8. Fail the card: open the billing portal and press "Make the card decline (emulator)":
   curl -s -X POST %[1]s/api/billing/portal -H "Authorization: Bearer $TOKEN" \
     -H 'Content-Type: application/json' -d '{"return_url":"%[1]s/"}'
   then advance a month (seconds=2678400): payment_failed, and payment_reminder three days later
   (seconds=259200) while unpaid; the subscription is past_due and keeps access for subscriptions.grace.
   Pay from the invoice link in the email, or cancel or switch price on the portal page, and watch
   /api/subscriptions and the outbox follow.
`, base, emuURL, p.Key, trial, p.Prices[0].Key)
	}
	return ""
}

// The dev storefront: the page / serves in `paymentd dev`. It is the
// API's living example for frontend developers, so it uses the public API
// exactly as a frontend would, with the dev JWT: the products with Buy or
// Subscribe buttons (POST /api/checkout, then the emulator's page), the
// buyer's purchases, subscriptions and credits (GET /api/purchases,
// /api/subscriptions, /api/credits, and POST /api/purchases/claim with the
// session_id the redirect brings back), a link to the billing portal (POST
// /api/billing/portal), and the outbox's emails, which open in the page.

//go:embed storefront.html
var storefrontHTML string

// storefront serves the dev storefront and the outbox it lists.
type storefront struct {
	page   *template.Template
	data   storefrontData
	outbox string
}

type storefrontData struct {
	Brand, Colour, Background, Text string
	User, Email, Token              string
	PromotionCode                   string
	Products                        []storefrontProduct
	// ElementsURL is the emulator's Elements page, for embedded carts.
	ElementsURL string
}

type storefrontProduct struct {
	Key, Name, Description, Price string
	Features                      []string
	GitHub                        bool // the buyer names a GitHub account
	// Prices are a subscription's prices, to choose from; none for a
	// one-time product.
	Prices    []storefrontPrice
	TrialDays int
}

type storefrontPrice struct {
	Key, Label string
}

func newStorefront(cfg *config.Config, token, outbox string) (*storefront, error) {
	page, err := template.New("storefront").Parse(storefrontHTML)
	if err != nil {
		return nil, fmt.Errorf("parse the storefront: %w", err)
	}
	b := cfg.Brand
	d := storefrontData{Brand: b.ProductName, Colour: b.PrimaryColor, Background: b.BackgroundColor, Text: b.TextColor,
		User: devUser, Email: devEmail, Token: token, PromotionCode: devPromotionCode}
	for _, p := range cfg.Products {
		sp := storefrontProduct{Key: p.Key, Name: p.Name, Description: p.Description,
			Price: mail.FormatMoney(p.Amount, p.Currency), Features: p.Features, GitHub: p.Access == "github"}
		if p.IsSubscription() {
			sp.Price, sp.TrialDays = "", p.TrialDays
			for _, pr := range p.Prices {
				every := pr.Interval
				if pr.Count() > 1 {
					every = fmt.Sprintf("%d %ss", pr.Count(), pr.Interval)
				}
				sp.Prices = append(sp.Prices, storefrontPrice{Key: pr.Key,
					Label: mail.FormatMoney(pr.Amount, pr.Currency) + " / " + every})
			}
		}
		d.Products = append(d.Products, sp)
	}
	return &storefront{page: page, data: d, outbox: outbox}, nil
}

// mount serves the storefront on the public listener (dev only).
func (f *storefront) mount(api *httpapi.Server) {
	api.Handle("GET /{$}", http.HandlerFunc(f.index))
	api.Handle("GET /dev/outbox", http.HandlerFunc(f.emails))
	api.Handle("GET /dev/outbox/{name}", http.HandlerFunc(f.email))
}

func (f *storefront) index(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := f.page.Execute(&buf, f.data); err != nil {
		http.Error(w, "render the storefront: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// outboxEmail is one email of the outbox, as the storefront lists it.
type outboxEmail struct {
	Name     string `json:"name"`
	Template string `json:"template"`
	To       string `json:"to"`
	Subject  string `json:"subject"`
	Date     string `json:"date"`
	URL      string `json:"url"`
}

// emails lists the outbox's newest emails (at most 50), newest first.
func (f *storefront) emails(w http.ResponseWriter, r *http.Request) {
	paths, err := mail.NewOutbox(f.outbox, nil).List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	list := []outboxEmail{}
	for i := len(paths) - 1; i >= 0 && len(list) < 50; i-- {
		e, err := readOutboxEmail(paths[i])
		if err != nil {
			continue // unreadable: left out rather than failing the list
		}
		list = append(list, e)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"emails": list})
}

// readOutboxEmail reads the headers of one .eml file of the outbox.
func readOutboxEmail(path string) (outboxEmail, error) {
	file, err := os.Open(path)
	if err != nil {
		return outboxEmail{}, err
	}
	defer file.Close()
	m, err := netmail.ReadMessage(file)
	if err != nil {
		return outboxEmail{}, err
	}
	name := strings.TrimSuffix(filepath.Base(path), ".eml")
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		subject = m.Header.Get("Subject")
	}
	return outboxEmail{Name: name, Template: m.Header.Get("X-Paymentd-Template"), To: m.Header.Get("To"),
		Subject: subject, Date: m.Header.Get("Date"), URL: "/dev/outbox/" + name + ".html"}, nil
}

// outboxName is an outbox file's name: a timestamp, a slug, a hash.
var outboxName = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{9}Z-[a-z0-9_-]{1,40}-[0-9a-f]{12}\.html$`)

// email serves one outbox email's HTML, sandboxed.
func (f *storefront) email(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !outboxName.MatchString(name) {
		http.NotFound(w, r)
		return
	}
	body, err := os.ReadFile(filepath.Join(f.outbox, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'")
	w.Write(body)
}
