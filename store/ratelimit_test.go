package store_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

func TestDecideRate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	perMinute := store.Rate{N: 10, Per: time.Minute} // one every 6s, bursts of 10
	for _, c := range []struct {
		name      string
		tat       time.Time
		allowed   bool
		next      time.Time
		retryWait time.Duration
	}{
		{"never seen", time.Time{}, true, now.Add(6 * time.Second), 0},
		{"idle for long", now.Add(-time.Hour), true, now.Add(6 * time.Second), 0},
		{"tat now", now, true, now.Add(6 * time.Second), 0},
		{"ninth of a burst", now.Add(48 * time.Second), true, now.Add(54 * time.Second), 0},
		{"tenth of a burst", now.Add(54 * time.Second), true, now.Add(time.Minute), 0},
		{"eleventh of a burst", now.Add(time.Minute), false, now.Add(time.Minute), 6 * time.Second},
		{"far ahead", now.Add(90 * time.Second), false, now.Add(90 * time.Second), 36 * time.Second},
	} {
		next, d := store.DecideRate(c.tat, now, perMinute)
		if d.Allowed != c.allowed || !next.Equal(c.next) || d.RetryAfter != c.retryWait {
			t.Errorf("%s: allowed %v next %s retry %s; want %v %s %s", c.name, d.Allowed, next.Sub(now), d.RetryAfter,
				c.allowed, c.next.Sub(now), c.retryWait)
		}
	}
}

// Two replicas (two pools on one database) taking from one key at once get
// exactly the limit between them; the next token comes one interval later.
func TestTakeRateHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	a, b := pgtest.Open(t, url), pgtest.Open(t, url)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := store.Rate{N: 10, Per: time.Minute}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		db := []*store.DB{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := db.TakeRate(t.Context(), "checkout:user-1", r, now)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			} else if d.RetryAfter <= 0 || d.RetryAfter > 6*time.Second {
				t.Errorf("refused with Retry-After %s", d.RetryAfter)
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Fatalf("%d of 30 concurrent events allowed across two replicas; want 10", n)
	}
	if d, err := a.TakeRate(t.Context(), "checkout:user-2", r, now); err != nil || !d.Allowed {
		t.Errorf("another key = %+v, %v; want allowed", d, err)
	}
	if d, _ := b.TakeRate(t.Context(), "checkout:user-1", r, now.Add(5*time.Second)); d.Allowed {
		t.Error("allowed before the next interval")
	}
	if d, _ := b.TakeRate(t.Context(), "checkout:user-1", r, now.Add(6*time.Second)); !d.Allowed {
		t.Error("refused one interval later")
	}
}
