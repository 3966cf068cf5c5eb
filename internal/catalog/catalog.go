// Package catalog keeps Stripe's products and prices in line with the
// products config.yaml lists, and resolves a product key to the price a
// checkout should charge. A product's key is its price's lookup_key, so
// config.yaml never holds a Stripe id and a changed amount moves the key to
// a new price instead of editing one (Stripe prices are immutable).
package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/stripe/stripe-go/v76"
)

// Gateway is the part of Stripe that Sync needs; *stripeapi.API satisfies it.
type Gateway interface {
	PricesByLookupKeys(ctx context.Context, keys []string) ([]*stripe.Price, error)
	CreateProduct(ctx context.Context, p stripeapi.ProductSpec, idempotencyKey string) (*stripe.Product, error)
	UpdateProduct(ctx context.Context, id string, p stripeapi.ProductSpec) (*stripe.Product, error)
	CreatePrice(ctx context.Context, p stripeapi.PriceSpec, idempotencyKey string) (*stripe.Price, error)
	CreateRecurringPrice(ctx context.Context, p stripeapi.RecurringPriceSpec, idempotencyKey string) (*stripe.Price, error)
	DeactivatePrice(ctx context.Context, id string) (*stripe.Price, error)
}

// Action is what Sync did, or in a dry run would do, for one product.
type Action string

// The actions Sync reports.
const (
	// Created: no price held the lookup key; a product and a price were created.
	Created Action = "created"
	// Replaced: the price's amount or currency changed; a new price took the
	// lookup key and the old one was deactivated.
	Replaced Action = "replaced"
	// Updated: the price was right but the product's name, description,
	// features or key metadata were not, and were updated.
	Updated Action = "updated"
	// Unchanged: Stripe already matched config.yaml.
	Unchanged Action = "unchanged"
)

// Result is what happened to one product.
type Result struct {
	Key    string `json:"key"`
	Action Action `json:"action"`
	// ProductID and PriceID name the Stripe product and the price holding
	// the lookup key afterwards (empty when a dry run would create them).
	ProductID string `json:"product_id,omitempty"`
	PriceID   string `json:"price_id,omitempty"`
	// OldPriceID is the price a replacement took the lookup key from.
	OldPriceID string `json:"old_price_id,omitempty"`
	// Changes says in words what differed.
	Changes []string `json:"changes,omitempty"`
}

// Report is the outcome of one Sync, a Result per configured product in
// config order.
type Report struct {
	DryRun   bool     `json:"dry_run"`
	Products []Result `json:"products"`
}

// Changed reports whether the sync changed (or would change) anything.
func (r Report) Changed() bool {
	for _, p := range r.Products {
		if p.Action != Unchanged {
			return true
		}
	}
	return false
}

