package catalog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/stripe/stripe-go/v76"
)

// priceBook is a PriceLister over a map, counting its calls.
type priceBook struct {
	mu     sync.Mutex
	prices map[string]*stripe.Price
	calls  int
	err    error
}

func (b *priceBook) PricesByLookupKeys(ctx context.Context, keys []string) ([]*stripe.Price, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.err != nil {
		return nil, b.err
	}
	var out []*stripe.Price
	for _, k := range keys {
		if p, ok := b.prices[k]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (b *priceBook) set(key string, p *stripe.Price, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p != nil {
		b.prices[key] = p
	}
	b.err = err
}

func (b *priceBook) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func TestResolverCachesForItsTTL(t *testing.T) {
	t.Parallel()
	book := &priceBook{prices: map[string]*stripe.Price{
		"pro": {ID: "price_1", LookupKey: "pro", Active: true, UnitAmount: 19900, Currency: "USD"},
	}}
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	r := catalog.NewResolver(book, clk, 5*time.Minute)
	ctx := context.Background()

	id, amount, cur, err := r.PriceID(ctx, "pro")
	if err != nil || id != "price_1" || amount != 19900 || cur != "usd" {
		t.Fatalf("PriceID = %s %d %s %v", id, amount, cur, err)
	}
	clk.Advance(4 * time.Minute)
	book.set("pro", &stripe.Price{ID: "price_2", LookupKey: "pro", Active: true, UnitAmount: 24900, Currency: "usd"}, nil)
	if id, _, _, _ := r.PriceID(ctx, "pro"); id != "price_1" || book.count() != 1 {
		t.Errorf("within the TTL: %s after %d calls; want the cached price_1 after 1", id, book.count())
	}
	clk.Advance(2 * time.Minute)
	if id, amount, _, _ := r.PriceID(ctx, "pro"); id != "price_2" || amount != 24900 || book.count() != 2 {
		t.Errorf("after the TTL: %s %d after %d calls; want price_2 24900 after 2", id, amount, book.count())
	}

	// A failed refresh is an error, not a stale answer, and is not cached.
	clk.Advance(10 * time.Minute)
	book.set("", nil, errors.New("stripe is down"))
	if _, _, _, err := r.PriceID(ctx, "pro"); err == nil {
		t.Error("a failed refresh returned no error")
	}
	book.set("", nil, nil)
	if id, _, _, err := r.PriceID(ctx, "pro"); err != nil || id != "price_2" {
		t.Errorf("after Stripe recovered: %s %v", id, err)
	}
}

func TestResolverMissRefreshes(t *testing.T) {
	t.Parallel()
	book := &priceBook{prices: map[string]*stripe.Price{}}
	r := catalog.NewResolver(book, clock.NewFake(time.Now()), 0)
	ctx := context.Background()
	for range 2 {
		if _, _, _, err := r.PriceID(ctx, "team"); !errors.Is(err, catalog.ErrNoPrice) {
			t.Fatalf("unsynced key: %v; want ErrNoPrice", err)
		}
	}
	if book.count() != 2 {
		t.Errorf("two misses made %d calls; a miss must not be cached", book.count())
	}
	book.set("team", &stripe.Price{ID: "price_t", LookupKey: "team", Active: true, UnitAmount: 100, Currency: "eur"}, nil)
	if id, _, _, err := r.PriceID(ctx, "team"); err != nil || id != "price_t" {
		t.Errorf("after sync: %s %v", id, err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if id, _, _, err := r.PriceID(ctx, "team"); err != nil || id != "price_t" {
				t.Errorf("concurrent PriceID = %s %v", id, err)
			}
		}()
	}
	wg.Wait()
	if book.count() != 3 {
		t.Errorf("cached lookups made calls: %d in all, want 3", book.count())
	}
}
