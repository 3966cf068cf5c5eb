// Subscription products: one Stripe product carrying a recurring price per
// configured price, each found by its own lookup key. A price whose
// amount, currency or billing interval changed is replaced as a one-time
// price is (the new price takes the lookup key, the old one is archived),
// so subscriptions already on the old price keep it until they change plan.
package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/stripe/stripe-go/v76"
)

// lookupKeys are the lookup keys Sync reads for products: a one-time
// product's key, or each of a subscription product's prices.
func lookupKeys(products []config.Product) []string {
	var keys []string
	for _, p := range products {
		if !p.IsSubscription() {
			keys = append(keys, p.Key)
			continue
		}
		for _, pr := range p.Prices {
			keys = append(keys, pr.Key)
		}
	}
	return keys
}

// syncSubscriptionProduct makes Stripe match one subscription product: a
// Result per price, keyed by the price's lookup key. The Stripe product is
// the one the product's existing prices are on; with none, it is created
// (with the same idempotency key a one-time product would get).
func syncSubscriptionProduct(ctx context.Context, api Gateway, p config.Product, current map[string]*stripe.Price,
	dryRun bool) ([]Result, error) {
	spec := productSpec(p)
	var prod *stripe.Product
	for _, pr := range p.Prices {
		if cur := current[pr.Key]; cur != nil && cur.Product != nil && cur.Product.ID != "" {
			prod = cur.Product
			break
		}
	}
	var productChanges []string
	switch {
	case prod == nil && dryRun:
	case prod == nil:
		created, err := api.CreateProduct(ctx, spec, idempotencyKey("product", p.Key, p.Name, p.Description,
			strings.Join(p.Features, "\x1f")))
		if err != nil {
			return nil, fmt.Errorf("create product: %w", err)
		}
		prod = created
	default:
		if productChanges = productDiff(spec, prod); len(productChanges) > 0 && !dryRun {
			if _, err := api.UpdateProduct(ctx, prod.ID, spec); err != nil {
				return nil, fmt.Errorf("update product %s: %w", prod.ID, err)
			}
		}
	}
	results := make([]Result, 0, len(p.Prices))
	for i, pr := range p.Prices {
		res, err := syncRecurringPrice(ctx, api, p, pr, prod, current[pr.Key], dryRun)
		if err != nil {
			return results, fmt.Errorf("price %s: %w", pr.Key, err)
		}
		if i == 0 && len(productChanges) > 0 {
			res.Changes = append(productChanges, res.Changes...)
			if res.Action == Unchanged {
				res.Action = Updated
			}
		}
		results = append(results, res)
	}
	return results, nil
}

// syncRecurringPrice creates the price when no price holds its lookup key,
// replaces it when its terms changed, and leaves it alone otherwise. prod
// is nil only in a dry run that would create the product.
func syncRecurringPrice(ctx context.Context, api Gateway, p config.Product, pr config.Price, prod *stripe.Product,
	cur *stripe.Price, dryRun bool) (Result, error) {
	res := Result{Key: pr.Key, Action: Unchanged}
	if prod != nil {
		res.ProductID = prod.ID
	}
	terms := fmt.Sprintf("%s every %s", money(pr.Amount, pr.Currency), intervalLabel(pr.Interval, pr.Count()))
	if cur == nil {
		res.Action = Created
		res.Changes = []string{fmt.Sprintf("new recurring price of %q at %s", p.Name, terms)}
		if dryRun {
			return res, nil
		}
		spec := recurringSpec(p, pr, prod.ID, false)
		created, err := api.CreateRecurringPrice(ctx, spec, idempotencyKey("price", pr.Key, prod.ID, fmt.Sprint(pr.Amount),
			pr.Currency, pr.Interval, fmt.Sprint(pr.Count()), spec.Nickname))
		if err != nil {
			return res, fmt.Errorf("create recurring price: %w", err)
		}
		res.PriceID = created.ID
		return res, nil
	}
	res.PriceID = cur.ID
	if sameRecurring(cur, pr) {
		return res, nil
	}
	res.Action, res.OldPriceID = Replaced, cur.ID
	res.Changes = []string{fmt.Sprintf("price %s -> %s", describePrice(cur), terms)}
	if dryRun {
		res.PriceID = ""
		return res, nil
	}
	spec := recurringSpec(p, pr, prod.ID, true)
	created, err := api.CreateRecurringPrice(ctx, spec, idempotencyKey("price", pr.Key, prod.ID, fmt.Sprint(pr.Amount),
		pr.Currency, pr.Interval, fmt.Sprint(pr.Count()), spec.Nickname, "replaces", cur.ID))
	if err != nil {
		return res, fmt.Errorf("create replacement price: %w", err)
	}
	res.PriceID = created.ID
	if _, err := api.DeactivatePrice(ctx, cur.ID); err != nil {
		return res, fmt.Errorf("deactivate replaced price %s: %w", cur.ID, err)
	}
	return res, nil
}

// sameRecurring reports whether a Stripe price bills what pr says.
func sameRecurring(cur *stripe.Price, pr config.Price) bool {
	r := cur.Recurring
	return r != nil && cur.UnitAmount == pr.Amount && strings.EqualFold(string(cur.Currency), pr.Currency) &&
		string(r.Interval) == pr.Interval && max(r.IntervalCount, 1) == pr.Count()
}

// describePrice says in words what a Stripe price bills.
func describePrice(p *stripe.Price) string {
	if p.Recurring == nil {
		return money(p.UnitAmount, string(p.Currency)) + " once"
	}
	return money(p.UnitAmount, string(p.Currency)) + " every " + intervalLabel(string(p.Recurring.Interval), max(p.Recurring.IntervalCount, 1))
}

func recurringSpec(p config.Product, pr config.Price, productID string, transfer bool) stripeapi.RecurringPriceSpec {
	return stripeapi.RecurringPriceSpec{
		PriceSpec: stripeapi.PriceSpec{ProductID: productID, LookupKey: pr.Key, Currency: pr.Currency, Amount: pr.Amount,
			Nickname: p.Name + " (" + intervalLabel(pr.Interval, pr.Count()) + ")", TransferLookupKey: transfer},
		Interval: pr.Interval, IntervalCount: pr.Count(),
	}
}

// intervalLabel is "month", "3 months", "year".
func intervalLabel(interval string, count int64) string {
	if count <= 1 {
		return interval
	}
	return fmt.Sprintf("%d %ss", count, interval)
}
