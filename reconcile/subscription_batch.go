// Subscriptions, the write: the one writer of subscription rows, their
// invoices and what their changes set in motion, for one subscription (a
// hint, an event, a claim) or a page of them (the list walk) alike. What
// it must know is read in one round trip with the rows locked,
// decideSubscriptions says what to write (decideSubscription for each, as
// a table), the rows, checked marks and invoices are written in one round
// trip, and the changes' pipelines are scheduled in one statement. A page
// whose transaction fails is applied one subscription at a time, so one
// bad subscription is recorded and retried without failing its page.
package reconcile

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// subItem is one subscription to write: what Stripe said (the
// subscription, its snapshot in the row's terms, the invoices read with
// it), the adoption decision, and (once written) what writing it did.
type subItem struct {
	s    *stripe.Subscription
	snap store.Subscription
	invs []store.Invoice
	skip SkipReason
	res  subscriptionResult
}

// newSubItem reads s and more (other invoices of it) as a subItem at now:
// its snapshot, and its latest invoice and more as invoice rows, each
// once, leaving out those not expanded and those of another subscription.
func (r *Reconciler) newSubItem(s *stripe.Subscription, more []*stripe.Invoice, now time.Time) (*subItem, error) {
	snap, err := subscriptionSnapshot(s, r.subPrices, now)
	if err != nil {
		return nil, err
	}
	it := &subItem{s: s, snap: snap, skip: adoptSubscription(s, r.subPrices)}
	ids := map[string]bool{}
	for _, inv := range append([]*stripe.Invoice{s.LatestInvoice}, more...) {
		if inv == nil || inv.ID == "" || ids[inv.ID] || inv.Status == "" {
			continue // not expanded, or seen
		}
		if inv.Subscription != nil && inv.Subscription.ID != "" && inv.Subscription.ID != s.ID {
			continue
		}
		ids[inv.ID] = true
		it.invs = append(it.invs, invoiceRow(inv, now))
	}
	return it, nil
}

// subWrites is what decideSubscriptions decided: the rows, marks and
// invoices to write, the changes to report, and the changes to hand to the
// fulfillment, in the items' order.
type subWrites struct {
	store.SubscriptionWrites
	now     time.Time
	report  []Change
	changes []SubscriptionChange
}

// decideSubscriptions decides, for each item, what its row and invoices
// should be given what st read (its locked row, if any; the recorded
// invoices, and its row's unpaid failed ones; the ids taken; whether a
// webhook announced it), exactly as decideSubscription says for one, and
// fills in each item's result. A subscription without a row is recorded
// only when the adoption rule took it, under its snapshot's id unless that
// id is taken (then a new one). A claimant, when set, is the verified user
// claiming the (single) item: it may not claim another user's
// subscription, and one without a user becomes theirs.
func decideSubscriptions(items []*subItem, st store.SubscriptionWriteState, c *Claimant, pol subPolicy,
	now time.Time) (subWrites, error) {
	w := subWrites{now: now}
	for _, it := range items {
		it.res = subscriptionResult{}
		snap := it.snap
		var prev *store.Subscription
		if row, ok := st.Rows[it.s.ID]; ok {
			prev = &row
			it.res.wasStarted = row.Status.Started()
		} else if it.skip != "" {
			it.res.skipped = it.skip
			continue
		} else {
			if st.Taken[snap.ID] {
				snap.ID = uuid.NewString() // not ours to reuse: another subscription's id
			}
			st.Taken[snap.ID] = true
		}
		owner := snap.UserID
		if prev != nil && prev.UserID != nil {
			owner = prev.UserID
		}
		if c != nil && owner != nil && *owner != c.UserID {
			return w, ErrNotYours
		}
		prevInv := make(map[string]store.Invoice, len(it.invs))
		for _, inv := range it.invs {
			if old, ok := st.Invoices[inv.ID]; ok {
				prevInv[inv.ID] = old
			}
		}
		if prev != nil {
			for _, inv := range st.Failed[prev.ID] {
				prevInv[inv.ID] = inv // the grace counts from the earliest
			}
		}
		d := decideSubscription(prev, snap, it.invs, prevInv, pol, now)
		if c != nil && d.Next.UserID == nil {
			d.Next.UserID, d.Write = &c.UserID, true // claimed by its verified buyer
			d.Change.Subscription.UserID = d.Next.UserID
		}
		it.res.sub, it.res.found = d.Next, true
		row := d.Next
		row.CheckedAt = &now
		switch {
		case d.Insert:
			w.Inserts = append(w.Inserts, row)
		case d.Write:
			w.Updates = append(w.Updates, row)
		default:
			w.Checked = append(w.Checked, row.ID)
		}
		w.Invoices = append(w.Invoices, d.Invoices...)
		if d.What != "" {
			w.report = append(w.report, Change{Kind: kindSubscription, ObjectID: it.s.ID, What: d.What,
				Unannounced: !st.Hinted[it.s.ID]})
		}
		if !d.Change.Empty() {
			w.changes = append(w.changes, d.Change)
		}
	}
	// New rows and invoices go in key order, as the locks were taken: two
	// writers of overlapping pages wait for each other, never in a cycle.
	slices.SortFunc(w.Inserts, func(a, b store.Subscription) int {
		return cmp.Compare(a.StripeSubscriptionID, b.StripeSubscriptionID)
	})
	slices.SortStableFunc(w.Invoices, func(a, b store.Invoice) int { return cmp.Compare(a.ID, b.ID) })
	return w, nil
}

