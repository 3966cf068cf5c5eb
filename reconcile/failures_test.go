package reconcile_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// requestsFor counts the emulator requests whose path names id.
func (e *env) requestsFor(id string) int {
	n := 0
	for _, r := range e.emu.Requests() {
		if strings.Contains(r.Path, id) {
			n++
		}
	}
	return n
}

func TestAnObjectThatKeepsFailingBacksOffAndAlertsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	// A hint about a session Stripe does not know: it fails every time.
	const missing = "cs_test_missing"
	if _, err := e.db.InsertHint(e.ctx, "evt_missing", "checkout.session.completed", missing, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	row := func() store.ReconcileError {
		t.Helper()
		es, err := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(1000*time.Hour), 10)
		if err != nil || len(es) != 1 {
			t.Fatalf("reconcile errors: %+v, %v", es, err)
		}
		return es[0]
	}
	alerts := func() int {
		var n int
		e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM steps WHERE pipeline LIKE 'alert:reconcile_object:'||$1||':%'`, missing).Scan(&n)
		return n
	}
	var gaps []time.Duration
	for i := 1; i <= 15; i++ {
		e.emu.ResetRequests()
		e.pass(reconcile.Incremental)
		if e.requestsFor(missing) == 0 {
			t.Fatalf("failure %d: the object was not tried when due", i)
		}
		r := row()
		if r.Attempts != i {
			t.Fatalf("after %d failing passes: %d attempts", i, r.Attempts)
		}
		gap := r.NextAttempt.Sub(e.clock.Now())
		gaps = append(gaps, gap)
		// Passes before it is due leave it alone: its hint and its retry wait.
		e.clock.Advance(gap / 2)
		e.emu.ResetRequests()
		e.pass(reconcile.Incremental)
		if n := e.requestsFor(missing); n != 0 {
			t.Fatalf("failure %d: tried again %d times while backing off", i, n)
		}
		e.clock.Advance(gap - gap/2)
		if want := 0; i >= 14 {
			if alerts() != 1 {
				t.Fatalf("after %d failures: %d alerts, want 1", i, alerts())
			}
		} else if alerts() != want {
			t.Fatalf("after %d failures: %d alerts, want none yet", i, alerts())
		}
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}
	for len(want) < len(gaps) {
		want = append(want, time.Minute)
	}
	for i := range want {
		if gaps[i] != want[i] {
			t.Errorf("backoff after failure %d = %s, want %s (all: %v)", i+1, gaps[i], want[i], gaps)
		}
	}
}

// An object whose failure was recorded by an earlier pass (here without
// any hint naming it) counts each due retry that fails again: its backoff
// grows and it ends in the operator alert, instead of being retried at
// every pass forever at its first attempt.
func TestARetryThatFailsAgainCountsAndBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	const missing = "cs_test_gone" // Stripe does not know it: every retry fails
	if _, err := e.db.RecordReconcileError(e.ctx, "session", missing, "first failure", e.clock.Now(), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		e.emu.ResetRequests()
		e.pass(reconcile.HintsOnly)
		if e.requestsFor(missing) == 0 {
			t.Fatalf("retry %d: not tried when due", i)
		}
		es, err := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(1000*time.Hour), 10)
		if err != nil || len(es) != 1 {
			t.Fatalf("reconcile errors: %+v, %v", es, err)
		}
		if es[0].Attempts != i {
			t.Fatalf("after failing retry %d: %d attempts recorded", i, es[0].Attempts)
		}
		if gap, want := es[0].NextAttempt.Sub(e.clock.Now()), 5*time.Second<<(i-1); gap != want {
			t.Fatalf("after failing retry %d: next attempt in %s, want %s", i, gap, want)
		}
		e.clock.Advance(es[0].NextAttempt.Sub(e.clock.Now()))
	}
}

func TestTheListCursorMovesPastAnUnrelatedFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("ann")
	e.pay(sid, false)
	// A session carrying paymentd's metadata that cannot be recorded (a
	// "save a card" session has no currency): it fails every time.
	bad, err := e.emu.CreateSession(stripeemu.SessionParams{Mode: "setup",
		Metadata: map[string]string{"purchase_id": uuid.NewString(), "product": product}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.PaySession(bad.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	rep := e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour)})
	if len(rep.Errors) != 1 || rep.Errors[0].ObjectID != bad.ID {
		t.Fatalf("errors: %+v; want the one bad session", rep.Errors)
	}
	if p := e.purchase(pid); p.Status != store.PurchaseCompleted {
		t.Errorf("the good purchase is %s", p.Status)
	}
	cur, err := e.db.GetCursor(e.ctx, "lists")
	if err != nil || cur.Position == nil || !cur.Position.Equal(e.clock.Now()) {
		t.Errorf("lists cursor = %+v, %v; want it moved to the pass's start despite the failure", cur, err)
	}
	if es, _ := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(time.Hour), 10); len(es) != 1 || es[0].ObjectID != bad.ID {
		t.Errorf("the failure is not recorded for its retry: %+v", es)
	}
}

func TestAPassStoppedByItsBudgetResumesWhereItStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	const sessions = 3000
	for i := range sessions {
		if i%100 == 0 {
			e.clock.Advance(time.Minute)
		}
		s, err := e.emu.CreateSession(stripeemuSession(e.price, "x@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := e.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.clock.Advance(time.Hour)
	// Each list page takes 40ms: a walk of 30 pages cannot fit in 400ms.
	e.emu.SetFaults(stripeemu.Faults{Latency: 40 * time.Millisecond})
	o := reconcile.PassOptions{Lists: true, Since: t0, Budget: 400 * time.Millisecond}
	pages := func() int {
		n := 0
		for _, r := range e.emu.Requests() {
			if r.Path == "/v1/checkout/sessions" {
				n++
			}
		}
		return n
	}
	e.emu.ResetRequests()
	passes := 0
	for {
		passes++
		if passes > 100 {
			t.Fatal("the walk never finished")
		}
		rec := e.newReconciler() // a restart between passes: the place is in the database
		rep, err := rec.RunPass(e.ctx, "deep", o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Interrupted == "" {
			break
		}
		_, walkErr := e.db.GetWalk(e.ctx, "lists") // nil while the walk is unfinished
		cur, _ := e.db.GetCursor(e.ctx, "lists")
		if walkErr == nil && cur.Position != nil {
			t.Fatalf("the lists cursor moved before the walk ended: %v", cur.Position)
		}
		if cur.Position != nil {
			break // the walk ended in this pass; a later part of it met the budget
		}
	}
	if passes < 3 {
		t.Fatalf("the walk took %d passes; the budget should have stopped it", passes)
	}
	// Each interrupted pass may redo the pages it was writing and those it
	// had fetched ahead, no more: the place is saved as pages complete.
	if n := pages(); n > 30+6*passes {
		t.Errorf("%d list calls over %d passes for 30 pages: the walk started over", n, passes)
	}
	var n int
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM purchases WHERE status = 'completed'`).Scan(&n); err != nil || n != sessions/10 {
		t.Errorf("%d completed purchases, want %d", n, sessions/10)
	}
	if _, err := e.db.GetWalk(e.ctx, "lists"); err == nil {
		t.Error("the finished walk is still recorded")
	}
	if cur, _ := e.db.GetCursor(e.ctx, "lists"); cur.Position == nil {
		t.Error("the lists cursor did not move when the walk ended")
	}
}

