package main

import (
	"context"
	"fmt"

	"github.com/paymentd/paymentd/internal/devpg"
)

// runDev is `make run`: the daemon on config.yaml's dev defaults, against a
// throwaway PostgreSQL cluster under ./.data unless DATABASE_URL is set.
func runDev(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("dev", env)
	dataDir := fs.String("data", ".data", "`directory` for the throwaway cluster and the outbox")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	if cfg.Database.URL == "" {
		cluster, err := devpg.Open(*dataDir + "/pg")
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
	return serve(ctx, env, cfg, roles{"api": true, "worker": true, "reconciler": true}, func(addr string) {
		fmt.Fprintf(env.stdout, "paymentd is up on http://%s (Ctrl-C stops everything)\n", addr)
	})
}
