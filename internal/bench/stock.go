package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

// Stock benchmark sizes.
const (
	stockBuyers      = 32  // concurrent buyers on one hot product
	stockRounds      = 150 // reserve + release per buyer
	stockTrials      = 3
	stockLastUnits   = 100 // units left when the oversell race starts
	stockRaceAttempt = 8   // tries per buyer in the oversell race
)

// benchStock measures checkout reservations on one hot product:
// checkout_reservations_per_second is reserve + release pairs a second
// through store.ReserveStock and store.ReleaseStock (each in its own
// transaction, as a checkout and its expiry are), 32 buyers at once,
// beside the bare conditional UPDATEs in the same shape; checkout_oversells
// is the units sold beyond the stock when 32 buyers race for the last 100
// (must be 0), beside a read-then-write baseline that does oversell.
func benchStock(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	now := time.Now()
	if _, err := db.SetStock(ctx, "hot", 1_000_000, now); err != nil {
		return nil, err
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE stock_baseline (LIKE product_stock INCLUDING ALL)`); err != nil {
		return nil, err
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO stock_baseline (product_key, on_hand, updated_at) VALUES ('hot', 1000000, now())`); err != nil {
		return nil, err
	}
	orders, err := benchOrders(ctx, db, stockBuyers*stockRounds)
	if err != nil {
		return nil, err
	}
	var ours, base []float64
	for range stockTrials {
		rate, err := reserveLoop(ctx, db, orders)
		if err != nil {
			return nil, fmt.Errorf("reserve and release: %w", err)
		}
		ours = append(ours, rate)
		if rate, err = bareReserveLoop(ctx, db); err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		base = append(base, rate)
	}
	rate, baseline := median(ours), median(base)
	out := []Result{{Name: "checkout_reservations_per_second", Value: rate, Unit: "pairs/s", Baseline: baseline,
		Ratio: rate / baseline, HigherIsBetter: true,
		Note: fmt.Sprintf("reserve + release of 1 unit, %d buyers on one product, %d pairs each, median of %d; "+
			"baseline: the bare conditional UPDATEs, one transaction each", stockBuyers, stockRounds, stockTrials)}}

	oversold, err := oversellRace(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("oversell race: %w", err)
	}
	naive, err := naiveRace(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("naive race: %w", err)
	}
	ratio := 0.0
	if naive > 0 {
		ratio = float64(oversold) / float64(naive)
	}
	out = append(out, Result{Name: "checkout_oversells", Value: float64(oversold), Unit: "units", Baseline: float64(naive),
		Ratio: ratio, Target: 0, Note: fmt.Sprintf("%d buyers race for the last %d units, %d tries each; must be 0 "+
			"(baseline: read the level, then write it, as seed 002 does)", stockBuyers, stockLastUnits, stockRaceAttempt)})
	return out, nil
}

// benchOrders records n pending orders for the reservations to belong to.
func benchOrders(ctx context.Context, db *store.DB, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err := db.Pool.Exec(ctx, `INSERT INTO orders (id, user_id, ui_mode, status, currency, amount_subtotal, amount_total,
			expires_at, created_at, updated_at)
		SELECT id, 'bench', 'embedded', 'pending', 'usd', 100, 100, now() + interval '1 hour', now(), now()
		FROM unnest($1::uuid[]) AS id`, ids)
	return ids, err
}

