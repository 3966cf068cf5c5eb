package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// stepRuns are the engine's no-op throughput rows: one per worker count,
// each beside a baseline of the same worker count.
var stepRuns = []struct {
	name        string
	workers     int
	steps       int
	target      float64 // steps/s; 0 for none
	targetRatio float64
}{
	{"steps_noop_throughput_1_worker", 1, 5000, 0, 0},
	{"steps_noop_throughput", 8, 10000, 2000, 1.0},
	{"steps_noop_throughput_32_workers", 32, 10000, 0, 0},
}

// stepTrials is how many times each pair of runs is repeated. The engine
// and its baseline alternate, and each reports its median, so a burst of
// load from elsewhere on a shared machine falls on both or on neither.
const stepTrials = 3

// benchSteps measures no-op steps per second through the engine's claim,
// run and complete, against a plain SQL loop of SKIP LOCKED claim plus
// update on an identical table, both with the same number of workers.
func benchSteps(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE steps_baseline (LIKE steps INCLUDING ALL)`); err != nil {
		return nil, err
	}

	var out []Result
	for _, r := range stepRuns {
		var engine, base []float64
		for range stepTrials {
			rate, err := engineLoop(ctx, db, env, r.workers, r.steps)
			if err != nil {
				return nil, fmt.Errorf("engine, %d workers: %w", r.workers, err)
			}
			engine = append(engine, rate)
			if rate, err = baselineLoop(ctx, db, r.workers, r.steps); err != nil {
				return nil, fmt.Errorf("baseline, %d workers: %w", r.workers, err)
			}
			base = append(base, rate)
		}
		engineRate, baseline := median(engine), median(base)
		out = append(out, Result{
			Name: r.name, Value: engineRate, Unit: "steps/s", Baseline: baseline,
			Ratio: engineRate / baseline, HigherIsBetter: true, Target: r.target, TargetRatio: r.targetRatio,
			Note: fmt.Sprintf("%d steps, %d workers, median of %d runs; baseline: SKIP LOCKED claim + update loop, %d workers",
				r.steps, r.workers, stepTrials, r.workers),
		})
	}
	return out, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// seedSteps empties table and fills it with n due no-op steps.
func seedSteps(ctx context.Context, db *store.DB, table string, n int) error {
	_, err := db.Pool.Exec(ctx, `TRUNCATE `+table)
	if err == nil {
		_, err = db.Pool.Exec(ctx, `INSERT INTO `+table+` (subject_kind, pipeline, name, status, run_at, max_attempts, created_at, updated_at)
			SELECT 'global', 'bench-' || g, 'noop', 'pending', now() - interval '1 second', 5, now(), now()
			FROM generate_series(1, $1) AS g`, n)
	}
	if err == nil {
		_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE `+table)
	}
	return err
}

// baselineLoop is the plain loop: each worker claims one step with SKIP
// LOCKED and marks it done, one statement each, until none is due.
func baselineLoop(ctx context.Context, db *store.DB, workers, n int) (float64, error) {
	if err := seedSteps(ctx, db, "steps_baseline", n); err != nil {
		return 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("baseline-%d", w)
			for {
				var ids []int64
				rows, err := db.Pool.Query(ctx, `UPDATE steps_baseline SET status = 'running', attempts = attempts + 1,
						lease_owner = $1, lease_expires_at = now() + interval '5 minutes',
						claim_token = nextval('steps_claim_seq'), updated_at = now()
					WHERE id = (SELECT id FROM steps_baseline WHERE status = 'pending' AND run_at <= now()
						ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
					RETURNING id`, owner)
				for err == nil && rows.Next() {
					var id int64
					err = rows.Scan(&id)
					ids = append(ids, id)
				}
				if err == nil {
					rows.Close()
					err = rows.Err()
				}
				if err != nil {
					errs <- err
					return
				}
				if len(ids) == 0 {
					return
				}
				id := ids[0]
				if _, err := db.Pool.Exec(ctx, `UPDATE steps_baseline SET status = 'done', lease_owner = NULL,
						lease_expires_at = NULL, claim_token = NULL, updated_at = now(), finished_at = now()
					WHERE id = $1 AND lease_owner = $2`, id, owner); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

// engineLoop runs n no-op steps through the engine with workers workers,
// from Run until the last completion is committed.
func engineLoop(ctx context.Context, db *store.DB, env *benchEnv, workers, n int) (float64, error) {
	if err := seedSteps(ctx, db, "steps", n); err != nil {
		return 0, err
	}
	eng := steps.New(db, clock.Real{}, env.log, steps.Config{Workers: workers, PollInterval: 5 * time.Millisecond}, nil)
	var handled atomic.Int64
	finished := make(chan struct{})
	eng.Register("noop", func(context.Context, *steps.Job) (any, error) {
		if handled.Add(1) == int64(n) {
			close(finished)
		}
		return nil, nil
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- eng.Run(runCtx) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		stop()
		return 0, fmt.Errorf("only %d of %d steps ran in 5 minutes", handled.Load(), n)
	}
	// The last handlers have returned; wait for their completions to commit.
	for {
		var left int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE status <> 'done'`).Scan(&left); err != nil {
			stop()
			return 0, err
		}
		if left == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	stop()
	<-done
	return float64(n) / elapsed.Seconds(), nil
}
