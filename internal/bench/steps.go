package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

const (
	benchStepCount   = 20000
	benchStepWorkers = 8
)

// benchSteps measures no-op steps per second through the engine's claim,
// run and complete, against a plain SQL loop of SKIP LOCKED claim plus
// update on an identical table, both with the same number of workers.
func benchSteps(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()

	engineRate, err := engineLoop(ctx, db, env)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	baseline, err := baselineLoop(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return []Result{{
		Name: "steps_noop_throughput", Value: engineRate, Unit: "steps/s", Baseline: baseline,
		Ratio: engineRate / baseline, HigherIsBetter: true, Target: 2000, TargetRatio: 0.7,
		Note: fmt.Sprintf("%d steps, %d workers; baseline: SKIP LOCKED claim + update loop", benchStepCount, benchStepWorkers),
	}}, nil
}

func seedSteps(ctx context.Context, db *store.DB, table string) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO `+table+` (pipeline, name, status, run_at, max_attempts, created_at, updated_at)
		SELECT 'bench-' || g, 'noop', 'pending', now() - interval '1 second', 5, now(), now()
		FROM generate_series(1, $1) AS g`, benchStepCount)
	if err == nil {
		_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE `+table)
	}
	return err
}

func baselineLoop(ctx context.Context, db *store.DB) (float64, error) {
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE steps_baseline (LIKE steps INCLUDING ALL)`); err != nil {
		return 0, err
	}
	if err := seedSteps(ctx, db, "steps_baseline"); err != nil {
		return 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, benchStepWorkers)
	for w := range benchStepWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("baseline-%d", w)
			for {
				var ids []int64
				rows, err := db.Pool.Query(ctx, `UPDATE steps_baseline SET status = 'running', attempts = attempts + 1,
						lease_owner = $1, lease_expires_at = now() + interval '5 minutes', updated_at = now()
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
						lease_expires_at = NULL, updated_at = now(), finished_at = now()
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
	return float64(benchStepCount) / elapsed.Seconds(), nil
}

func engineLoop(ctx context.Context, db *store.DB, env *benchEnv) (float64, error) {
	if err := seedSteps(ctx, db, "steps"); err != nil {
		return 0, err
	}
	eng := steps.New(db, clock.Real{}, env.log, steps.Config{Workers: benchStepWorkers, PollInterval: 5 * time.Millisecond}, nil)
	var handled atomic.Int64
	finished := make(chan struct{})
	eng.Register("noop", func(context.Context, *steps.Job) (any, error) {
		if handled.Add(1) == benchStepCount {
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
		return 0, fmt.Errorf("only %d of %d steps ran in 5 minutes", handled.Load(), benchStepCount)
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
	return float64(benchStepCount) / elapsed.Seconds(), nil
}
