package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/steps"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("serve", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	return serve(ctx, env, cfg, nil)
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

// serve runs the daemon until ctx ends. ready, when not nil, is called with
// the API's address once it listens.
func serve(ctx context.Context, env *cliEnv, cfg *config.Config, ready func(addr string)) error {
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
	engine := steps.New(db, clk, log.With("component", "steps"), stepsConfig(cfg), steps.NewMetrics(reg))

	api := httpapi.New(db, clk, log.With("component", "http"))
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	log.Info("paymentd serving", "addr", ln.Addr().String(), "version", versionString(),
		"workers", cfg.Steps.Workers)
	if ready != nil {
		ready(ln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpapi.Serve(gctx, ln, api.Handler(), cfg.HTTP.ShutdownTimeout) })
	g.Go(func() error { return engine.Run(gctx) })
	err = g.Wait()
	log.Info("paymentd stopped")
	return err
}

func stepsConfig(cfg *config.Config) steps.Config {
	return steps.Config{
		Workers: cfg.Steps.Workers, Lease: cfg.Steps.Lease, PollInterval: cfg.Steps.PollInterval,
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

