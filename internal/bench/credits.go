package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/paymentd/paymentd/store"
)

// Credit consumption: creditsWorkers consumers spend 1 credit at a time
// from one balance, creditsConsumes in all per run.
const (
	creditsWorkers  = 32
	creditsConsumes = 6000
	creditsTrials   = 3
)

// benchCredits measures consumes/s through store.ConsumeCredits (the
// transaction the consume endpoint runs: the conditional balance UPDATE,
// the key and its answer, the entry, the lot allocation) by 32
// concurrent consumers on one balance, against the bare SQL: one
// conditional UPDATE of one row (balance >= 1) per consume, autocommitted,
// with as many workers. Both serialize on the one row: the ratio is what
// the ledger costs per consume.
func benchCredits(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE credits_baseline (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))`); err != nil {
		return nil, err
	}
	var ledger, base []float64
	for trial := range creditsTrials {
		rate, err := consumeLoop(ctx, db, trial)
		if err != nil {
			return nil, fmt.Errorf("store consume: %w", err)
		}
		ledger = append(ledger, rate)
		if rate, err = bareConsumeLoop(ctx, db); err != nil {
			return nil, fmt.Errorf("bare consume: %w", err)
		}
		base = append(base, rate)
	}
	value, baseline := median(ledger), median(base)
	return []Result{{
		Name: "credits_consume_per_second", Value: value, Unit: "consumes/s", Baseline: baseline,
		Ratio: value / baseline, HigherIsBetter: true,
		Note: fmt.Sprintf("%d consumes of 1 by %d concurrent consumers on one balance through store.ConsumeCredits, "+
			"median of %d runs; baseline: a conditional UPDATE of one row per consume, %d workers",
			creditsConsumes, creditsWorkers, creditsTrials, creditsWorkers),
	}}, nil
}

// consumeLoop grants a fresh account enough credits, then times
// creditsConsumes consumptions through the store.
func consumeLoop(ctx context.Context, db *store.DB, trial int) (float64, error) {
	holder := store.CreditHolder{UserID: fmt.Sprintf("bench-%d", trial)}
	err := db.InTx(ctx, func(q *store.Queries) error {
		a, err := q.LockCreditAccount(ctx, holder, time.Now())
		if err != nil {
			return err
		}
		_, _, err = q.ApplyCreditChange(ctx, store.CreditChange{AccountID: a.ID, Kind: store.CreditGrant,
			CauseKind: store.CausePurchase, CauseID: holder.UserID,
			Lot: &store.NewLot{Source: store.LotPack, SourceID: holder.UserID, Amount: creditsConsumes}}, time.Now())
		return err
	})
	if err != nil {
		return 0, err
	}
	return timeWorkers(func(w, i int) error {
		res, err := db.ConsumeCredits(ctx, store.Consume{Holder: holder, Amount: 1,
			Key: fmt.Sprintf("%s-%d-%d", holder.UserID, w, i)}, time.Now())
		if err == nil && res.Outcome != store.ConsumeConsumed {
			err = fmt.Errorf("consume %d of worker %d: %s", i, w, res.Outcome)
		}
		return err
	})
}

// bareConsumeLoop times the same number of conditional UPDATEs of one row.
func bareConsumeLoop(ctx context.Context, db *store.DB) (float64, error) {
	if _, err := db.Pool.Exec(ctx, `INSERT INTO credits_baseline VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET balance = EXCLUDED.balance`, creditsConsumes); err != nil {
		return 0, err
	}
	return timeWorkers(func(w, i int) error {
		tag, err := db.Pool.Exec(ctx, `UPDATE credits_baseline SET balance = balance - 1 WHERE id = 1 AND balance >= 1`)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("bare consume %d of worker %d: balance short", i, w)
		}
		return err
	})
}

// timeWorkers runs fn creditsConsumes times split over creditsWorkers
// goroutines and returns calls per second.
func timeWorkers(fn func(worker, i int) error) (float64, error) {
	per := creditsConsumes / creditsWorkers
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, creditsWorkers)
	for w := range creditsWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := fn(w, i); err != nil {
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
	return float64(per*creditsWorkers) / elapsed.Seconds(), nil
}
