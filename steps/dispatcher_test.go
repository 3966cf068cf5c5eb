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

// TestASuccessThatCannotBeStoredDoesNotStallTheBatch: a handler's result
// the database refuses (jsonb has no U+0000) fails every round trip it is
// part of. It is recorded on its own, as a retry or, with no attempt left,
// a failure, with the error; the other steps keep being completed and
// claimed, a chain of them one after another.
func TestASuccessThatCannotBeStoredDoesNotStallTheBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	eng := newEngine(t, db, clock.Real{}, steps.Config{Workers: 2, PollInterval: 20 * time.Millisecond,
		BackoffBase: time.Hour, BackoffMax: time.Hour})
	eng.Register("poison", func(ctx context.Context, job *steps.Job) (any, error) { return "nul\x00byte", nil })
	eng.Register("ok", func(ctx context.Context, job *steps.Job) (any, error) { return "fine", nil })
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	ids := purchases(t, db, 3)
	for i, p := range []steps.Pipeline{
		{PurchaseID: ids[0], Name: "p", Steps: []steps.Step{{Name: "poison"}}},
		{PurchaseID: ids[1], Name: "p", Steps: []steps.Step{{Name: "poison", MaxAttempts: 1}}},
		{PurchaseID: ids[2], Name: "p", Steps: steps.Chain(steps.Step{Name: "ok"}, steps.Step{Name: "ok2"},
			steps.Step{Name: "ok3"})},
	} {
		if i == 2 {
			eng.Register("ok2", func(ctx context.Context, job *steps.Job) (any, error) { return "fine", nil })
			eng.Register("ok3", func(ctx context.Context, job *steps.Job) (any, error) { return "fine", nil })
		}
		if _, err := eng.Schedule(ctx, db.Queries, p); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	defer func() { stop(); <-done }()

	waitUntil(t, "the chain to complete and both poisoned steps to be recorded", func() bool {
		return stepByName(t, db, ids[2], "p", "ok3").Status == store.StepDone &&
			stepByName(t, db, ids[0], "p", "poison").Status == store.StepPending &&
			stepByName(t, db, ids[1], "p", "poison").Status == store.StepFailed
	})
	retried := stepByName(t, db, ids[0], "p", "poison")
	if retried.Attempts != 1 || retried.LastError == nil || !strings.Contains(*retried.LastError, "complete step") ||
		retried.RunAt.Before(time.Now().Add(30*time.Minute)) {
		t.Errorf("poisoned step with attempts left: %s after %d attempts, next at %s (%v); want a retry in about an hour with the error",
			retried.Status, retried.Attempts, retried.RunAt, retried.LastError)
	}
	failed := stepByName(t, db, ids[1], "p", "poison")
	if failed.Attempts != 1 || failed.LastError == nil || !strings.Contains(*failed.LastError, "complete step") {
		t.Errorf("poisoned step on its last attempt: %s after %d attempts (%v); want failed with the error",
			failed.Status, failed.Attempts, failed.LastError)
	}
	for _, name := range []string{"ok", "ok2", "ok3"} {
		if s := stepByName(t, db, ids[2], "p", name); s.Status != store.StepDone || s.Attempts != 1 || string(s.Result) != `"fine"` {
			t.Errorf("%s: %s after %d attempts with %s; want done after 1 with its result", name, s.Status, s.Attempts, s.Result)
		}
	}
}
