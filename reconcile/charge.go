// Charges, refunds and disputes: the purchase's refunded amount is the
// charge's, each refund is a row scheduled for its pipeline once, a refund
// that later fails or is canceled is recomputed, and a lost dispute counts
// as a full refund.
package reconcile

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// charge retrieves a charge and its refunds and applies them.
func (r *Reconciler) charge(ctx context.Context, chargeID string, rep *Report) error {
	ch, err := r.stripe.Charge(ctx, chargeID)
	if err != nil {
		return err
	}
	rep.seen(1)
	// The refunds are always listed: a refund that failed leaves
	// amount_refunded where it was before, yet must still be seen.
	var refunds []*stripe.Refund
	if err := r.stripe.ChargeRefunds(ctx, chargeID, func(re *stripe.Refund) error {
		refunds = append(refunds, re)
		return nil
	}); err != nil {
		return err
	}
	rep.seen(len(refunds))
	return r.applyCharge(ctx, ch, refunds, rep)
}

// purchaseFor finds the purchase a charge paid for, first reconciling the
// session behind its payment intent when the purchase is not recorded yet
// (a refund seen before its session). It returns ErrNotFound for a charge
// no checkout session made.
func (r *Reconciler) purchaseFor(ctx context.Context, paymentIntentID string, rep *Report) (store.Purchase, error) {
	if paymentIntentID == "" {
		return store.Purchase{}, store.ErrNotFound
	}
	p, err := r.db.PurchaseByPaymentIntent(ctx, paymentIntentID)
	if !errors.Is(err, store.ErrNotFound) {
		return p, err
	}
	s, err := r.stripe.CheckoutSessionByPaymentIntent(ctx, paymentIntentID)
	if err != nil || s == nil {
		return store.Purchase{}, errors.Join(err, store.ErrNotFound)
	}
	res, err := r.applySessionResult(ctx, s, nil, rep)
	if err != nil {
		return store.Purchase{}, err
	}
	if !res.found {
		return store.Purchase{}, store.ErrNotFound
	}
	if rep.DryRun {
		return res.purchase, nil // not committed; carry on with the in-memory row
	}
	return r.db.PurchaseByPaymentIntent(ctx, paymentIntentID)
}

func (r *Reconciler) applyCharge(ctx context.Context, ch *stripe.Charge, refunds []*stripe.Refund, rep *Report) error {
	if ch.PaymentIntent == nil {
		return nil
	}
	base, err := r.purchaseFor(ctx, ch.PaymentIntent.ID, rep)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not a checkout payment: not ours
	}
	if err != nil {
		return err
	}
	sort.Slice(refunds, func(i, j int) bool {
		if refunds[i].Created != refunds[j].Created {
			return refunds[i].Created < refunds[j].Created
		}
		return refunds[i].ID < refunds[j].ID
	})
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		p, err := q.LockPurchase(ctx, base.ID)
		if errors.Is(err, store.ErrNotFound) && rep.DryRun {
			p, err = base, nil
		}
		if err != nil {
			return err
		}
		now := r.clock.Now()
		type event struct {
			refund     store.Refund
			cumulative int64
			what       string // refunded, partially_refunded, refund_reversed
		}
		var events []event
		var cumulative int64
		for _, re := range refunds {
			row := store.Refund{ID: re.ID, PurchaseID: p.ID, Amount: re.Amount,
				Currency: strings.ToLower(string(re.Currency)), Status: string(re.Status), CreatedAt: timeOf(re.Created, now)}
			live := re.Status != stripe.RefundStatusFailed && re.Status != stripe.RefundStatusCanceled
			if live {
				cumulative += re.Amount
			}
			before, getErr := q.GetRefund(ctx, re.ID)
			inserted, changed, err := q.UpsertRefund(ctx, row, now)
			if err != nil {
				return err
			}
			switch {
			case inserted && live:
				what := "partially_refunded"
				if cumulative >= p.AmountTotal && p.AmountTotal > 0 {
					what = "refunded"
				}
				events = append(events, event{row, cumulative, what})
			case changed && !live && getErr == nil && before.Status != string(stripe.RefundStatusFailed) &&
				before.Status != string(stripe.RefundStatusCanceled):
				events = append(events, event{row, cumulative, "refund_reversed"})
			}
		}

		next := p
		next.AmountRefunded = ch.AmountRefunded
		next.StripeChargeID = &ch.ID
		if ch.Disputed {
			next.Disputed = true
		}
		lost, err := q.HasLostDispute(ctx, p.ID)
		if err != nil {
			return err
		}
		next.Status = paidStatus(p.Status, next.AmountTotal, next.AmountRefunded, lost)
		if !equalPurchases(next, p) {
			next.CheckedAt = &now
			if err := q.UpdatePurchase(ctx, next, now); err != nil {
				return err
			}
		}
		for _, ev := range events {
			if err := r.record(ctx, q, rep, Change{Kind: "refund", ObjectID: ev.refund.ID, PurchaseID: p.ID, What: ev.what}); err != nil {
				return err
			}
			at := next
			at.AmountRefunded = ev.cumulative
			if ev.what == "refund_reversed" {
				err = r.ful.RefundReversed(ctx, q, next, ev.refund)
			} else {
				err = r.ful.Refunded(ctx, q, at, ev.refund)
			}
			if err != nil {
				return err
			}
		}
		if len(events) == 0 && next.Status != p.Status {
			// The amount moved without a new refund row (first seen after
			// a reversal, say): still a change worth reporting.
			return r.record(ctx, q, rep, Change{Kind: "charge", ObjectID: ch.ID, PurchaseID: p.ID, What: string(next.Status)})
		}
		return nil
	})
}

