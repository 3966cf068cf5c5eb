package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/devpg"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
)

// runDev is `make run`: the whole daemon on config.yaml's dev defaults, with
// no accounts or keys: a throwaway PostgreSQL cluster under ./.data (unless
// DATABASE_URL is set), the Stripe emulator, a recording GitHub fake and the
// file outbox, the catalog synced to the emulator, and a walkthrough.
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
	log := newLogger(cfg.Log, env.stderr)
	if cfg.Database.URL == "" {
		cluster, err := devpg.Open(filepath.Join(*dataDir, "pg"))
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

	// The Stripe emulator, delivering signed webhooks to our endpoint.
	emu := stripeemu.New(stripeemu.Options{Clock: clock.Real{}, Logger: log.With("component", "stripe-emulator")})
	defer emu.Close()
	emuURL, stopEmu, err := listenAndServe(ctx, *emuAddr, emu)
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
	ghURL, stopGH, err := listenAndServe(ctx, *ghAddr, gh)
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

	outbox, _ := filepath.Abs(cfg.Email.OutboxDir)
	return serve(ctx, env, cfg, roles{"api": true, "worker": true, "reconciler": true}, hooks{
		mount: func(api *httpapi.Server) {
			api.Handle("GET /{$}", devLanding(cfg, outbox))
		},
		ready: func(l listeners, _ *app) {
			walkthrough(env.stdout, cfg, l, emuURL, ghURL, outbox)
		},
	})
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
func walkthrough(w io.Writer, cfg *config.Config, l listeners, emuURL, ghURL, outbox string) {
	base := "http://" + l.api
	product := cfg.Products[0].Key
	metrics := "(set http.admin_addr, or http.public_metrics)"
	switch {
	case l.admin != "":
		metrics = "http://" + l.admin + "/metrics   Readiness details: http://" + l.admin + "/readyz"
	case cfg.HTTP.PublicMetrics:
		metrics = base + "/metrics"
	}
	fmt.Fprintf(w, `
paymentd is up on %[1]s  (Stripe emulator %[2]s, GitHub fake %[3]s)

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
   Ctrl-C stops everything.

`, base, emuURL, ghURL, devUser, devEmail, devToken(cfg), product, outbox, devPromotionCode, metrics)
}

// devLanding is the page Stripe's success and cancel URLs land on in dev.
func devLanding(cfg *config.Config, outbox string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		sid := r.URL.Query().Get("session_id")
		var b strings.Builder
		b.WriteString(`<!doctype html><html><body style="font-family:sans-serif;max-width:40rem;margin:3rem auto">`)
		b.WriteString(`<h1>paymentd dev</h1>`)
		if sid != "" {
			fmt.Fprintf(&b, `<p>Payment done. Claim it:</p><pre>curl -s -X POST http://%s/api/purchases/claim -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"session_id":"%s"}'</pre>`,
				html.EscapeString(r.Host), html.EscapeString(sid))
		} else {
			b.WriteString(`<p>Checkout canceled or not started. See the walkthrough in the terminal.</p>`)
		}
		fmt.Fprintf(&b, `<p>Emails are written to <code>%s</code>.</p></body></html>`, html.EscapeString(outbox))
		io.WriteString(w, b.String())
	})
}