// writeSubscriptions makes the rows and invoices of items agree with what
// Stripe said, in the caller's transaction, with their rows locked, and
// hands what the changes set in motion to the fulfillment in it. It
// returns the changes to report once the transaction commits. A claimant,
// when set, is the verified user claiming the (single) item.
func (r *Reconciler) writeSubscriptions(ctx context.Context, q *store.Queries, items []*subItem, c *Claimant) ([]Change, error) {
	ids := make([]string, 0, len(items))
	var candidates, invIDs []string
	for _, it := range items {
		ids, candidates = append(ids, it.s.ID), append(candidates, it.snap.ID)
		for _, inv := range it.invs {
			invIDs = append(invIDs, inv.ID)
		}
	}
	st, err := q.LockSubscriptionWrite(ctx, ids, candidates, invIDs)
	if err != nil {
		return nil, err
	}
	w, err := decideSubscriptions(items, st, c, r.subPolicy(), r.clock.Now())
	if err != nil {
		return nil, err
	}
	inserted, err := q.WriteSubscriptions(ctx, w.SubscriptionWrites, w.now)
	switch {
	case err != nil:
		return nil, err
	case inserted != len(w.Inserts):
		return nil, errCreatedMeanwhile
	}
	if err := r.subscriptionsChanged(ctx, q, w.changes); err != nil {
		return nil, err
	}
	return w.report, nil
}

// subscriptionsChanged hands changes to the fulfillment, all at once.
func (r *Reconciler) subscriptionsChanged(ctx context.Context, q *store.Queries, cs []SubscriptionChange) error {
	f := r.opts.Subscriptions.Fulfillment
	if len(cs) == 0 || f == nil {
		return nil
	}
	return f.SubscriptionsChanged(ctx, q, cs)
}

// listedSubscription is a subscription the list walk found, with the
// listed invoices of it.
type listedSubscription struct {
	s    *stripe.Subscription
	more []*stripe.Invoice
}

// subscriptionPage applies a page of listed subscriptions in one
// transaction (see writeSubscriptions), with no call to Stripe. Should
// that transaction fail, each of them is applied on its own, so one bad
// subscription is recorded and retried without failing its page.
func (p *pass) subscriptionPage(ctx context.Context, page []listedSubscription) error {
	r := p.r
	now := r.clock.Now()
	items := make([]*subItem, 0, len(page))
	listed := make([]listedSubscription, 0, len(page)) // those of items
	var alone []work
	applyAlone := func(l listedSubscription) {
		alone = append(alone, work{id: l.s.ID, fresh: true, run: func(ctx context.Context) error {
			_, err := r.applySubscription(ctx, l.s, l.more, nil, p.rep)
			return err
		}})
	}
	for _, l := range page {
		it, err := r.newSubItem(l.s, l.more, now)
		if err != nil {
			applyAlone(l) // fails there, and is recorded as its own failure
			continue
		}
		items, listed = append(items, it), append(listed, l)
	}
	if len(items) > 0 {
		var report []Change
		err := r.inTx(ctx, p.rep, func(q *store.Queries) (err error) {
			report, err = r.writeSubscriptions(ctx, q, items, nil)
			return err
		})
		switch {
		case err == nil:
			p.rep.seen(len(items))
			for _, c := range report {
				r.report(p.rep, c)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			r.log.Debug("writing a page of subscriptions together failed; writing them one by one", "err", err)
			for _, l := range listed {
				applyAlone(l)
			}
		}
	}
	p.work.each(ctx, alone)
	return ctx.Err()
}