// The first walk of the events feed (no cursor yet: thirty days of history)
// applies each page as it comes and saves its place, so a list call that
// fails midway keeps what was applied and the next pass resumes after the
// last page walked; listing the whole history in one go would, under a
// degraded Stripe, fail somewhere every time and never set the cursor.
func TestTheFirstEventsWalkResumesWhereAFailedCallStoppedIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	const n = 120 // paid sessions whose webhooks never came: several pages of events
	pids := make([]string, n)
	for i := range n {
		sid, pid := e.checkout(fmt.Sprintf("walker%03d", i))
		e.pay(sid, false)
		pids[i] = pid
	}
	completed := func() int {
		c := 0
		for _, pid := range pids {
			if e.purchase(pid).Status == store.PurchaseCompleted {
				c++
			}
		}
		return c
	}
	eventsCalls := func() (calls []string) {
		for _, r := range e.emu.Requests() {
			if r.Path == "/v1/events" {
				calls = append(calls, r.Form.Get("starting_after")+r.Form.Get("ending_before"))
			}
		}
		return calls
	}

	// The first page comes; the second fails, and so do its retries.
	e.emu.FailPath("/v1/events", 1, 4, http.StatusInternalServerError)
	e.emu.ResetRequests()
	if rep := e.pass(reconcile.Incremental); rep.Converged() {
		t.Fatal("the pass converged though its events walk failed")
	}
	first := completed()
	if first == 0 || first == n {
		t.Fatalf("after a walk stopped at its second page, %d of %d purchases completed; want the first page's", first, n)
	}
	place, err := e.db.GetCursor(e.ctx, "events_history")
	if err != nil || place.Cursor == "" {
		t.Fatalf("the walk's place after its first page: %+v, %v", place, err)
	}
	if calls := eventsCalls(); len(calls) != 5 || calls[0] != "" || calls[1] != place.Cursor {
		t.Fatalf("events calls %q; want the first page, then four tries after %s", calls, place.Cursor)
	}

	e.emu.ResetRequests()
	if rep := e.pass(reconcile.Incremental); !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	if calls := eventsCalls(); len(calls) == 0 || calls[0] != place.Cursor {
		t.Fatalf("the next pass listed events from %q; want after %s, where the walk stopped", calls, place.Cursor)
	}
	if c := completed(); c != n {
		t.Fatalf("after the walk resumed, %d of %d purchases completed", c, n)
	}
	if h, _ := e.db.GetCursor(e.ctx, "events_history"); h.Position != nil {
		t.Errorf("the walk is over but its place is still kept: %+v", h)
	}
	if c, _ := e.db.GetCursor(e.ctx, "events"); c.Cursor == "" {
		t.Error("no events cursor after the walk")
	}
}

