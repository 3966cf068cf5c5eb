package reconcile

// Table test of decideSubscriptions: a page decided together is each item
// decided as decideSubscription says, with the page's bookkeeping (new,
// changed and only checked rows; ids taken, also within the page; the
// adoption rule for rows not recorded; the claimant).

import (
	"errors"
	"testing"

	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

func TestDecideSubscriptions(t *testing.T) {
	const takenID = "5c0d3a4e-0000-4000-8000-0000000000aa"
	item := func(stripeID string, skip SkipReason, edit func(*store.Subscription)) *subItem {
		snap := sub(func(s *store.Subscription) {
			s.StripeSubscriptionID = stripeID
			if edit != nil {
				edit(s)
			}
		})
		return &subItem{s: &stripe.Subscription{ID: stripeID}, snap: snap, skip: skip,
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.ID = "in_" + stripeID })}}
	}
	state := func(rows ...store.Subscription) store.SubscriptionWriteState {
		st := store.SubscriptionWriteState{Rows: map[string]store.Subscription{}, Taken: map[string]bool{takenID: true},
			Invoices: map[string]store.Invoice{}, Hinted: map[string]bool{"sub_b": true}}
		for _, r := range rows {
			st.Rows[r.StripeSubscriptionID] = r
		}
		return st
	}
	pol := subPolicy{}
	// A row as a first decision recorded it.
	recordedRow := func(it *subItem) store.Subscription {
		d := decideSubscription(nil, it.snap, it.invs, nil, pol, subNow)
		return d.Next
	}

	t.Run("new, changed and unchanged rows", func(t *testing.T) {
		unchanged := item("sub_a", "", nil)
		changed := item("sub_b", "", nil)
		fresh := item("sub_c", "", func(s *store.Subscription) { s.ID = "5c0d3a4e-0000-4000-8000-000000000003" })
		notOurs := item("sub_d", SkipUnknownProduct, nil)
		prevA, prevB := recordedRow(unchanged), recordedRow(changed)
		prevB.StripePriceID = "price_old" // the plan changed since
		st := state(prevA, prevB)
		st.Invoices["in_sub_a"] = inv(func(i *store.Invoice) { i.ID, i.SubscriptionID = "in_sub_a", prevA.ID })
		w, err := decideSubscriptions([]*subItem{fresh, changed, unchanged, notOurs}, st, nil, pol, subNow)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Inserts) != 1 || w.Inserts[0].StripeSubscriptionID != "sub_c" || len(w.Updates) != 1 ||
			w.Updates[0].StripeSubscriptionID != "sub_b" || len(w.Checked) != 1 || w.Checked[0] != prevA.ID {
			t.Errorf("inserts %v, updates %v, checked %v", w.Inserts, w.Updates, w.Checked)
		}
		for _, s := range append(w.Inserts, w.Updates...) {
			if s.CheckedAt == nil || !s.CheckedAt.Equal(subNow) {
				t.Errorf("%s written without its check time", s.StripeSubscriptionID)
			}
		}
		if len(w.Invoices) != 2 { // in_sub_a is recorded as is
			t.Errorf("invoices %v", w.Invoices)
		}
		if notOurs.res.skipped != SkipUnknownProduct || notOurs.res.found || !fresh.res.found || !changed.res.wasStarted {
			t.Errorf("results: %+v %+v %+v", notOurs.res, fresh.res, changed.res)
		}
		want := map[string]bool{"sub_c": true, "sub_b": false} // unannounced
		if len(w.report) != 2 {
			t.Fatalf("report %v", w.report)
		}
		for _, c := range w.report {
			if un, ok := want[c.ObjectID]; !ok || c.Unannounced != un {
				t.Errorf("reported %+v", c)
			}
		}
		if len(w.changes) != 2 { // started (new), plan_changed
			t.Errorf("changes %v", w.changes)
		}
	})

	t.Run("a row recorded is written whatever the adoption rule says", func(t *testing.T) {
		it := item("sub_a", SkipNoLookupKey, nil)
		prev := recordedRow(it)
		st := state(prev)
		st.Invoices["in_sub_a"] = inv(func(i *store.Invoice) { i.ID, i.SubscriptionID = "in_sub_a", prev.ID })
		w, err := decideSubscriptions([]*subItem{it}, st, nil, pol, subNow)
		if err != nil || len(w.Checked) != 1 || it.res.skipped != "" {
			t.Errorf("%v %+v %+v", err, w.SubscriptionWrites, it.res)
		}
	})

	t.Run("ids taken, also within the page", func(t *testing.T) {
		a := item("sub_a", "", func(s *store.Subscription) { s.ID = takenID })
		b := item("sub_b", "", func(s *store.Subscription) { s.ID = "5c0d3a4e-0000-4000-8000-0000000000bb" })
		c := item("sub_c", "", func(s *store.Subscription) { s.ID = "5c0d3a4e-0000-4000-8000-0000000000bb" })
		w, err := decideSubscriptions([]*subItem{a, b, c}, state(), nil, pol, subNow)
		if err != nil || len(w.Inserts) != 3 {
			t.Fatalf("%v %v", err, w.Inserts)
		}
		ids := map[string]bool{}
		for _, s := range w.Inserts {
			ids[s.ID] = true
		}
		if len(ids) != 3 || ids[takenID] || !ids["5c0d3a4e-0000-4000-8000-0000000000bb"] {
			t.Errorf("ids %v", ids)
		}
		for _, inv := range w.Invoices {
			if inv.SubscriptionID == takenID {
				t.Errorf("invoice %s written under a taken id", inv.ID)
			}
		}
		if w.Inserts[0].StripeSubscriptionID != "sub_a" || w.Inserts[2].StripeSubscriptionID != "sub_c" {
			t.Errorf("inserts not in Stripe id order: %v", w.Inserts)
		}
	})

	t.Run("claimant", func(t *testing.T) {
		other := item("sub_a", "", nil) // user-1's
		if _, err := decideSubscriptions([]*subItem{other}, state(), &Claimant{UserID: "user-2"}, pol, subNow); !errors.Is(err, ErrNotYours) {
			t.Errorf("claiming another user's: %v", err)
		}
		nobody := item("sub_b", "", func(s *store.Subscription) { s.UserID = nil })
		w, err := decideSubscriptions([]*subItem{nobody}, state(), &Claimant{UserID: "user-2"}, pol, subNow)
		if err != nil || len(w.Inserts) != 1 || w.Inserts[0].UserID == nil || *w.Inserts[0].UserID != "user-2" ||
			len(w.changes) != 1 || w.changes[0].Subscription.UserID == nil {
			t.Errorf("claiming one without a user: %v %+v", err, w.Inserts)
		}
	})
}