// parallel runs fn for each buyer at once and returns the first error.
func parallel(buyers int, fn func(buyer int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, buyers)
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(b); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// reserveLoop is paymentd's path: each pair reserves in one transaction
// and releases in another. The reservations are cleared afterwards so the
// next trial starts alike.
func reserveLoop(ctx context.Context, db *store.DB, orders []string) (float64, error) {
	if _, err := db.Pool.Exec(ctx, `DELETE FROM stock_reservations`); err != nil {
		return 0, err
	}
	start := time.Now()
	err := parallel(stockBuyers, func(b int) error {
		for i := range stockRounds {
			id := orders[b*stockRounds+i]
			now := time.Now()
			if err := db.InTx(ctx, func(q *store.Queries) error {
				return q.ReserveStock(ctx, id, []store.StockLine{{ProductKey: "hot", Quantity: 1}}, now)
			}); err != nil {
				return err
			}
			if err := db.InTx(ctx, func(q *store.Queries) error {
				_, err := q.ReleaseStock(ctx, id, now)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return float64(stockBuyers*stockRounds) / time.Since(start).Seconds(), err
}

// bareReserveLoop is the baseline: the conditional UPDATE and its inverse,
// one autocommitted statement each.
func bareReserveLoop(ctx context.Context, db *store.DB) (float64, error) {
	start := time.Now()
	err := parallel(stockBuyers, func(int) error {
		for range stockRounds {
			tag, err := db.Pool.Exec(ctx, `UPDATE stock_baseline SET reserved = reserved + 1, updated_at = now()
				WHERE product_key = 'hot' AND on_hand - reserved >= 1`)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return errors.New("baseline ran out of stock")
			}
			if _, err := db.Pool.Exec(ctx, `UPDATE stock_baseline SET reserved = reserved - 1, updated_at = now()
				WHERE product_key = 'hot'`); err != nil {
				return err
			}
		}
		return nil
	})
	return float64(stockBuyers*stockRounds) / time.Since(start).Seconds(), err
}

// oversellRace has the buyers race through ReserveStock for the last
// units, then commits every reservation: what was sold beyond the stock.
func oversellRace(ctx context.Context, db *store.DB) (int, error) {
	now := time.Now()
	if _, err := db.SetStock(ctx, "last", stockLastUnits, now); err != nil {
		return 0, err
	}
	orders, err := benchOrders(ctx, db, stockBuyers*stockRaceAttempt)
	if err != nil {
		return 0, err
	}
	var won atomic.Int64
	err = parallel(stockBuyers, func(b int) error {
		for i := range stockRaceAttempt {
			id := orders[b*stockRaceAttempt+i]
			err := db.InTx(ctx, func(q *store.Queries) error {
				return q.ReserveStock(ctx, id, []store.StockLine{{ProductKey: "last", Quantity: 1}}, now)
			})
			var oos *store.OutOfStockError
			switch {
			case errors.As(err, &oos):
				continue
			case err != nil:
				return err
			}
			won.Add(1)
			if err := db.InTx(ctx, func(q *store.Queries) error {
				_, err := q.CommitStock(ctx, id, now)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s, err := db.GetStock(ctx, "last")
	if err != nil {
		return 0, err
	}
	oversold := max(int(won.Load())-stockLastUnits, 0) + s.Oversold
	if s.OnHand != stockLastUnits-int(won.Load())+oversold {
		return 0, fmt.Errorf("stock left %d after %d sold of %d", s.OnHand, won.Load(), stockLastUnits)
	}
	return oversold, nil
}

// naiveRace is the seed's way: read what is available, then decrement
// without a guard. It counts the units sold beyond the stock.
func naiveRace(ctx context.Context, db *store.DB) (int, error) {
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE naive_stock (product_key text PRIMARY KEY, on_hand integer NOT NULL)`); err != nil {
		return 0, err
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO naive_stock VALUES ('last', $1)`, stockLastUnits); err != nil {
		return 0, err
	}
	var sold atomic.Int64
	err := parallel(stockBuyers, func(int) error {
		for range stockRaceAttempt {
			var left int
			if err := db.Pool.QueryRow(ctx, `SELECT on_hand FROM naive_stock WHERE product_key = 'last'`).Scan(&left); err != nil {
				return err
			}
			if left < 1 {
				continue
			}
			if _, err := db.Pool.Exec(ctx, `UPDATE naive_stock SET on_hand = $1 WHERE product_key = 'last'`, left-1); err != nil {
				return err
			}
			sold.Add(1)
		}
		return nil
	})
	return max(int(sold.Load())-stockLastUnits, 0), err
}
