package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

func TestMigrationsTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	ctx := context.Background()
	a, b := pgtest.Open(t, url), pgtest.Open(t, url)
	all, err := store.Migrations()
	if err != nil || len(all) == 0 {
		t.Fatalf("migrations: %v %v", all, err)
	}
	pending, err := a.PendingMigrations(ctx)
	if err != nil || len(pending) != len(all) {
		t.Fatalf("pending on an empty database = %d (%v), want %d", len(pending), err, len(all))
	}

	var wg sync.WaitGroup
	applied := make([]int, 2)
	errs := make([]error, 2)
	for i, db := range []*store.DB{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms, err := db.Migrate(ctx)
			applied[i], errs[i] = len(ms), err
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent migrate: %v / %v", errs[0], errs[1])
	}
	if applied[0]+applied[1] != len(all) {
		t.Fatalf("applied %d + %d migrations, want %d in total", applied[0], applied[1], len(all))
	}
	again, err := a.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %d (%v), want 0", len(again), err)
	}
	pending, err = b.PendingMigrations(ctx)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending after migrate = %d (%v)", len(pending), err)
	}
	var versions, tables int
	a.Pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions)
	a.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
		AND table_name IN ('purchases', 'refunds', 'steps', 'webhook_hints', 'reconcile_cursors')`).Scan(&tables)
	if versions != len(all) || tables != 5 {
		t.Errorf("schema_migrations has %d rows (want %d), %d core tables (want 5)", versions, len(all), tables)
	}
}

func TestStepStateMachineIsEnforced(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// A running step without a lease, or a done step without finished_at,
	// is refused by the database itself.
	_, err := db.Pool.Exec(ctx, `INSERT INTO steps (pipeline, name, status, run_at, max_attempts, created_at, updated_at)
		VALUES ('p', 'x', 'running', now(), 3, now(), now())`)
	if err == nil {
		t.Error("running step without lease accepted")
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO steps (pipeline, name, status, run_at, max_attempts, created_at, updated_at)
		VALUES ('p', 'y', 'sleeping', now(), 3, now(), now())`)
	if err == nil {
		t.Error("unknown status accepted")
	}
}
