// The price resolver: checkout asks for a product key's price on every
// request, so answers are cached for a while rather than costing a Stripe
// round trip each time.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/stripe/stripe-go/v76"
	"golang.org/x/sync/singleflight"
)

// ErrNoPrice is returned when no active Stripe price holds a product's
// lookup key: the catalog has not been synced (`paymentd catalog sync`).
var ErrNoPrice = errors.New("no active Stripe price holds this lookup key")

// PriceLister lists prices by lookup key; *stripeapi.API satisfies it.
type PriceLister interface {
	PricesByLookupKeys(ctx context.Context, keys []string) ([]*stripe.Price, error)
}

// DefaultTTL is how long the resolver trusts a cached price.
const DefaultTTL = 5 * time.Minute

// Resolver maps product keys to their current Stripe price, caching each
// answer for its TTL. A miss or an expired entry refreshes that key from
// Stripe; concurrent misses on one key share a single request. Failures
// are not cached. It is safe for concurrent use.
type Resolver struct {
	api   PriceLister
	clock clock.Clock
	ttl   time.Duration

	mu    sync.Mutex
	cache map[string]cachedPrice
	group singleflight.Group
}

type cachedPrice struct {
	id        string
	amount    int64
	currency  string
	fetchedAt time.Time
}

// NewResolver returns a resolver over api. ttl <= 0 means DefaultTTL.
func NewResolver(api PriceLister, clk clock.Clock, ttl time.Duration) *Resolver {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Resolver{api: api, clock: clk, ttl: ttl, cache: map[string]cachedPrice{}}
}

// PriceID returns the id, unit amount (minor units) and lower-case
// currency of the active price holding lookup key, or ErrNoPrice.
func (r *Resolver) PriceID(ctx context.Context, key string) (priceID string, unitAmount int64, currency string, err error) {
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && r.clock.Now().Sub(c.fetchedAt) < r.ttl {
		return c.id, c.amount, c.currency, nil
	}
	v, err, _ := r.group.Do(key, func() (any, error) { return r.fetch(ctx, key) })
	if err != nil {
		return "", 0, "", err
	}
	c = v.(cachedPrice)
	return c.id, c.amount, c.currency, nil
}

func (r *Resolver) fetch(ctx context.Context, key string) (cachedPrice, error) {
	prices, err := r.api.PricesByLookupKeys(ctx, []string{key})
	if err != nil {
		return cachedPrice{}, fmt.Errorf("resolve price %s: %w", key, err)
	}
	for _, p := range prices {
		if p.LookupKey == key && p.Active {
			c := cachedPrice{id: p.ID, amount: p.UnitAmount, currency: strings.ToLower(string(p.Currency)),
				fetchedAt: r.clock.Now()}
			r.mu.Lock()
			r.cache[key] = c
			r.mu.Unlock()
			return c, nil
		}
	}
	return cachedPrice{}, fmt.Errorf("resolve price %s: %w", key, ErrNoPrice)
}
