package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestStepsWithoutSubjectStandsInForAForeignKey: a step's subject has no
// foreign key, so StepsWithoutSubject must find a step whose purchase does
// not exist, and a subscription's or an order's step whose row is missing
// (or whose table does not exist yet), and nothing else.
func TestStepsWithoutSubjectStandsInForAForeignKey(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	purchase := insertPurchase(t, db)
	ghost, sub, order := uuid.NewString(), uuid.NewString(), uuid.NewString()
	if _, err := db.InsertSteps(ctx, t0, []store.NewStep{
		{PurchaseID: purchase, Pipeline: "p", Name: "real", RunAt: t0, MaxAttempts: 1},
		{SubjectKind: store.SubjectPurchase, SubjectID: ghost, Pipeline: "p", Name: "ghost", RunAt: t0, MaxAttempts: 1},
		{SubjectKind: store.SubjectSubscription, SubjectID: sub, Pipeline: "p", Name: "sub", RunAt: t0, MaxAttempts: 1},
		{SubjectKind: store.SubjectOrder, SubjectID: order, Pipeline: "p", Name: "order", RunAt: t0, MaxAttempts: 1},
		{Pipeline: "sweep", Name: "global", RunAt: t0, MaxAttempts: 1},
	}); err != nil {
		t.Fatal(err)
	}
	orphans, err := db.StepsWithoutSubject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range orphans {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if want := []string{"ghost", "order", "sub"}; !slices.Equal(names, want) {
		t.Errorf("steps without a subject = %v, want %v", names, want)
	}
	all, err := db.SubjectSteps(ctx, sub)
	if err != nil || len(all) != 1 || all[0].SubjectKind != store.SubjectSubscription || all[0].PurchaseID != nil {
		t.Errorf("subscription's steps = %+v, %v", all, err)
	}
}

// TestStepSubjectChecks: a global step has no id, and every other step has
// one of a known kind.
func TestStepSubjectChecks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, c := range []struct {
		kind string
		id   *string
	}{
		{"purchase", nil},
		{"global", ptr(uuid.NewString())},
		{"invoice", ptr(uuid.NewString())},
	} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO steps (subject_kind, subject_id, pipeline, name, status, run_at,
			max_attempts, created_at, updated_at) VALUES ($1, $2, 'p', 'x', 'pending', $3, 1, $3, $3)`, c.kind, c.id, t0)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("step of kind %s with id %v: err = %v, want a CHECK violation", c.kind, c.id, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
