package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
)

const catalogUsage = "usage: paymentd catalog sync [--dry-run] [--json] [--config FILE]"

// runCatalog is `paymentd catalog sync`: make Stripe's products and prices
// match config.yaml's products, printing what changed (with --dry-run,
// what would change, without writing to Stripe).
func runCatalog(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "sync" {
		return withCode(exitUsage, errors.New(catalogUsage))
	}
	fs, path := flags("catalog sync", env)
	dryRun := fs.Bool("dry-run", false, "only read from Stripe and print what would change")
	asJSON := fs.Bool("json", false, "print the report as JSON for scripts")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return withCode(exitUsage, errors.New(catalogUsage))
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	sc := stripeclient.New(stripeclient.Options{SecretKey: cfg.Stripe.SecretKey, APIBase: cfg.Stripe.APIBase,
		RateLimit: cfg.Stripe.RateLimit, Logger: newLogger(cfg.Log, env.stderr)})
	report, err := catalog.Sync(ctx, stripeapi.New(sc), cfg.Products, *dryRun)
	if err != nil {
		return fmt.Errorf("catalog sync: %w", err)
	}
	if *asJSON {
		return writeJSONOut(env.stdout, report)
	}
	_, err = report.WriteTo(env.stdout)
	return err
}
