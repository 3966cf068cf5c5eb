package steps_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// TestEverySubjectKindRunsPipelinesAlike: a subscription's and an order's
// pipelines run, chain, read earlier results, cancel by tag, fail and alert
// exactly like a purchase's, each within its own subject: two subjects of a
// kind share pipeline and step names without seeing each other's steps. The
// engine needs no row for a subscription or an order (steps have no foreign
// key), so those subjects are bare uuids.
func TestEverySubjectKindRunsPipelinesAlike(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})

	var mu sync.Mutex
	ran := map[steps.Subject][]string{}
	keys := map[steps.Subject]map[string]string{}
	purchaseIDs := map[steps.Subject]string{}
	record := func(job *steps.Job) {
		mu.Lock()
		defer mu.Unlock()
		ran[job.Subject] = append(ran[job.Subject], job.Name)
		if keys[job.Subject] == nil {
			keys[job.Subject] = map[string]string{}
		}
		keys[job.Subject][job.Name] = job.IdempotencyKey
		purchaseIDs[job.Subject] = job.PurchaseID
	}
	eng.Register("charge", func(ctx context.Context, job *steps.Job) (any, error) {
		record(job)
		return map[string]string{"paid_by": job.Subject.ID}, nil
	})
	eng.Register("receipt", func(ctx context.Context, job *steps.Job) (any, error) {
		record(job)
		var charge struct {
			PaidBy string `json:"paid_by"`
		}
		if err := job.Prior(ctx, "charge", &charge); err != nil {
			return nil, err
		}
		return charge.PaidBy, nil
	})
	eng.Register("dunning", func(ctx context.Context, job *steps.Job) (any, error) { record(job); return nil, nil })
	eng.Register("doomed", func(ctx context.Context, job *steps.Job) (any, error) {
		record(job)
		return nil, steps.Permanent(errors.New("card declined for good"))
	})
	eng.Register("after_doomed", func(ctx context.Context, job *steps.Job) (any, error) { record(job); return nil, nil })
	alerts := map[steps.Subject]steps.AlertArgs{}
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) {
		var a steps.AlertArgs
		if err := job.DecodeArgs(&a); err != nil {
			return nil, err
		}
		mu.Lock()
		alerts[job.Subject] = a
		mu.Unlock()
		return nil, nil
	})

	ids := purchases(t, db, 2)
	type pair struct{ canceled, kept steps.Subject }
	kinds := map[store.SubjectKind]pair{
		store.SubjectPurchase:     {steps.PurchaseSubject(ids[0]), steps.PurchaseSubject(ids[1])},
		store.SubjectSubscription: {steps.SubscriptionSubject(uuid.NewString()), steps.SubscriptionSubject(uuid.NewString())},
		store.SubjectOrder:        {steps.OrderSubject(uuid.NewString()), steps.OrderSubject(uuid.NewString())},
	}
	day := 24 * time.Hour
	for _, p := range kinds {
		for _, s := range []steps.Subject{p.canceled, p.kept} {
			if n, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{Subject: s, Name: "invoice", Anchor: t0, Steps: []steps.Step{
				{Name: "charge", Tags: []string{"dunning"}},
				{Name: "receipt", After: "charge"},
				{Name: "dunning", Delay: 3 * day, Tags: []string{"dunning"}},
				{Name: "doomed"},
				{Name: "after_doomed", After: "doomed"},
			}}); err != nil || n != 5 {
				t.Fatalf("schedule %s: %d, %v", s, n, err)
			}
		}
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	for kind, p := range kinds {
		n, err := eng.CancelSubject(ctx, db.Queries, p.canceled, "dunning")
		if err != nil || n != 1 {
			t.Errorf("%s: cancel dunning = %d, %v; want 1 (charge already ran)", kind, n, err)
		}
	}
	clk.Advance(3 * day)
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}

	for kind, p := range kinds {
		for _, s := range []steps.Subject{p.canceled, p.kept} {
			all, err := db.SubjectSteps(ctx, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]store.Step{}
			for _, st := range all {
				if st.SubjectKind != kind || st.SubjectID == nil || *st.SubjectID != s.ID {
					t.Errorf("%s: step %s has subject %s %v", s, st.Name, st.SubjectKind, st.SubjectID)
				}
				got[st.Pipeline+"/"+st.Name] = st
			}
			wantDunning := store.StepDone
			if s == p.canceled {
				wantDunning = store.StepCanceled
			}
			for name, want := range map[string]store.StepStatus{
				"invoice/charge": store.StepDone, "invoice/receipt": store.StepDone, "invoice/dunning": wantDunning,
				"invoice/doomed": store.StepFailed, "invoice/after_doomed": store.StepCanceled,
			} {
				if got[name].Status != want {
					t.Errorf("%s: %s is %s, want %s", s, name, got[name].Status, want)
				}
			}
			if r := string(got["invoice/receipt"].Result); r != `"`+s.ID+`"` {
				t.Errorf("%s: receipt read charge's result %s, want its own subject's", s, r)
			}
			if len(all) != 6 { // and the alert, under the same subject
				t.Errorf("%s: %d steps, want 6", s, len(all))
			}
			a, ok := alerts[s]
			wantPurchase := ""
			if kind == store.SubjectPurchase {
				wantPurchase = s.ID
			}
			if !ok || a.Step != "doomed" || a.SubjectKind != kind || a.SubjectID != s.ID || a.PurchaseID != wantPurchase ||
				a.LastError != "permanent: card declined for good" {
				t.Errorf("%s: alert = %+v (sent %v)", s, a, ok)
			}
			if purchaseIDs[s] != wantPurchase {
				t.Errorf("%s: Job.PurchaseID = %q, want %q", s, purchaseIDs[s], wantPurchase)
			}
			if slices.Contains(ran[s], "after_doomed") {
				t.Errorf("%s: after_doomed ran after the step it waited for failed", s)
			}
		}
	}

	// Purchase steps keep the keys receivers have already seen; new kinds
	// name theirs.
	pur, sub, ord := kinds[store.SubjectPurchase].kept, kinds[store.SubjectSubscription].kept, kinds[store.SubjectOrder].kept
	for s, want := range map[steps.Subject]string{
		pur: "paymentd:" + pur.ID + ":invoice:charge",
		sub: "paymentd:subscription:" + sub.ID + ":invoice:charge",
		ord: "paymentd:order:" + ord.ID + ":invoice:charge",
	} {
		if got := keys[s]["charge"]; got != want {
			t.Errorf("%s: idempotency key %q, want %q", s, got, want)
		}
	}
}