// WriteTo prints the report for people, one line per product plus its changes.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	if r.DryRun {
		b.WriteString("dry run: nothing was written to Stripe\n")
	}
	for _, p := range r.Products {
		verb := string(p.Action)
		if r.DryRun && p.Action != Unchanged {
			verb = "would be " + verb
		}
		fmt.Fprintf(&b, "%-24s %s", p.Key, verb)
		switch {
		case p.PriceID != "" && p.OldPriceID != "":
			fmt.Fprintf(&b, " (price %s, was %s)", p.PriceID, p.OldPriceID)
		case p.PriceID != "":
			fmt.Fprintf(&b, " (price %s)", p.PriceID)
		case p.OldPriceID != "":
			fmt.Fprintf(&b, " (replacing price %s)", p.OldPriceID)
		}
		b.WriteString("\n")
		for _, c := range p.Changes {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	if !r.Changed() {
		b.WriteString("Stripe matches the configuration; no changes\n")
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// lookupKeyBatch is how many lookup keys Stripe accepts in one price listing.
const lookupKeyBatch = 10

// Sync makes Stripe's catalog match products. For each product it looks up
// the active price holding the product's key as lookup key:
//
//   - none: it creates the product (metadata paymentd_product_key) and a
//     one-time price with the lookup key;
//   - same amount and currency: it leaves the price and updates the
//     product's name, description, features and metadata if they differ;
//   - otherwise: it creates a new price on the same product that takes the
//     lookup key over (transfer_lookup_key), then deactivates the old one.
//
// Every create carries an idempotency key derived from what it creates, so
// re-running after a crash within Stripe's 24-hour idempotency window
// reuses what the crashed run created instead of duplicating it. A dry run
// only reads. A second run reports every product unchanged.
//
// A subscription product gets a Result per price, keyed by the price's
// lookup key (see syncSubscriptionProduct).
//
// One gap is deliberate: if a run crashes between moving the lookup key
// and deactivating the old price, the next run sees the new price and
// reports unchanged, leaving the old price active. Checkout only ever
// resolves prices by lookup key, so the orphan is never charged.
func Sync(ctx context.Context, api Gateway, products []config.Product, dryRun bool) (Report, error) {
	report := Report{DryRun: dryRun}
	keys := lookupKeys(products)
	current := map[string]*stripe.Price{}
	for batch := range slices.Chunk(keys, lookupKeyBatch) {
		prices, err := api.PricesByLookupKeys(ctx, batch)
		if err != nil {
			return report, fmt.Errorf("list prices by lookup key: %w", err)
		}
		for _, pr := range prices {
			current[pr.LookupKey] = pr
		}
	}
	for _, p := range products {
		if p.IsSubscription() {
			results, err := syncSubscriptionProduct(ctx, api, p, current, dryRun)
			report.Products = append(report.Products, results...)
			if err != nil {
				return report, fmt.Errorf("sync product %s: %w", p.Key, err)
			}
			continue
		}
		res, err := syncProduct(ctx, api, p, current[p.Key], dryRun)
		if err != nil {
			return report, fmt.Errorf("sync product %s: %w", p.Key, err)
		}
		report.Products = append(report.Products, res)
	}
	return report, nil
}

func syncProduct(ctx context.Context, api Gateway, p config.Product, price *stripe.Price, dryRun bool) (Result, error) {
	spec := productSpec(p)
	res := Result{Key: p.Key}
	if price == nil {
		res.Action = Created
		res.Changes = []string{fmt.Sprintf("new product %q at %s", p.Name, money(p.Amount, p.Currency))}
		if dryRun {
			return res, nil
		}
		prod, err := api.CreateProduct(ctx, spec, idempotencyKey("product", p.Key, p.Name, p.Description,
			strings.Join(p.Features, "\x1f")))
		if err != nil {
			return res, fmt.Errorf("create product: %w", err)
		}
		ps := priceSpec(p, prod.ID, false)
		pr, err := api.CreatePrice(ctx, ps, idempotencyKey("price", p.Key, prod.ID, fmt.Sprint(p.Amount), p.Currency, ps.Nickname))
		if err != nil {
			return res, fmt.Errorf("create price: %w", err)
		}
		res.ProductID, res.PriceID = prod.ID, pr.ID
		return res, nil
	}
	if price.Product == nil || price.Product.ID == "" {
		return res, fmt.Errorf("price %s carries no product", price.ID)
	}
	prod := price.Product
	res.ProductID, res.PriceID = prod.ID, price.ID
	res.Action = Unchanged

	productChanges := productDiff(spec, prod)
	if len(productChanges) > 0 {
		res.Action = Updated
		res.Changes = append(res.Changes, productChanges...)
		if !dryRun {
			if _, err := api.UpdateProduct(ctx, prod.ID, spec); err != nil {
				return res, fmt.Errorf("update product %s: %w", prod.ID, err)
			}
		}
	}

	if price.UnitAmount != p.Amount || !strings.EqualFold(string(price.Currency), p.Currency) || price.Recurring != nil {
		res.Action = Replaced
		res.OldPriceID = price.ID
		res.Changes = append(res.Changes, fmt.Sprintf("price %s -> %s", money(price.UnitAmount, string(price.Currency)),
			money(p.Amount, p.Currency)))
		if dryRun {
			res.PriceID = ""
			return res, nil
		}
		ps := priceSpec(p, prod.ID, true)
		pr, err := api.CreatePrice(ctx, ps, idempotencyKey("price", p.Key, prod.ID, fmt.Sprint(p.Amount), p.Currency,
			ps.Nickname, "replaces", price.ID))
		if err != nil {
			return res, fmt.Errorf("create replacement price: %w", err)
		}
		res.PriceID = pr.ID
		if _, err := api.DeactivatePrice(ctx, price.ID); err != nil {
			return res, fmt.Errorf("deactivate replaced price %s: %w", price.ID, err)
		}
	}
	return res, nil
}

// productDiff names what differs between spec and the product in Stripe.
// An empty description or feature list in config.yaml means "leave as is":
// ProductSpec cannot clear them, and reporting a change Sync cannot make
// would make every run report it again.
func productDiff(spec stripeapi.ProductSpec, prod *stripe.Product) []string {
	var changes []string
	if prod.Name != spec.Name {
		changes = append(changes, fmt.Sprintf("name %q -> %q", prod.Name, spec.Name))
	}
	if spec.Description != "" && prod.Description != spec.Description {
		changes = append(changes, "description updated")
	}
	if len(spec.Features) > 0 {
		have := make([]string, 0, len(prod.Features))
		for _, f := range prod.Features {
			have = append(have, f.Name)
		}
		if !slices.Equal(have, spec.Features) {
			changes = append(changes, "features updated")
		}
	}
	if prod.Metadata["paymentd_product_key"] != spec.Key {
		changes = append(changes, "metadata paymentd_product_key set")
	}
	return changes
}

func productSpec(p config.Product) stripeapi.ProductSpec {
	return stripeapi.ProductSpec{Key: p.Key, Name: p.Name, Description: p.Description, Features: p.Features}
}

func priceSpec(p config.Product, productID string, transfer bool) stripeapi.PriceSpec {
	return stripeapi.PriceSpec{ProductID: productID, LookupKey: p.Key, Currency: p.Currency, Nickname: p.Name,
		Amount: p.Amount, TransferLookupKey: transfer}
}

// idempotencyKey derives a Stripe idempotency key from what a request
// creates, so the same request re-sent after a crash gets the same key.
func idempotencyKey(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "paymentd-catalog-" + kind + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}

func money(amount int64, currency string) string {
	return fmt.Sprintf("%d %s", amount, strings.ToLower(currency))
}
