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
)

// TestRetentionPrunesOnlyWhatNothingNeeds: past the retention, the steps of
// purchases (and global pipelines) whose steps are all done or canceled go,
// batch by batch; a purchase with a step still open, failed, or finished
// recently keeps all of its steps, since later steps read earlier results.
// Handled hints past the retention go; unhandled ones stay. One replica
// prunes at a time.
func TestRetentionPrunesOnlyWhatNothingNeeds(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	day := 24 * time.Hour
	eng := newEngine(t, db, clk, steps.Config{MaxAttempts: 1})
	for _, name := range []string{"confirm", "email", "followup", "alert_me", steps.AlertStep} {
		eng.Register(name, func(ctx context.Context, job *steps.Job) (any, error) { return "ok", nil })
	}
	eng.Register("broken", func(ctx context.Context, job *steps.Job) (any, error) {
		return nil, steps.Permanent(errors.New("broken"))
	})
	schedule := func(purchase, pipeline string, list ...steps.Step) {
		t.Helper()
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: purchase, Name: pipeline, Steps: list}); err != nil {
			t.Fatal(err)
		}
	}
	run := func() {
		t.Helper()
		if _, err := eng.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	hint := func(event, object string, handled bool) {
		t.Helper()
		if _, err := db.InsertHint(ctx, event, "checkout.session.completed", object, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if handled {
			if err := db.MarkHintsHandled(ctx, clk.Now(), object); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Day 0.
	p := purchases(t, db, 6)
	finished, open, recent, failed, canceled, refunded := p[0], p[1], p[2], p[3], p[4], p[5]
	schedule(finished, "purchase", steps.Chain(steps.Step{Name: "confirm"}, steps.Step{Name: "email"})...)
	schedule(open, "purchase", steps.Step{Name: "confirm"}, steps.Step{Name: "followup", Delay: 120 * day})
	schedule(recent, "purchase", steps.Step{Name: "confirm"})
	schedule(failed, "purchase", steps.Step{Name: "confirm"}, steps.Step{Name: "broken"})
	schedule(canceled, "purchase", steps.Step{Name: "confirm"}, steps.Step{Name: "followup", Delay: 30 * day, Tags: []string{"followup"}})
	schedule(refunded, "purchase", steps.Step{Name: "confirm"})
	schedule("", "alert:old", steps.Step{Name: "alert_me"})
	schedule("", "alert:later", steps.Step{Name: "alert_me"}, steps.Step{Name: "alert_me_later", Delay: 365 * day})
	hint("evt_old", "cs_old", true)
	hint("evt_unhandled", "cs_unhandled", false)
	pass := func(kind string) {
		t.Helper()
		if err := db.RecordReconcilePass(ctx, store.PassSummary{Kind: kind, StartedAt: clk.Now(), Summary: "seen 1"}); err != nil {
			t.Fatal(err)
		}
	}
	pass("old")
	run()
	if _, err := eng.Cancel(ctx, db.Queries, canceled, "followup"); err != nil {
		t.Fatal(err)
	}

	// Day 60: more work on two of them.
	clk.Set(t0.Add(60 * day))
	schedule(recent, "refund:re_1", steps.Step{Name: "email"})
	run()
	hint("evt_recent", "cs_recent", true)
	pass("recent")

	// Day 100, retention 90 days. Another replica is pruning: nothing happens.
	clk.Set(t0.Add(100 * day))
	m := steps.NewMaintainer(db, clk, testLogger(t), steps.MaintenanceConfig{Retention: 90 * day, BatchSize: 2})
	lock, ok, err := db.TryLock(ctx, store.MaintenanceLockKey)
	if err != nil || !ok {
		t.Fatalf("take the maintenance lock: %v %v", ok, err)
	}
	if rep, err := m.RunOnce(ctx); err != nil || !rep.Skipped || rep.Steps != 0 || rep.Hints != 0 {
		t.Fatalf("prune while another replica holds the lock = %+v, %v; want skipped", rep, err)
	}
	lock.Release()

	rep, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if passes, err := db.RecentReconcilePasses(ctx, 10); err != nil || rep.Passes != 1 || len(passes) != 1 || passes[0].Kind != "recent" {
		t.Errorf("pass summaries after pruning: %+v (%v), pruned %d; want only the recent one kept", passes, err, rep.Passes)
	}
	left := func(purchase string) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE subject_id IS NOT DISTINCT FROM $1::uuid`,
			nilIfEmpty(purchase)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for name, want := range map[string]struct {
		purchase string
		steps    int
	}{
		"all done 100 days ago":              {finished, 0},
		"a follow-up still pending":          {open, 2},
		"a refund pipeline done 40 days ago": {recent, 2},
		"a failed step":                      {failed, 3}, // with its operator alert
		"done and canceled long ago":         {canceled, 0},
		"done long ago":                      {refunded, 0},
	} {
		if n := left(want.purchase); n != want.steps {
			t.Errorf("%s: %d steps left, want %d", name, n, want.steps)
		}
	}
	var globals []string
	rows, _ := db.Pool.Query(ctx, `SELECT DISTINCT pipeline FROM steps WHERE subject_id IS NULL ORDER BY 1`)
	for rows.Next() {
		var g string
		rows.Scan(&g)
		globals = append(globals, g)
	}
	if len(globals) != 1 || globals[0] != "alert:later" {
		t.Errorf("global pipelines left: %v, want [alert:later]", globals)
	}
	var hints []string
	rows, _ = db.Pool.Query(ctx, `SELECT event_id FROM webhook_hints ORDER BY 1`)
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hints = append(hints, h)
	}
	if len(hints) != 2 || hints[0] != "evt_recent" || hints[1] != "evt_unhandled" {
		t.Errorf("hints left: %v, want [evt_recent evt_unhandled]", hints)
	}
	if rep.Steps != 2+2+1+1 || rep.Hints != 1 || rep.Skipped {
		t.Errorf("report = %+v, want 6 steps and 1 hint", rep)
	}

	// A second pass finds nothing more.
	if rep, err := m.RunOnce(ctx); err != nil || rep.Steps != 0 || rep.Hints != 0 {
		t.Errorf("second pass = %+v, %v; want nothing", rep, err)
	}
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