// paidStatus is the status of a purchase that was paid, given what has
// been refunded and whether a dispute was lost. A purchase that was never
// paid keeps its status.
func paidStatus(current store.PurchaseStatus, total, refunded int64, disputeLost bool) store.PurchaseStatus {
	switch current {
	case store.PurchaseCompleted, store.PurchasePartiallyRefunded, store.PurchaseRefunded:
	default:
		return current
	}
	switch {
	case disputeLost || (total > 0 && refunded >= total):
		return store.PurchaseRefunded
	case refunded > 0:
		return store.PurchasePartiallyRefunded
	default:
		return store.PurchaseCompleted
	}
}

// applyDispute records a dispute: opened alerts the operator; lost counts
// as a full refund.
func (r *Reconciler) applyDispute(ctx context.Context, d *stripe.Dispute, rep *Report) error {
	rep.seen(1)
	piID := ""
	if d.PaymentIntent != nil {
		piID = d.PaymentIntent.ID
	} else if d.Charge != nil {
		ch, err := r.stripe.Charge(ctx, d.Charge.ID)
		if err != nil {
			return err
		}
		if ch.PaymentIntent != nil {
			piID = ch.PaymentIntent.ID
		}
	}
	base, err := r.purchaseFor(ctx, piID, rep)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		p, err := q.LockPurchase(ctx, base.ID)
		if errors.Is(err, store.ErrNotFound) && rep.DryRun {
			p, err = base, nil
		}
		if err != nil {
			return err
		}
		now := r.clock.Now()
		before, getErr := q.GetDispute(ctx, d.ID)
		row := store.Dispute{ID: d.ID, PurchaseID: p.ID, Amount: d.Amount, Currency: strings.ToLower(string(d.Currency)),
			Status: string(d.Status), Reason: string(d.Reason), CreatedAt: timeOf(d.Created, now)}
		inserted, changed, err := q.UpsertDispute(ctx, row, now)
		if err != nil || (!inserted && !changed) {
			return err
		}
		lost := d.Status == stripe.DisputeStatusLost
		next := p
		next.Disputed = true
		next.Status = paidStatus(p.Status, p.AmountTotal, p.AmountRefunded, lost)
		if !equalPurchases(next, p) {
			next.CheckedAt = &now
			if err := q.UpdatePurchase(ctx, next, now); err != nil {
				return err
			}
		}
		if inserted {
			if err := r.record(ctx, q, rep, Change{Kind: "dispute", ObjectID: d.ID, PurchaseID: p.ID, What: "disputed"}); err != nil {
				return err
			}
			if err := r.ful.DisputeOpened(ctx, q, next, row); err != nil {
				return err
			}
		}
		wasLost := getErr == nil && before.Status == string(stripe.DisputeStatusLost)
		if lost && !wasLost {
			if err := r.record(ctx, q, rep, Change{Kind: "dispute", ObjectID: d.ID, PurchaseID: p.ID, What: "dispute_lost"}); err != nil {
				return err
			}
			return r.ful.DisputeLost(ctx, q, next, row)
		}
		return nil
	})
}

// equalPurchases compares two purchases field by field, pointees included,
// ignoring the bookkeeping times a write stamps.
func equalPurchases(a, b store.Purchase) bool {
	a.CheckedAt, b.CheckedAt = nil, nil
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// timeOf converts Stripe's Unix seconds, falling back to fallback for 0.
func timeOf(unix int64, fallback time.Time) time.Time {
	if unix <= 0 {
		return fallback
	}
	return time.Unix(unix, 0).UTC()
}
