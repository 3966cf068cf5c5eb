package store_test

import (
	"context"
	"regexp"
	"slices"
	"testing"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestStatesMatchChecks holds the Go state types and the database's CHECK
// constraints to the same list of values, so neither can gain a state the
// other does not know.
func TestStatesMatchChecks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	checked := func(table, column string) []string {
		t.Helper()
		var defs []string
		rows, err := db.Pool.Query(context.Background(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = $1::regclass AND contype = 'c'`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				t.Fatal(err)
			}
			defs = append(defs, d)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		// The one CHECK that lists the column's values: (column = ANY (ARRAY['a'::text, ...])).
		re := regexp.MustCompile(`^CHECK \(\(` + column + ` = ANY \(ARRAY\[(.*)\]\)\)\)$`)
		for _, d := range defs {
			if m := re.FindStringSubmatch(d); m != nil {
				var vals []string
				for _, v := range regexp.MustCompile(`'([a-z_]+)'::text`).FindAllStringSubmatch(m[1], -1) {
					vals = append(vals, v[1])
				}
				slices.Sort(vals)
				return vals
			}
		}
		t.Fatalf("no CHECK lists the values of %s.%s in %q", table, column, defs)
		return nil
	}
	strs := func(vs ...string) []string { slices.Sort(vs); return vs }
	var purchase, access, step, subject, walk, subscription, invoice, creditKind, causeKind, lotSource, consumeOutcome []string
	for _, k := range store.CreditKinds {
		creditKind = append(creditKind, string(k))
	}
	for _, k := range store.CauseKinds {
		causeKind = append(causeKind, string(k))
	}
	for _, s := range store.LotSources {
		lotSource = append(lotSource, string(s))
	}
	for _, o := range store.ConsumeOutcomes {
		consumeOutcome = append(consumeOutcome, string(o))
	}
	for _, s := range store.PurchaseStatuses {
		purchase = append(purchase, string(s))
	}
	for _, s := range store.AccessStates {
		access = append(access, string(s))
	}
	for _, s := range store.StepStatuses {
		step = append(step, string(s))
	}
	for _, k := range store.SubjectKinds {
		subject = append(subject, string(k))
	}
	for _, s := range store.WalkPhases {
		walk = append(walk, string(s))
	}
	for _, s := range store.SubscriptionStatuses {
		subscription = append(subscription, string(s))
	}
	for _, s := range store.InvoiceStatuses {
		invoice = append(invoice, string(s))
	}
	for _, c := range []struct {
		table, column string
		goValues      []string
	}{
		{"purchases", "status", strs(purchase...)},
		{"purchases", "access_state", strs(access...)},
		{"steps", "status", strs(step...)},
		{"steps", "subject_kind", strs(subject...)},
		{"reconcile_walks", "phase", strs(walk...)},
		{"subscriptions", "status", strs(subscription...)},
		{"subscriptions", "access_state", strs(access...)},
		{"invoices", "status", strs(invoice...)},
		{"credit_entries", "kind", strs(creditKind...)},
		{"credit_entries", "cause_kind", strs(causeKind...)},
		{"credit_lots", "source_kind", strs(lotSource...)},
		{"credit_consumptions", "outcome", strs(consumeOutcome...)},
	} {
		if got := checked(c.table, c.column); !slices.Equal(got, c.goValues) {
			t.Errorf("%s.%s: CHECK allows %v, Go declares %v", c.table, c.column, got, c.goValues)
		}
	}
}
