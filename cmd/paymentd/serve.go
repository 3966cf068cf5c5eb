package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// allRoles are the parts of the daemon `serve --roles` can run.
var allRoles = []string{"api", "worker", "reconciler"}

// roles says which parts of the daemon this replica runs.
type roles map[string]bool

func parseRoles(s string) (roles, error) {
	r := roles{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(allRoles, name) {
			return nil, fmt.Errorf("unknown role %q (roles: %s)", name, strings.Join(allRoles, ", "))
		}
		r[name] = true
	}
	return r, nil
}

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("serve", env)
	roleList := fs.String("roles", strings.Join(allRoles, ","), "comma-separated `roles` to run: api, worker, reconciler")
	if err := parse(fs, args); err != nil {
		return err
	}
	rs, err := parseRoles(*roleList)
	if err != nil {
		return withCode(exitUsage, err)
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	return serve(ctx, env, cfg, rs, hooks{})
}

// hooks let the dev stack add a page and learn the addresses, and tests
// reach the running app.
type hooks struct {
	mount func(api *httpapi.Server)
	ready func(l listeners, a *app)
	// dev marks the dev stack: the console's cookie is not Secure there
	// (plain-HTTP localhost).
	dev bool
}

// listeners are the addresses serve listens on; "" for one it does not run.
type listeners struct {
	api, admin string
}

// newLogger builds the process logger: JSON in production, text in dev.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the daemon's roles until ctx ends.
func serve(ctx context.Context, env *cliEnv, cfg *config.Config, rs roles, h hooks) error {
	log := newLogger(cfg.Log, env.stderr)
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := requireCurrentSchema(ctx, db); err != nil {
		return err
	}
	clk := clock.Real{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		steps.NewStatsCollector(db, clk))

	a, err := newApp(cfg, log, db, reg)
	if err != nil {
		return err
	}
	if err := seedStock(ctx, db, cfg.Products, log); err != nil {
		return err
	}

	// Readiness is the database and the schema only: a stalled reconciler
	// or an unreachable Stripe must not take the API out of rotation.
	api := httpapi.New(db, clk, log.With("component", "http"), httpapi.NewMetrics(reg))
	metrics := httpapi.MetricsHandler(reg)
	if rs["api"] {
		if err := mountAPI(ctx, cfg, log, a, api, metrics, h); err != nil {
			return err
		}
	}
	// The operator console, on the admin listener only.
	con, err := newConsole(ctx, cfg, log, a, h.dev)
	if err != nil {
		return err
	}
	public, admin, err := listenHTTP(cfg, rs)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	var addrs listeners
	if public != nil {
		addrs.api = public.Addr().String()
		g.Go(func() error { return httpapi.Serve(gctx, public, api.Handler(), cfg.HTTP.ShutdownTimeout) })
	}
	if admin != nil {
		addrs.admin = admin.Addr().String()
		if con != nil {
			log.Info("operator console on the admin listener", "url", "http://"+addrs.admin+"/console/")
		}
		handler := withConsole(api.AdminHandler(metrics), con)
		g.Go(func() error { return httpapi.Serve(gctx, admin, handler, cfg.HTTP.ShutdownTimeout) })
	}
	if rs["worker"] {
		g.Go(func() error { return a.engine.Run(gctx) })
		g.Go(func() error { return a.maintainer.Run(gctx) })
	}
	if rs["reconciler"] {
		g.Go(func() error { return a.rec.Run(gctx, schedules(cfg)) })
	}
	g.Go(func() error { return watchdog(gctx, db, log) })

	log.Info("paymentd serving", "addr", addrs.api, "admin_addr", addrs.admin, "roles", strings.Join(slices.Sorted(maps.Keys(rs)), ","),
		"version", versionString(), "workers", cfg.Steps.Workers)
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("notify systemd", "err", err)
	}
	if h.ready != nil {
		h.ready(addrs, a)
	}
	err = g.Wait()
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	log.Info("paymentd stopped")
	return err
}

// mountAPI mounts the API routes on the public server, and /metrics too
// when http.public_metrics asks for it.
func mountAPI(ctx context.Context, cfg *config.Config, log *slog.Logger, a *app, api *httpapi.Server,
	metrics http.Handler, h hooks) error {
	clk := clock.Real{}
	auth, err := httpapi.NewAuthenticator(ctx, httpapi.AuthOptions{Secret: []byte(cfg.Auth.JWTSecret),
		JWKSURL: cfg.Auth.JWKSURL, Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience, Clock: clk,
		Logger: log.With("component", "auth")})
	if err != nil {
		return err
	}
	api.MountAPI(httpapi.APIDeps{Config: cfg, Auth: auth, Stripe: a.stripe,
		Prices: catalog.NewResolver(a.stripe, clk, 0), Claimer: a.rec, Access: a.ful, Billing: a.stripe,
		Credits: a.credits, Orders: a.stripe})
	if cfg.HTTP.PublicMetrics {
		api.Handle("GET /metrics", metrics)
	}
	if h.mount != nil {
		h.mount(api)
	}
	return nil
}

// listenHTTP binds the public listener (api role) and the admin listener
// (http.admin_addr) before anything serves, so a bad address fails the
// start cleanly. A replica without the api role needs the admin listener
// for its health and metrics.
func listenHTTP(cfg *config.Config, rs roles) (public, admin net.Listener, err error) {
	if cfg.HTTP.AdminAddr == "" && !rs["api"] {
		return nil, nil, withCode(exitUsage, errors.New("http.admin_addr (PAYMENTD_ADMIN_ADDR) is required when the api role is off, for /healthz and /metrics"))
	}
	if rs["api"] {
		if public, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return nil, nil, fmt.Errorf("listen on %s (http.addr): %w", cfg.HTTP.Addr, err)
		}
	}
	if cfg.HTTP.AdminAddr != "" {
		if admin, err = net.Listen("tcp", cfg.HTTP.AdminAddr); err != nil {
			if public != nil {
				public.Close()
			}
			return nil, nil, fmt.Errorf("listen on %s (http.admin_addr): %w", cfg.HTTP.AdminAddr, err)
		}
	}
	return public, admin, nil
}

// watchdog pings systemd's watchdog (when the unit enables one) from the
// main loop, as long as the database answers; a wedged process stops
// pinging and systemd restarts it.
func watchdog(ctx context.Context, db *store.DB, log *slog.Logger) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return nil
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval/3)
		err := db.Pool.Ping(pctx)
		cancel()
		if err != nil {
			log.Warn("database unreachable; withholding the systemd watchdog ping", "err", err)
			continue
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}

func stepsConfig(cfg *config.Config) steps.Config {
	return steps.Config{
		Workers: cfg.Steps.Workers, Lease: cfg.Steps.Lease, Timeout: cfg.Steps.Timeout, PollInterval: cfg.Steps.PollInterval,
		BackoffBase: cfg.Steps.BackoffBase, BackoffMax: cfg.Steps.BackoffMax, MaxAttempts: cfg.Steps.MaxAttempts,
		ShutdownGrace: cfg.Steps.ShutdownGrace,
	}
}

// dbInfo describes a database URL without its password, for logs.
func dbInfo(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}
