package steps_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// counts reads a step counter from reg, summed by the label named by.
func counts(t *testing.T, reg *prometheus.Registry, metric, by string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == by {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling for an outcome with a deadline, not synchronising
	}
}

// TestStalledWorkerCannotCompleteOrRetryAStepAnotherWorkerReclaimed is the
// claim fence: two workers of one engine (one lease owner); the first
// stalls past its lease in a handler that ignores its context, the second
// claims the step again. Whatever the first then reports, success or an
// error to retry, is refused and counted as a lost lease; the step completes
// once, with the second worker's result.
func TestStalledWorkerCannotCompleteOrRetryAStepAnotherWorkerReclaimed(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	reg := prometheus.NewRegistry()
	eng := steps.New(db, clock.Real{}, testLogger(t), steps.Config{Workers: 2, Lease: 600 * time.Millisecond,
		Timeout: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond, BackoffBase: time.Minute}, steps.NewMetrics(reg))

	type run struct {
		attempt int
		release chan struct{}
	}
	started := make(chan run, 4)
	quit := make(chan struct{}) // frees every handler when the test ends, passed or not
	handler := func(ctx context.Context, job *steps.Job) (any, error) {
		r := run{attempt: job.Attempt, release: make(chan struct{})}
		started <- r
		select { // the stall: blind to ctx, as a handler stuck in a call without a deadline
		case <-r.release:
		case <-quit:
		}
		if job.Attempt == 1 && job.Name == "retry_after_stall" {
			return nil, errors.New("upstream timed out")
		}
		if job.Attempt == 1 {
			return "first", nil
		}
		return "second", nil
	}
	eng.Register("complete_after_stall", handler)
	eng.Register("retry_after_stall", handler)
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	defer func() { close(quit); stop(); <-done }()

	ids := purchases(t, db, 2)
	for i, tc := range []struct{ step string }{{"complete_after_stall"}, {"retry_after_stall"}} {
		before := counts(t, reg, "paymentd_steps_total", "outcome")
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: ids[i], Name: "p",
			Steps: []steps.Step{{Name: tc.step}}}); err != nil {
			t.Fatal(err)
		}
		first := <-started
		second := <-started // the first's lease lapsed by the database's clock; the other worker took the step
		if first.attempt != 1 || second.attempt != 2 {
			t.Fatalf("%s: attempts %d then %d", tc.step, first.attempt, second.attempt)
		}
		close(first.release)
		waitUntil(t, tc.step+": the first attempt's outcome", func() bool {
			return total(counts(t, reg, "paymentd_steps_total", "outcome")) > total(before)
		})
		got := counts(t, reg, "paymentd_steps_total", "outcome")
		if got["lost_lease"] != before["lost_lease"]+1 {
			t.Fatalf("%s: the stalled worker's outcome was recorded: outcomes %v (before %v)", tc.step, got, before)
		}
		if s := stepByName(t, db, ids[i], "p", tc.step); s.Status != store.StepRunning || s.Attempts != 2 {
			t.Fatalf("%s: after the stalled worker reported, step = %s attempt %d; want running attempt 2", tc.step, s.Status, s.Attempts)
		}
		close(second.release)
		waitUntil(t, tc.step+": the second attempt's outcome", func() bool {
			return counts(t, reg, "paymentd_steps_total", "outcome")["done"] == before["done"]+1
		})
		s := stepByName(t, db, ids[i], "p", tc.step)
		if s.Status != store.StepDone || s.Attempts != 2 || string(s.Result) != `"second"` {
			t.Errorf("%s: step = %s after %d attempts with %s; want done after 2 with the second's result", tc.step, s.Status, s.Attempts, s.Result)
		}
	}
	if r := counts(t, reg, "paymentd_step_retries_total", "step"); r["retry_after_stall"] != 0 {
		t.Errorf("a refused retry was counted as a retry: %v", r)
	}
	select {
	case r := <-started:
		t.Errorf("a step ran a third time (attempt %d)", r.attempt)
	default:
	}
}

func total(m map[string]float64) float64 {
	n := 0.0
	for _, v := range m {
		n += v
	}
	return n
}

// TestLongStepKeepsItsLease: a handler that runs well past its lease keeps
// it, renewed by the heartbeat from the database's clock under the same
// claim, and is not run a second time by the other worker.
func TestLongStepKeepsItsLease(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	const lease = time.Second
	eng := steps.New(db, clock.Real{}, testLogger(t), steps.Config{Workers: 2, Lease: lease, Timeout: time.Minute,
		PollInterval: 20 * time.Millisecond}, nil)
	started := make(chan int, 2)
	release := make(chan struct{})
	eng.Register("long", func(ctx context.Context, job *steps.Job) (any, error) {
		started <- job.Attempt
		select {
		case <-release:
			return "finished", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	id := purchases(t, db, 1)[0]
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "p", Steps: []steps.Step{{Name: "long"}}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	defer func() { stop(); <-done }()
	<-started

	// Watch the row by the database's clock until three leases have passed.
	var first time.Time
	var token int64
	for {
		var status string
		var expires, now time.Time
		var tok *int64
		if err := db.Pool.QueryRow(ctx, `SELECT status, lease_expires_at, claim_token, clock_timestamp() FROM steps
			WHERE purchase_id = $1`, id).Scan(&status, &expires, &tok, &now); err != nil {
			t.Fatal(err)
		}
		if first.IsZero() {
			first, token = now, *tok
		}
		if status != "running" || *tok != token || !expires.After(now) {
			t.Fatalf("%s into the run: status %s, token %d (claimed with %d), lease ends %s, now %s",
				now.Sub(first), status, *tok, token, expires, now)
		}
		if now.Sub(first) > 3*lease {
			break
		}
		time.Sleep(20 * time.Millisecond) // sampling the row over time, not synchronising
	}
	close(release)
	waitUntil(t, "the step to complete", func() bool {
		return stepByName(t, db, id, "p", "long").Status == store.StepDone
	})
	if s := stepByName(t, db, id, "p", "long"); s.Attempts != 1 || string(s.Result) != `"finished"` {
		t.Errorf("step done after %d attempts with %s; want 1, \"finished\"", s.Attempts, s.Result)
	}
	select {
	case a := <-started:
		t.Errorf("the step ran again (attempt %d) while its first run held the lease", a)
	default:
	}
}