// An object that fails because Stripe is unavailable (here a 500 on every
// fetch of it) is retried every 15 seconds at most, so it is caught up
// soon after the incident; the operator hears of it once it has failed
// for ten minutes, not before.
func TestAnObjectStripeCannotServeIsRetriedSteadilyAndAlertsAfterTenMinutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, _ := e.checkout("lou")
	e.pay(sid, false)
	e.emu.FailPath("/v1/checkout/sessions/"+sid, 0, 1<<30, http.StatusInternalServerError)
	if _, err := e.db.InsertHint(e.ctx, "evt_lou", "checkout.session.completed", sid, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	alerts := func() int {
		var n int
		e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM steps WHERE pipeline LIKE 'alert:reconcile_object:'||$1||':%'`, sid).Scan(&n)
		return n
	}
	var gaps []time.Duration
	fail := func(wantAlerts int) {
		t.Helper()
		e.pass(reconcile.HintsOnly)
		es, err := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(time.Hour), 10)
		if err != nil || len(es) != 1 {
			t.Fatalf("reconcile errors: %+v, %v", es, err)
		}
		if n := alerts(); n != wantAlerts {
			t.Fatalf("%d alerts after failing %d times for %s, want %d", n, es[0].Attempts,
				e.clock.Now().Sub(es[0].FirstSeen), wantAlerts)
		}
		gaps = append(gaps, es[0].NextAttempt.Sub(e.clock.Now()))
	}
	for range 8 {
		fail(0)
		e.clock.Advance(gaps[len(gaps)-1])
	}
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 15 * time.Second} {
		if gaps[i] != want {
			t.Errorf("wait after failure %d = %s, want %s (all: %v)", i+1, gaps[i], want, gaps)
		}
	}
	e.clock.Set(t0.Add(9*time.Minute + 50*time.Second)) // failing for almost ten minutes
	fail(0)
	e.clock.Set(t0.Add(10*time.Minute + 5*time.Second))
	fail(1)
	e.clock.Advance(15 * time.Second)
	fail(1) // once per run of failures
}
