package steps_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// lostAfterCommit is the pool, except that its first round trip that claims
// steps reports an error after the server committed it, as when the
// connection drops (or the caller's deadline passes) before the results are
// read. It then sends how many steps are running on faulted, and holds the
// next round trip until gate is closed, so the test sees what the failure
// left.
type lostAfterCommit struct {
	*pgxpool.Pool
	faulted chan int
	gate    chan struct{}
	trips   atomic.Int32 // round trips that claim, so far
}

func (l *lostAfterCommit) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	claims := false
	for _, q := range b.QueuedQueries {
		claims = claims || strings.Contains(q.SQL, "nextval('steps_claim_seq')")
	}
	if !claims {
		return l.Pool.SendBatch(ctx, b)
	}
	switch l.trips.Add(1) {
	case 1:
		return lostResults{BatchResults: l.Pool.SendBatch(ctx, b), l: l}
	case 2:
		select {
		case <-l.gate:
		case <-ctx.Done():
		}
	}
	return l.Pool.SendBatch(ctx, b)
}

type lostResults struct {
	pgx.BatchResults
	l *lostAfterCommit
}

func (r lostResults) Close() error {
	if err := r.BatchResults.Close(); err != nil {
		return err
	}
	var running int
	if err := r.l.Pool.QueryRow(context.Background(), `SELECT count(*) FROM steps WHERE status = 'running'`).
		Scan(&running); err != nil {
		return err
	}
	r.l.faulted <- running
	return errors.New("read batch results: connection reset by peer")
}

// TestClaimsOfARoundTripLostAfterCommitAreHandedBackAtOnce: a round trip
// whose claims committed but whose answer never arrived leaves steps
// running under this engine with claims nothing holds. They are handed back
// at once, without spending an attempt, and run once each; not left to wait
// a whole lease, an attempt spent without running.
func TestClaimsOfARoundTripLostAfterCommitAreHandedBackAtOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	lost := &lostAfterCommit{Pool: db.Pool, faulted: make(chan int, 1), gate: make(chan struct{})}
	var openGate sync.Once
	faulty := &store.DB{Pool: db.Pool, Queries: store.New(lost)}
	eng := newEngine(t, faulty, clock.Real{}, steps.Config{Workers: 3, Lease: 5 * time.Minute, PollInterval: 20 * time.Millisecond})
	var mu sync.Mutex
	runs := map[int64]int{}
	eng.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		mu.Lock()
		runs[job.ID]++
		mu.Unlock()
		return nil, nil
	})
	ids := purchases(t, db, 3)
	for _, id := range ids {
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "p",
			Steps: []steps.Step{{Name: "grant"}}}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	defer func() { openGate.Do(func() { close(lost.gate) }); stop(); <-done }()

	var running int
	select {
	case running = <-lost.faulted:
	case <-time.After(30 * time.Second):
		t.Fatal("no round trip claimed steps")
	}
	if running == 0 {
		t.Fatal("the round trip that failed after commit claimed nothing; the test proves nothing")
	}
	all := func() []store.Step {
		var out []store.Step
		for _, id := range ids {
			out = append(out, stepByName(t, db, id, "p", "grant"))
		}
		return out
	}
	waitUntil(t, "the lost claims to be handed back, their attempt unspent", func() bool {
		for _, s := range all() {
			if s.Status != store.StepPending || s.Attempts != 0 {
				return false
			}
		}
		return true
	})
	openGate.Do(func() { close(lost.gate) })
	waitUntil(t, "every step to be done", func() bool {
		for _, s := range all() {
			if s.Status != store.StepDone {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	for _, s := range all() {
		if s.Attempts != 1 || runs[s.ID] != 1 {
			t.Errorf("step %d: done after %d attempts, run %d times; want 1 and 1", s.ID, s.Attempts, runs[s.ID])
		}
	}
}
