package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
)

func runMigrate(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("migrate", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	for _, m := range applied {
		fmt.Fprintf(env.stdout, "applied %04d_%s\n", m.Version, m.Name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.stdout, "database is up to date")
	}
	return nil
}

// openDB opens the configured database.
func openDB(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	if cfg.Database.URL == "" {
		return nil, withCode(exitUsage, errors.New("database.url is empty: set DATABASE_URL, or use `make run` for a throwaway local database"))
	}
	return store.Open(ctx, cfg.Database.URL, cfg.Database.MaxConns)
}

// requireCurrentSchema refuses to go on when migrations are pending.
func requireCurrentSchema(ctx context.Context, db *store.DB) error {
	pending, err := db.PendingMigrations(ctx)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return withCode(exitSchema, fmt.Errorf("the database is behind by %d migration(s) (next: %04d_%s); run `paymentd migrate` first",
			len(pending), pending[0].Version, pending[0].Name))
	}
	return nil
}
