// Subscriptions: a product may be sold as a subscription (mode
// subscription) with one or more recurring prices, each a Stripe price
// found by its lookup key, an optional trial, and the same access providers
// as one-time products; the subscriptions section says how long access
// outlives a failed payment and when the dunning reminder goes out.
package config

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/currency"
)

// Product modes.
const (
	// ModePayment is a one-time product: a payment-mode Checkout Session
	// for its price (the product's key is the price's lookup key). It is
	// the default.
	ModePayment = "payment"
	// ModeSubscription is a product sold as a subscription: a
	// subscription-mode Checkout Session for one of its Prices.
	ModeSubscription = "subscription"
)

// Price is one recurring price of a subscription product.
type Price struct {
	// Key is the Stripe price's lookup key, unique across every product
	// and price.
	Key string `yaml:"key"`
	// Interval is month or year; IntervalCount (default 1) bills every
	// that many intervals.
	Interval      string `yaml:"interval"`
	IntervalCount int64  `yaml:"interval_count"`
	// Amount is per interval, in minor units of Currency.
	Amount   int64  `yaml:"amount"`
	Currency string `yaml:"currency"`
}

// Count is IntervalCount, defaulting to 1.
func (p Price) Count() int64 { return max(p.IntervalCount, 1) }

// Subscriptions configures what subscriptions set in motion.
type Subscriptions struct {
	// Grace is how long a past_due subscription keeps its access, counted
	// from the first failed payment of its unpaid invoice; 0 revokes at
	// once.
	Grace time.Duration `yaml:"grace"`
	// DunningReminder is how long after that first failed payment the
	// payment_reminder email goes out, if the invoice is still unpaid.
	DunningReminder time.Duration `yaml:"dunning_reminder"`
}

func defaultSubscriptions() Subscriptions {
	return Subscriptions{Grace: 7 * 24 * time.Hour, DunningReminder: 3 * 24 * time.Hour}
}

// IsSubscription reports whether the product is sold as a subscription.
func (p Product) IsSubscription() bool { return p.Mode == ModeSubscription }

// Price returns the product's price with lookup key key.
func (p Product) Price(key string) (Price, bool) {
	for _, pr := range p.Prices {
		if pr.Key == key {
			return pr, true
		}
	}
	return Price{}, false
}

// SubscriptionPrices maps the lookup key of every configured subscription
// price to its product and price.
func (c *Config) SubscriptionPrices() map[string]ProductPrice {
	out := map[string]ProductPrice{}
	for _, p := range c.Products {
		if !p.IsSubscription() {
			continue
		}
		for _, pr := range p.Prices {
			out[pr.Key] = ProductPrice{Product: p, Price: pr}
		}
	}
	return out
}

// ProductPrice is a subscription price with its product.
type ProductPrice struct {
	Product Product
	Price   Price
}

// maxTrialDays is Stripe's longest trial.
const maxTrialDays = 730

// validateProductMode checks what depends on a product's mode: a
// subscription product lists its prices (keys unique across the catalog:
// seen holds every product key and price key so far) and no amount of its
// own; a one-time product lists none.
func validateProductMode(key string, prod Product, seen map[string]bool, add func(key, format string, args ...any)) {
	switch prod.Mode {
	case "", ModePayment:
		if len(prod.Prices) > 0 {
			add(key+".prices", "only a product with mode subscription lists prices")
		}
		if prod.TrialDays != 0 {
			add(key+".trial_days", "only a product with mode subscription has a trial")
		}
		return
	case ModeSubscription:
	default:
		add(key+".mode", "must be payment or subscription, got %q", prod.Mode)
		return
	}
	if prod.Amount != 0 || prod.Currency != "" {
		add(key+".amount", "a subscription product has no amount or currency of its own: each of its prices has one")
	}
	if len(prod.Prices) == 0 {
		add(key+".prices", "a subscription product lists at least one price")
	}
	if prod.TrialDays < 0 || prod.TrialDays > maxTrialDays {
		add(key+".trial_days", "must be between 0 and %d days", maxTrialDays)
	}
	for j, pr := range prod.Prices {
		pk := fmt.Sprintf("%s.prices[%d]", key, j)
		if !productKeyRE.MatchString(pr.Key) {
			add(pk+".key", "must be a Stripe lookup key of lower-case letters, digits, _ and -, got %q", pr.Key)
		}
		if seen[pr.Key] {
			add(pk+".key", "duplicate key %q: a price's lookup key is unique across every product and price", pr.Key)
		}
		seen[pr.Key] = true
		switch pr.Interval {
		case "month":
			if pr.IntervalCount < 0 || pr.IntervalCount > 12 {
				add(pk+".interval_count", "must be between 1 and 12 months")
			}
		case "year":
			if pr.IntervalCount < 0 || pr.IntervalCount > 1 {
				add(pk+".interval_count", "a yearly price bills every year (interval_count 1)")
			}
		default:
			add(pk+".interval", "must be month or year, got %q", pr.Interval)
		}
		if pr.Amount <= 0 {
			add(pk+".amount", "must be a positive amount in minor units (2900 is $29.00)")
		}
		if _, err := currency.ParseISO(pr.Currency); err != nil || pr.Currency != strings.ToLower(pr.Currency) {
			add(pk+".currency", "must be a lower-case ISO 4217 code such as usd, got %q", pr.Currency)
		}
	}
}

// validateSubscriptions checks the subscriptions section.
func (c *Config) validateSubscriptions(add func(key, format string, args ...any)) {
	if c.Subscriptions.Grace < 0 {
		add("subscriptions.grace", "must not be negative (0 revokes access at the first failed payment)")
	}
	if c.Subscriptions.DunningReminder <= 0 {
		add("subscriptions.dunning_reminder", "must be a positive duration such as \"72h\"")
	}
}
