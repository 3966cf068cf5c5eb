// paymentd stock: the operator's view of limited products. `stock set KEY
// N` sets the units on hand (checkouts already holding units keep them);
// `stock list` shows on hand, held by open checkouts, available and
// oversold. seedStock applies config.yaml's initial stock once, when
// paymentd starts: from then on the database is the truth.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
)

const stockUsage = "usage: paymentd stock set <product key> <units> | paymentd stock list [--json]"

func runStock(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return withCode(exitUsage, errors.New(stockUsage))
	}
	fs, path := flags("stock "+args[0], env)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case args[0] == "set" && fs.NArg() == 2:
	case args[0] == "list" && fs.NArg() == 0:
	default:
		return withCode(exitUsage, errors.New(stockUsage))
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	db, err := opsDB(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	if args[0] == "set" {
		key := fs.Arg(0)
		prod, ok := cfg.Product(key)
		if !ok {
			return withCode(exitUsage, fmt.Errorf("there is no product %q in the configuration", key))
		}
		if prod.IsSubscription() {
			return withCode(exitUsage, fmt.Errorf("%s is a subscription: stock is for one-time products, sold through the cart", key))
		}
		n, err := strconv.Atoi(fs.Arg(1))
		if err != nil || n < 0 {
			return withCode(exitUsage, fmt.Errorf("units must be a whole number of at least 0, got %q", fs.Arg(1)))
		}
		s, err := db.SetStock(ctx, key, n, clock.Real{}.Now())
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSONOut(env.stdout, stockView(s))
		}
		fmt.Fprintf(env.stdout, "%s: %d on hand, %d held by open checkouts, %d available\n", s.ProductKey, s.OnHand,
			s.Reserved, s.Available())
		return nil
	}
	levels, err := db.StockLevels(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]stockJSON, len(levels))
		for i, s := range levels {
			out[i] = stockView(s)
		}
		return writeJSONOut(env.stdout, out)
	}
	printStock(env.stdout, levels)
	return nil
}

// stockJSON is one product's stock as `stock list --json` prints it.
type stockJSON struct {
	store.Stock
	Available int `json:"available"`
}

func stockView(s store.Stock) stockJSON { return stockJSON{Stock: s, Available: s.Available()} }

func printStock(w io.Writer, levels []store.Stock) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PRODUCT\tON HAND\tHELD\tAVAILABLE\tOVERSOLD\tUPDATED")
	for _, s := range levels {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", s.ProductKey, s.OnHand, s.Reserved, s.Available(), s.Oversold, stamp(&s.UpdatedAt))
	}
	tw.Flush()
}

// seedStock gives each configured product with a stock its row, once.
func seedStock(ctx context.Context, db *store.DB, products []config.Product, log *slog.Logger) error {
	for _, p := range products {
		if p.Stock == nil {
			continue
		}
		created, err := db.SeedStock(ctx, p.Key, *p.Stock, clock.Real{}.Now())
		if err != nil {
			return err
		}
		if created {
			log.Info("stock seeded from the configuration", "product", p.Key, "on_hand", *p.Stock)
		}
	}
	return nil
}