// TestPurchaseAndGlobalIdempotencyKeysAreUnchanged pins the keys steps had
// before subjects: SendGrid, GitHub and webhook receivers deduplicate on them.
func TestPurchaseAndGlobalIdempotencyKeysAreUnchanged(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	eng := newEngine(t, db, clock.NewFake(t0), steps.Config{})
	keys := make(chan string, 2)
	eng.Register("confirmation_email", func(ctx context.Context, job *steps.Job) (any, error) {
		keys <- job.IdempotencyKey
		return nil, nil
	})
	id := purchases(t, db, 1)[0]
	for _, p := range []steps.Pipeline{
		{PurchaseID: id, Name: "purchase", Steps: []steps.Step{{Name: "confirmation_email"}}},
		{Name: "sweep", Steps: []steps.Step{{Name: "confirmation_email"}}},
	} {
		if _, err := eng.Schedule(ctx, db.Queries, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{<-keys: true, <-keys: true}
	for _, want := range []string{"paymentd:" + id + ":purchase:confirmation_email", "paymentd:global:sweep:confirmation_email"} {
		if !got[want] {
			t.Errorf("keys %v lack %q", got, want)
		}
	}
}

// TestBadSubjectsAreRefused: a pipeline or a cancel naming no valid subject
// is an error and records nothing.
func TestBadSubjectsAreRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	eng := newEngine(t, db, clock.NewFake(t0), steps.Config{})
	id := uuid.NewString()
	one := []steps.Step{{Name: "x"}}
	for name, p := range map[string]steps.Pipeline{
		"unknown kind":      {Subject: steps.Subject{Kind: "invoice", ID: id}, Name: "p", Steps: one},
		"not a uuid":        {Subject: steps.SubscriptionSubject("sub_123"), Name: "p", Steps: one},
		"no id":             {Subject: steps.OrderSubject(""), Name: "p", Steps: one},
		"global with an id": {Subject: steps.Subject{Kind: store.SubjectGlobal, ID: id}, Name: "p", Steps: one},
		"two subjects":      {Subject: steps.SubscriptionSubject(id), PurchaseID: uuid.NewString(), Name: "p", Steps: one},
		"purchase not uuid": {PurchaseID: "pur_1", Name: "p", Steps: one},
	} {
		if n, err := eng.Schedule(ctx, db.Queries, p); err == nil || n != 0 {
			t.Errorf("%s: schedule = %d, %v; want an error", name, n, err)
		}
	}
	if _, err := eng.CancelSubject(ctx, db.Queries, steps.Subject{}, "followup"); err == nil {
		t.Error("cancel by tag with no subject: no error")
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d steps recorded (%v), want none", n, err)
	}
}

// TestScheduleAllRecordsPipelinesOfManySubjectsOnce: pipelines of several
// subjects (and a global one) scheduled in one call keep their steps,
// chains, tags and delays; a pipeline named twice, in the same call or
// later, adds nothing, and a bad pipeline records none of the call's steps.
func TestScheduleAllRecordsPipelinesOfManySubjectsOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	sub, order := steps.SubscriptionSubject(uuid.NewString()), steps.OrderSubject(uuid.NewString())
	pipes := func() []steps.Pipeline {
		return []steps.Pipeline{
			{Subject: sub, Name: "renewal", Steps: steps.Chain(steps.Step{Name: "charge"}, steps.Step{Name: "receipt"})},
			{Subject: order, Name: "paid", Steps: []steps.Step{{Name: "ship", Delay: time.Hour, Tags: []string{"followup", "x"}}}},
			{Name: "nightly", Steps: []steps.Step{{Name: "digest"}}},
			{Subject: sub, Name: "renewal", Steps: []steps.Step{{Name: "charge"}}}, // again, in the same call
		}
	}
	n, err := eng.ScheduleAll(ctx, db.Queries, pipes())
	if err != nil || n != 4 {
		t.Fatalf("first ScheduleAll: %d new, %v; want 4", n, err)
	}
	if n, err := eng.ScheduleAll(ctx, db.Queries, pipes()); err != nil || n != 0 {
		t.Fatalf("second ScheduleAll: %d new, %v; want 0", n, err)
	}
	bad := append(pipes(), steps.Pipeline{Subject: order, Name: "broken", Steps: []steps.Step{{Name: "b", After: "a"}}})
	bad[0].Name = "another"
	if _, err := eng.ScheduleAll(ctx, db.Queries, bad); err == nil {
		t.Fatal("a pipeline waiting for a step it lacks was scheduled")
	}
	got, err := db.SubjectSteps(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Status != store.StepPending || got[1].Status != store.StepWaiting {
		t.Fatalf("subscription's steps: %+v", got)
	}
	shipped, err := db.SubjectSteps(ctx, order.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(shipped) != 1 || !slices.Equal(shipped[0].Tags, []string{"followup", "x"}) || !shipped[0].RunAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("order's step: %+v", shipped)
	}
}
