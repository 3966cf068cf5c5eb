package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

func TestReconcileErrorsBackOff(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first, err := db.RecordReconcileError(ctx, "session", "cs_1", "boom", now, now.Add(time.Minute))
	if err != nil || first.Attempts != 1 || !first.FirstSeen.Equal(now) || !first.NextAttempt.Equal(now.Add(time.Minute)) {
		t.Fatalf("first failure: %+v, %v", first, err)
	}
	second, err := db.RecordReconcileError(ctx, "session", "cs_1", "boom again", now.Add(time.Minute), now.Add(3*time.Minute))
	if err != nil || second.Attempts != 2 || !second.FirstSeen.Equal(now) || second.Error != "boom again" {
		t.Fatalf("second failure: %+v, %v", second, err)
	}
	if _, err := db.RecordReconcileError(ctx, "charge", "ch_1", "x", now, now); err != nil {
		t.Fatal(err)
	}
	due, err := db.ReconcileErrors(ctx, now.Add(2*time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].ObjectID != "ch_1" {
		t.Fatalf("due at +2m: %+v, %v; want only ch_1 (cs_1 backs off to +3m)", due, err)
	}
	if err := db.SetReconcileRetry(ctx, "session", "cs_1", now); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.ReconcileErrors(ctx, now.Add(2*time.Minute), 10); len(due) != 2 {
		t.Errorf("due after moving cs_1's retry: %+v", due)
	}
	if err := db.ClearReconcileError(ctx, "session", "cs_1"); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.ReconcileErrors(ctx, now.Add(time.Hour), 10); len(due) != 1 {
		t.Errorf("after clearing: %+v", due)
	}
}

func TestHintsOfObjectsBackingOffWait(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for id, obj := range map[string]string{"evt_1": "cs_failing", "evt_2": "cs_fine"} {
		if _, err := db.InsertHint(ctx, id, "checkout.session.completed", obj, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.RecordReconcileError(ctx, "session", "cs_failing", "boom", now.Add(time.Second), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	objects := func(at time.Time) []string {
		hs, err := db.UnhandledHints(ctx, at, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hs {
			out = append(out, h.ObjectID)
		}
		return out
	}
	if got := objects(now.Add(time.Minute)); len(got) != 1 || got[0] != "cs_fine" {
		t.Errorf("while cs_failing backs off: %v", got)
	}
	if got := objects(now.Add(2 * time.Hour)); len(got) != 2 {
		t.Errorf("once it is due: %v", got)
	}
	// A hint that arrived after the failure is looked at at once.
	if _, err := db.InsertHint(ctx, "evt_3", "checkout.session.completed", "cs_failing", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := objects(now.Add(2 * time.Minute)); len(got) != 2 || got[1] != "cs_failing" {
		t.Errorf("after a fresh hint: %v; want cs_fine and the fresh hint about cs_failing", got)
	}
}

func TestWalks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := db.GetWalk(ctx, "lists"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no walk yet: %v", err)
	}
	w := store.Walk{Name: "lists", Since: now.Add(-720 * time.Hour), StartedAt: now, Phase: store.WalkSessions}
	if err := db.SaveWalk(ctx, w, now); err != nil {
		t.Fatal(err)
	}
	w.Phase, w.StartingAfter, w.Seen = store.WalkRefunds, "re_9", 1200
	if err := db.SaveWalk(ctx, w, now); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetWalk(ctx, "lists")
	if err != nil || got.Phase != store.WalkRefunds || got.StartingAfter != "re_9" || got.Seen != 1200 ||
		!got.Since.Equal(w.Since) || !got.StartedAt.Equal(now) {
		t.Fatalf("walk = %+v, %v", got, err)
	}
	if err := db.SaveWalk(ctx, store.Walk{Name: "lists", Since: now, StartedAt: now, Phase: "charges"}, now); err == nil {
		t.Error("a phase the CHECK does not allow was saved")
	}
	if err := db.DeleteWalk(ctx, "lists"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetWalk(ctx, "lists"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

func TestPurchasesWrittenTogether(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(id, session string) store.Purchase {
		return store.Purchase{ID: id, ProductKey: "pro", Quantity: 2, Status: store.PurchaseCompleted, StripeSessionID: session,
			AmountTotal: 39800, Currency: "eur", AccessState: store.AccessNone, CreatedAt: now, CompletedAt: &now,
			UpdatedAt: now, CheckedAt: &now}
	}
	a := mk("0b6c3f5e-8d1a-4c2b-9f3e-000000000001", "cs_a")
	b := mk("0b6c3f5e-8d1a-4c2b-9f3e-000000000002", "cs_b")
	inserted, err := db.InsertPurchases(ctx, []store.Purchase{a, b})
	if err != nil || len(inserted) != 2 || !inserted["cs_a"] || !inserted["cs_b"] {
		t.Fatalf("insert: %v, %v", inserted, err)
	}
	c := mk("0b6c3f5e-8d1a-4c2b-9f3e-000000000003", "cs_c")
	again := mk("0b6c3f5e-8d1a-4c2b-9f3e-000000000004", "cs_a") // the session is recorded: left alone
	if inserted, err = db.InsertPurchases(ctx, []store.Purchase{again, c}); err != nil || len(inserted) != 1 || !inserted["cs_c"] {
		t.Fatalf("insert over a recorded session: %v, %v", inserted, err)
	}
	got, err := db.GetPurchase(ctx, a.ID)
	if err != nil || got.Quantity != 2 || got.Currency != "eur" || got.CompletedAt == nil || !got.CompletedAt.Equal(now) {
		t.Fatalf("inserted row: %+v, %v", got, err)
	}
	if _, err := db.InsertHint(ctx, "evt_1", "checkout.session.completed", "cs_b", now); err != nil {
		t.Fatal(err)
	}
	err = db.InTx(ctx, func(q *store.Queries) error {
		st, err := q.LockSessionWrite(ctx, []string{"cs_b", "cs_a", "cs_none"}, []string{a.ID, again.ID})
		if err != nil {
			return err
		}
		if len(st.Rows) != 2 || st.Rows["cs_a"].ID != a.ID || !st.Taken[a.ID] || st.Taken[again.ID] ||
			len(st.Hinted) != 1 || !st.Hinted["cs_b"] {
			t.Errorf("write state: %+v", st)
		}
		a.Status, a.AmountRefunded = store.PurchaseRefunded, 39800
		b.Status, b.AmountRefunded = store.PurchasePartiallyRefunded, 100
		// Every kind of column, through the many-rows statement: text,
		// false, true, a state, and a time finer than Postgres keeps.
		email, login, consent, fine := "b@example.com", "octo", false, now.Add(1500*time.Nanosecond)
		b.Email, b.GitHubUsername, b.PromotionsConsent, b.SessionExpiresAt = &email, &login, &consent, &fine
		b.Disputed, b.AccessState = true, store.AccessGranted
		return q.UpdatePurchases(ctx, []store.Purchase{a, b}, now.Add(time.Minute))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []store.Purchase{a, b} {
		got, _ := db.GetPurchase(ctx, want.ID)
		if got.Status != want.Status || got.AmountRefunded != want.AmountRefunded || !got.UpdatedAt.Equal(now.Add(time.Minute)) {
			t.Errorf("updated %s: %s %d at %s", want.ID, got.Status, got.AmountRefunded, got.UpdatedAt)
		}
	}
	got, _ = db.GetPurchase(ctx, b.ID)
	if *got.Email != "b@example.com" || *got.GitHubUsername != "octo" || got.PromotionsConsent == nil || *got.PromotionsConsent ||
		!got.Disputed || got.AccessState != store.AccessGranted || !got.CompletedAt.Equal(now) ||
		!got.SessionExpiresAt.Equal(now.Add(time.Microsecond)) {
		t.Errorf("columns written together: %+v", got)
	}
}
