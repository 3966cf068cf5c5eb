package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func insertPurchase(t *testing.T, db *store.DB) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO purchases (id, product_key, stripe_session_id, currency,
		created_at, updated_at) VALUES ($1, 'pro', $2, 'usd', $3, $3)`, id, "cs_"+id, t0); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestWritesToARunningStepAreFencedByItsClaim: releasing a step gives its
// attempt back, so the next claim has the same id and attempt number; only
// the claim token tells the two claims apart, and only the current one may
// write.
func TestWritesToARunningStepAreFencedByItsClaim(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	purchase := insertPurchase(t, db)
	if _, err := db.InsertSteps(ctx, t0, []store.NewStep{
		{PurchaseID: purchase, Pipeline: "p", Name: "a", Blocking: true, RunAt: t0, MaxAttempts: 3},
		{PurchaseID: purchase, Pipeline: "p", Name: "b", After: "a", RunAt: t0, MaxAttempts: 3},
	}); err != nil {
		t.Fatal(err)
	}
	claim := func(owner string) store.Step {
		t.Helper()
		got, err := db.ClaimSteps(ctx, owner, t0, time.Minute, 10)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v, %v", got, err)
		}
		return got[0]
	}
	first := claim("engine")
	if ok, err := db.ReleaseStep(ctx, first.Claim(), t0); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	second := claim("engine")
	if second.ID != first.ID || second.Attempts != first.Attempts || second.Claim() == first.Claim() {
		t.Fatalf("claims: first %+v attempt %d, second %+v attempt %d", first.Claim(), first.Attempts, second.Claim(), second.Attempts)
	}

	stale := first.Claim()
	if renewed, err := db.RenewLeases(ctx, []store.Claim{stale}, time.Hour); err != nil || len(renewed) != 0 {
		t.Errorf("stale renew = %v, %v", renewed, err)
	}
	if ok, err := db.RetryStep(ctx, stale, t0, t0.Add(time.Minute), "boom"); err != nil || ok {
		t.Errorf("stale retry = %v, %v", ok, err)
	}
	if ok, _, err := db.FailStep(ctx, stale, t0, "boom"); err != nil || ok {
		t.Errorf("stale fail = %v, %v", ok, err)
	}
	if ok, err := db.ReleaseStep(ctx, stale, t0); err != nil || ok {
		t.Errorf("stale release = %v, %v", ok, err)
	}
	if ok, err := db.CompleteStep(ctx, store.Completion{Claim: stale, Blocking: true, Result: json.RawMessage(`"stale"`)}, t0); err != nil || ok {
		t.Errorf("stale complete = %v, %v", ok, err)
	}
	if s, _ := db.GetStep(ctx, first.ID); s.Status != store.StepRunning || s.Claim() != second.Claim() {
		t.Fatalf("after stale writes: %s under %+v", s.Status, s.Claim())
	}

	if renewed, err := db.RenewLeases(ctx, []store.Claim{second.Claim()}, time.Hour); err != nil || len(renewed) != 1 {
		t.Errorf("renew = %v, %v", renewed, err)
	}
	if ok, err := db.CompleteStep(ctx, store.Completion{Claim: second.Claim(), Blocking: true, Result: json.RawMessage(`"ok"`)}, t0); err != nil || !ok {
		t.Fatalf("complete = %v, %v", ok, err)
	}
	a, _ := db.GetStep(ctx, first.ID)
	if a.Status != store.StepDone || string(a.Result) != `"ok"` || a.ClaimToken != nil {
		t.Errorf("a = %s %s token %v", a.Status, a.Result, a.ClaimToken)
	}
	if b, _ := db.StepsByStatus(ctx, store.StepPending, 10); len(b) != 1 || b[0].Name != "b" {
		t.Errorf("pending after completing a: %+v", b)
	}
}

// TestCancelByTagUsesAnIndex: on a steps table far too big to scan for one
// purchase, canceling a purchase's tagged steps goes through an index, in the
// plan for the values given and in the generic plan a cached statement
// settles on. Without that index the planner scans, which shows the table is
// big enough for the test to mean something.
func TestCancelByTagUsesAnIndex(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO purchases (id, product_key, stripe_session_id, currency, created_at, updated_at)
		SELECT gen_random_uuid(), 'pro', 'cs_' || g, 'usd', $1, $1 FROM generate_series(1, 5000) AS g`, t0)
	if err == nil {
		_, err = db.Pool.Exec(ctx, `
		INSERT INTO steps (subject_kind, subject_id, pipeline, name, tags, status, run_at, max_attempts, created_at, updated_at, finished_at)
		SELECT 'purchase', p.id, 'purchase', n.name, n.tags, n.status, $1, 10, $1, $1, CASE WHEN n.status = 'done' THEN $1::timestamptz END
		FROM purchases p CROSS JOIN (VALUES
			('confirmation', '{}'::text[], 'done'), ('admin', '{}', 'done'), ('grant_access', '{access}', 'done'),
			('access_email', '{access}', 'done'), ('analytics', '{}', 'done'), ('followup_7', '{followup}', 'pending'),
			('followup_14', '{followup}', 'pending'), ('followup_30', '{followup}', 'pending')) AS n (name, tags, status)`, t0)
	}
	if err == nil {
		_, err = db.Pool.Exec(ctx, `ANALYZE steps`)
	}
	if err != nil {
		t.Fatal(err)
	}
	var purchase string
	if err := db.Pool.QueryRow(ctx, `SELECT id::text FROM purchases LIMIT 1`).Scan(&purchase); err != nil {
		t.Fatal(err)
	}

	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	plan := func(generic bool) string {
		t.Helper()
		mode := "force_custom_plan"
		if generic {
			mode = "force_generic_plan"
		}
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `PREPARE cancel_by_tag AS `+store.CancelByTagSQL); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(ctx, `DEALLOCATE cancel_by_tag`)
		// A utility statement takes no parameters: the values are literals.
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE cancel_by_tag('2026-03-01 12:00:00Z', '`+purchase+`', 'followup')`)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	for _, generic := range []bool{false, true} {
		p := plan(generic)
		// An Index Scan or a Bitmap Index Scan, on the index that leads with subject_id.
		if strings.Contains(p, "Seq Scan") || !strings.Contains(p, "Index Scan") ||
			!strings.Contains(p, "steps_purchase_pipeline_name_key") {
			t.Errorf("cancel by tag (generic plan %v) does not use the purchase index:\n%s", generic, p)
		}
	}

	// The same statement without the index scans the table.
	if _, err := conn.Exec(ctx, `BEGIN; DROP INDEX steps_purchase_pipeline_name_key`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `ROLLBACK`)
	if p := plan(false); !strings.Contains(p, "Seq Scan on steps") {
		t.Errorf("without the index, the plan is still:\n%s", p)
	}
}

// TestCompleteStepsFencesEachClaimAndReleasesWhatWaited: a batch of
// completions, small (a statement per step) or large (one over arrays),
// completes every step whose claim holds, refuses the one whose claim is
// stale, and makes due the steps that waited for the completed ones.
func TestCompleteStepsFencesEachClaimAndReleasesWhatWaited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, n := range []int{3, 20} { // a statement per step, and one over arrays
		db := pgtest.New(t)
		purchase := insertPurchase(t, db)
		var news []store.NewStep
		for i := range n {
			name := fmt.Sprintf("s%d", i)
			news = append(news, store.NewStep{PurchaseID: purchase, Pipeline: "p", Name: name, Blocking: i%2 == 0,
				RunAt: t0, MaxAttempts: 3})
			if i%2 == 0 {
				news = append(news, store.NewStep{PurchaseID: purchase, Pipeline: "p", Name: name + "_after", After: name,
					RunAt: t0, MaxAttempts: 3})
			}
		}
		if _, err := db.InsertSteps(ctx, t0, news); err != nil {
			t.Fatal(err)
		}
		claimed, err := db.ClaimSteps(ctx, "engine", t0, time.Minute, n)
		if err != nil || len(claimed) != n {
			t.Fatalf("%d steps: claimed %d (%v)", n, len(claimed), err)
		}
		cs := make([]store.Completion, n)
		for i, s := range claimed {
			cs[i] = store.Completion{Claim: s.Claim(), Blocking: s.Blocking, Result: json.RawMessage(`{"ok":true}`)}
		}
		cs[0].Token++ // a stale claim
		done, err := db.CompleteSteps(ctx, t0, cs)
		if err != nil {
			t.Fatal(err)
		}
		if len(done) != n-1 || slices.Contains(done, claimed[0].ID) {
			t.Errorf("%d steps: completed %v, want all but %d", n, done, claimed[0].ID)
		}
		steps, err := db.PurchaseSteps(ctx, purchase)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]store.Step{}
		for _, s := range steps {
			byName[s.Name] = s
		}
		for _, s := range claimed {
			want := store.StepDone
			if s.ID == claimed[0].ID {
				want = store.StepRunning
			}
			if got := byName[s.Name].Status; got != want {
				t.Errorf("%d steps: %s is %s, want %s", n, s.Name, got, want)
			}
			if !s.Blocking {
				continue
			}
			wantAfter := store.StepPending
			if s.ID == claimed[0].ID {
				wantAfter = store.StepWaiting
			}
			if got := byName[s.Name+"_after"].Status; got != wantAfter {
				t.Errorf("%d steps: %s_after is %s, want %s", n, s.Name, got, wantAfter)
			}
		}
	}
}

// TestReleaseLostClaimsTouchesOnlyUnheldClaimsOfTheFailedRoundTrip: of the
// steps running under an owner, only those claimed at the failed round
// trip's time whose token the owner does not hold go back to pending, their
// attempt unspent; a held claim, an earlier claim and another owner's are
// left running.
func TestReleaseLostClaimsTouchesOnlyUnheldClaimsOfTheFailedRoundTrip(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	purchase := insertPurchase(t, db)
	var news []store.NewStep
	for _, name := range []string{"earlier", "held", "lost", "other"} {
		news = append(news, store.NewStep{PurchaseID: purchase, Pipeline: "p", Name: name, RunAt: t0, MaxAttempts: 3})
	}
	if _, err := db.InsertSteps(ctx, t0, news); err != nil {
		t.Fatal(err)
	}
	claim := func(owner string, at time.Time, n int) []store.Step {
		t.Helper()
		got, err := db.ClaimSteps(ctx, owner, at, time.Minute, n)
		if err != nil || len(got) != n {
			t.Fatalf("claim: %v, %v", got, err)
		}
		return got
	}
	earlier := claim("engine", t0, 1)[0]
	trip := t0.Add(time.Second)
	mine := claim("engine", trip, 2)
	other := claim("other", trip, 1)[0]
	held, lost := mine[0], mine[1]

	ids, err := db.ReleaseLostClaims(ctx, "engine", []time.Time{trip}, []int64{held.Claim().Token}, trip)
	if err != nil || !slices.Equal(ids, []int64{lost.ID}) {
		t.Fatalf("released %v, %v; want [%d]", ids, err, lost.ID)
	}
	if s, _ := db.GetStep(ctx, lost.ID); s.Status != store.StepPending || s.Attempts != 0 || s.ClaimToken != nil ||
		s.LeaseOwner != nil {
		t.Errorf("lost claim's step: %s after %d attempts, owner %v; want pending, 0, none", s.Status, s.Attempts, s.LeaseOwner)
	}
	for _, s := range []store.Step{earlier, held, other} {
		if got, _ := db.GetStep(ctx, s.ID); got.Status != store.StepRunning || got.Claim() != s.Claim() || got.Attempts != 1 {
			t.Errorf("step %s: %s under %+v after %d attempts; want running under its claim, 1", got.Name, got.Status,
				got.Claim(), got.Attempts)
		}
	}
	if ids, err := db.ReleaseLostClaims(ctx, "engine", []time.Time{trip}, nil, trip); err != nil || len(ids) != 1 || ids[0] != held.ID {
		t.Errorf("with nothing held: released %v, %v; want the held step's", ids, err)
	}
}

// TestCancelByTagCancelsWhatWaitsOnTheCanceledSteps: canceling a subject's
// tagged steps cancels, transitively, the steps waiting on them that lack
// the tag (they could never run), naming the canceled root; the tagged steps
// say why they were canceled, and another subject's steps are untouched.
func TestCancelByTagCancelsWhatWaitsOnTheCanceledSteps(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	purchase, other := insertPurchase(t, db), insertPurchase(t, db)
	var news []store.NewStep
	for _, p := range []string{purchase, other} {
		news = append(news,
			store.NewStep{PurchaseID: p, Pipeline: "p", Name: "followup", Blocking: true, Tags: []string{"followup"}, RunAt: t0, MaxAttempts: 3},
			store.NewStep{PurchaseID: p, Pipeline: "p", Name: "survey", After: "followup", Blocking: true, RunAt: t0, MaxAttempts: 3},
			store.NewStep{PurchaseID: p, Pipeline: "p", Name: "thanks", After: "survey", RunAt: t0, MaxAttempts: 3},
			store.NewStep{PurchaseID: p, Pipeline: "p", Name: "receipt", RunAt: t0, MaxAttempts: 3})
	}
	if _, err := db.InsertSteps(ctx, t0, news); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	if n, err := db.CancelSteps(ctx, purchase, "followup", now); err != nil || n != 3 {
		t.Fatalf("cancel = %d, %v; want 3 (the tagged step and the two waiting on it)", n, err)
	}
	var root int64
	if err := db.Pool.QueryRow(ctx, `SELECT id FROM steps WHERE subject_id = $1 AND name = 'followup'`, purchase).Scan(&root); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Pool.Query(ctx, `SELECT subject_id::text, name, status, canceled_by, coalesce(last_error, ''),
		finished_at IS NOT DISTINCT FROM $1::timestamptz FROM steps ORDER BY id`, now)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var subject, name, status, lastError string
		var by *int64
		var finishedNow bool
		if err := rows.Scan(&subject, &name, &status, &by, &lastError, &finishedNow); err != nil {
			t.Fatal(err)
		}
		want := "pending"
		switch {
		case subject == other && name != "survey" && name != "thanks", subject == purchase && name == "receipt":
		case subject == other:
			want = "waiting"
		case name == "followup":
			want = "canceled"
			if by != nil || lastError != "canceled: followup" || !finishedNow {
				t.Errorf("followup: canceled_by %v, last error %q, finished now %v; want none, the tag, true", by, lastError, finishedNow)
			}
		default:
			want = "canceled"
			if by == nil || *by != root || !strings.Contains(lastError, "followup") || !finishedNow {
				t.Errorf("%s waiting on the canceled followup: canceled_by %v, last error %q, finished now %v; want step %d named",
					name, by, lastError, finishedNow, root)
			}
		}
		if status != want {
			t.Errorf("%s of %s: %s, want %s", name, subject, status, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
