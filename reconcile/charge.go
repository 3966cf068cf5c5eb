// Charges, refunds and disputes: the purchase's refunded amount is the
// charge's, each refund is a row scheduled for its pipeline once, a refund
// that later fails or is canceled is recomputed, and a lost dispute counts
// as a full refund. decideCharge and decideDispute say what changed and
// what to schedule; the transactions that write it are thin.
package reconcile

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/paymentd/paymentd/steps"
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
	// The refunds are always read: a refund that failed leaves
	// amount_refunded where it was before, yet must still be seen. They
	// come expanded with the charge; only a charge with more than fit
	// there costs a second call.
	var refunds []*stripe.Refund
	if ch.Refunds != nil && !ch.Refunds.HasMore {
		refunds = ch.Refunds.Data
	} else if err := r.stripe.ChargeRefunds(ctx, chargeID, func(re *stripe.Refund) error {
		refunds = append(refunds, re)
		return nil
	}); err != nil {
		return err
	}
	rep.seen(len(refunds))
	if order, err := r.orderCharge(ctx, ch, refunds, rep); order || err != nil {
		return err // an order's charge (order.go)
	}
	return r.applyCharge(ctx, ch, refunds, rep)
}

// purchaseFor finds the purchase a charge paid for, first reconciling the
// session behind its payment intent when the purchase is not recorded yet
// (a refund seen before its session). That goes through applySession, so
// the same adoption rule holds: a charge of a session that is not
// paymentd's finds no purchase. It returns ErrNotFound for a charge no
// paymentd checkout session made.
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
	res, err := r.applySessionResult(ctx, s, nil, rep, false)
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

// refundEvent is a refund transition to report and schedule.
type refundEvent struct {
	refund store.Refund
	// cumulative is the amount refunded up to and including this refund.
	cumulative int64
	what       string // whatRefunded, whatPartiallyRefunded or whatRefundReversed
}

// chargeDecision is what a charge and its refunds change on a purchase.
type chargeDecision struct {
	next    store.Purchase // the purchase as the charge says it is
	upserts []store.Refund // refund rows that are new or changed
	events  []refundEvent  // oldest first
	// what is a status change no refund event explains (the amount moved
	// back after a reversal that was never seen as a refund row); "" when
	// none.
	what string
}

// refundLive reports whether a refund in Stripe status s counts toward
// the refunded amount.
func refundLive(s string) bool {
	return s != string(stripe.RefundStatusFailed) && s != string(stripe.RefundStatusCanceled)
}

// decideCharge compares a charge and its refunds with the purchase p and
// the refund rows already recorded for it (by Stripe id). A refund seen
// for the first time and live is a partial or full refund (full once the
// live refunds so far reach the total); a recorded live refund that has
// since failed or been canceled is a reversal. The purchase's refunded
// amount is the charge's; its status follows from that and whether a
// dispute was lost.
func decideCharge(p store.Purchase, ch *stripe.Charge, refunds []*stripe.Refund, recorded map[string]store.Refund,
	disputeLost bool, now time.Time) chargeDecision {
	refunds = append([]*stripe.Refund(nil), refunds...)
	sort.Slice(refunds, func(i, j int) bool {
		if refunds[i].Created != refunds[j].Created {
			return refunds[i].Created < refunds[j].Created
		}
		return refunds[i].ID < refunds[j].ID
	})
	var d chargeDecision
	var cumulative int64
	for _, re := range refunds {
		row := store.Refund{ID: re.ID, PurchaseID: p.ID, Amount: re.Amount,
			Currency: strings.ToLower(string(re.Currency)), Status: string(re.Status), CreatedAt: timeOf(re.Created, now)}
		live := refundLive(row.Status)
		if live {
			cumulative += re.Amount
		}
		before, had := recorded[re.ID]
		changed := had && (before.Amount != row.Amount || before.Status != row.Status)
		if !had || changed {
			d.upserts = append(d.upserts, row)
		}
		switch {
		case !had && live:
			what := whatPartiallyRefunded
			if p.AmountTotal > 0 && cumulative >= p.AmountTotal {
				what = whatRefunded
			}
			d.events = append(d.events, refundEvent{row, cumulative, what})
		case changed && !live && refundLive(before.Status):
			d.events = append(d.events, refundEvent{row, cumulative, whatRefundReversed})
		}
	}
	d.next = p
	d.next.AmountRefunded = ch.AmountRefunded
	d.next.StripeChargeID = &ch.ID
	if ch.Disputed {
		d.next.Disputed = true
	}
	d.next.Status = paidStatus(p.Status, d.next.AmountTotal, d.next.AmountRefunded, disputeLost)
	if len(d.events) == 0 && d.next.Status != p.Status {
		d.what = string(d.next.Status)
	}
	return d
}

// applyCharge writes what decideCharge says, in one transaction with the
// purchase row locked.
func (r *Reconciler) applyCharge(ctx context.Context, ch *stripe.Charge, refunds []*stripe.Refund, rep *Report) error {
	if ch.PaymentIntent == nil {
		return nil
	}
	base, err := r.purchaseFor(ctx, ch.PaymentIntent.ID, rep)
	if errors.Is(err, store.ErrNotFound) {
		// A hosted order's session, just applied, may have named the intent.
		_, err := r.orderCharge(ctx, ch, refunds, rep)
		return err // else not a checkout payment of ours
	}
	if err != nil {
		return err
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		p, err := r.lockForUpdate(ctx, q, base, rep)
		if err != nil {
			return err
		}
		rows, err := q.PurchaseRefunds(ctx, p.ID)
		if err != nil {
			return err
		}
		recorded := make(map[string]store.Refund, len(rows))
		for _, row := range rows {
			recorded[row.ID] = row
		}
		lost, err := q.HasLostDispute(ctx, p.ID)
		if err != nil {
			return err
		}
		now := r.clock.Now()
		d := decideCharge(p, ch, refunds, recorded, lost, now)
		for _, row := range d.upserts {
			if _, _, err := q.UpsertRefund(ctx, row, now); err != nil {
				return err
			}
		}
		if err := r.writePurchase(ctx, q, p, d.next, now); err != nil {
			return err
		}
		for _, ev := range d.events {
			if err := r.record(ctx, q, rep, Change{Kind: kindRefund, ObjectID: ev.refund.ID, PurchaseID: p.ID, What: ev.what}); err != nil {
				return err
			}
			at := d.next
			at.AmountRefunded = ev.cumulative
			if ev.what == whatRefundReversed {
				err = r.ful.RefundReversed(ctx, q, d.next, ev.refund)
			} else {
				err = r.ful.Refunded(ctx, q, at, ev.refund)
			}
			if err != nil {
				return err
			}
		}
		if d.what != "" {
			return r.record(ctx, q, rep, Change{Kind: kindCharge, ObjectID: ch.ID, PurchaseID: p.ID, What: d.what})
		}
		return nil
	})
}

// lockForUpdate locks the purchase base was read from. In a dry run a
// purchase created earlier in the pass was rolled back, so base itself
// stands in for it.
func (r *Reconciler) lockForUpdate(ctx context.Context, q *store.Queries, base store.Purchase, rep *Report) (store.Purchase, error) {
	p, err := q.LockPurchase(ctx, base.ID)
	if errors.Is(err, store.ErrNotFound) && rep.DryRun {
		return base, nil
	}
	return p, err
}

// writePurchase writes next over p when they differ.
func (r *Reconciler) writePurchase(ctx context.Context, q *store.Queries, p, next store.Purchase, now time.Time) error {
	if equalPurchases(next, p) {
		return nil
	}
	next.CheckedAt = &now
	return q.UpdatePurchase(ctx, next, now)
}

// paidStatus is the status of a purchase that was paid, given what has
// been refunded and whether a dispute was lost. A purchase that was never
// paid keeps its status.
func paidStatus(current store.PurchaseStatus, total, refunded int64, disputeLost bool) store.PurchaseStatus {
	if !current.Paid() {
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

// disputeDecision is what a dispute changes on its purchase.
type disputeDecision struct {
	row   store.Dispute
	write bool           // the row is new or changed; nothing else happens otherwise
	next  store.Purchase // the purchase as the dispute says it is
	// opened: first seen (the operator is told); lost: lost since it was
	// last recorded (a full refund).
	opened, lost bool
	// conflict: the recorded status is final and the dispute now says
	// another final one (not expected from Stripe); the recorded one is
	// kept and the operator is told.
	conflict bool
}

// disputeFinal reports whether Stripe never moves a dispute in status s
// again: won, lost, and an inquiry closed without becoming a chargeback
// (warning_closed; an inquiry that escalates goes to needs_response
// first).
func disputeFinal(s string) bool {
	switch stripe.DisputeStatus(s) {
	case stripe.DisputeStatusWon, stripe.DisputeStatusLost, stripe.DisputeStatusWarningClosed:
		return true
	}
	return false
}

// staleDispute reports whether a dispute in status s, compared with its
// row recorded in status recorded, must not be applied, and whether that
// is a conflict between two final statuses. A final status is never left:
// a dispute that says otherwise is a snapshot older than the row (a list
// page read before a hint recorded the outcome), and applying it would
// take a loss back (the purchase completed again, its access granted
// again, and the loss's steps, scheduled once, not scheduled when it is
// seen again). One final status for another is not something Stripe does;
// which of the two is older cannot be told, so the recorded one stays and
// the operator is told (conflict) rather than refunding or un-refunding on
// a guess.
func staleDispute(recorded, s string) (stale, conflict bool) {
	if !disputeFinal(recorded) || recorded == s {
		return false, false
	}
	return true, disputeFinal(s)
}

// decideDispute compares a dispute with its purchase p and its recorded
// row (nil when none). A recorded final status is kept (staleDispute).
func decideDispute(p store.Purchase, d *stripe.Dispute, recorded *store.Dispute, now time.Time) disputeDecision {
	row := store.Dispute{ID: d.ID, PurchaseID: p.ID, Amount: d.Amount, Currency: strings.ToLower(string(d.Currency)),
		Status: string(d.Status), Reason: string(d.Reason), CreatedAt: timeOf(d.Created, now)}
	out := disputeDecision{row: row, next: p}
	if recorded != nil && recorded.Status == row.Status && recorded.Amount == row.Amount {
		return out
	}
	if recorded != nil {
		if stale, conflict := staleDispute(recorded.Status, row.Status); stale {
			out.row, out.conflict = *recorded, conflict
			return out
		}
	}
	out.write = true
	lost := d.Status == stripe.DisputeStatusLost
	out.next.Disputed = true
	out.next.Status = paidStatus(p.Status, p.AmountTotal, p.AmountRefunded, lost)
	out.opened = recorded == nil
	out.lost = lost && (recorded == nil || recorded.Status != string(stripe.DisputeStatusLost))
	return out
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
		return r.orderDispute(ctx, d, piID, rep) // order.go
	}
	if err != nil {
		return err
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		p, err := r.lockForUpdate(ctx, q, base, rep)
		if err != nil {
			return err
		}
		var recorded *store.Dispute
		switch row, err := q.GetDispute(ctx, d.ID); {
		case err == nil:
			recorded = &row
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		now := r.clock.Now()
		dd := decideDispute(p, d, recorded, now)
		if dd.conflict {
			return r.ful.Alert(ctx, q, "dispute_final:"+d.ID+":"+string(d.Status), steps.AlertArgs{
				SubjectKind: store.SubjectPurchase, SubjectID: p.ID, PurchaseID: p.ID, Pipeline: alertPipeline, Step: "dispute",
				LastError: "Dispute " + d.ID + " of purchase " + p.ID + " was recorded " + recorded.Status + " and Stripe now says " +
					string(d.Status) + ": paymentd keeps " + recorded.Status + "; check the dispute in the Stripe dashboard.",
			})
		}
		if !dd.write {
			return nil
		}
		if _, _, err := q.UpsertDispute(ctx, dd.row, now); err != nil {
			return err
		}
		if err := r.writePurchase(ctx, q, p, dd.next, now); err != nil {
			return err
		}
		if dd.opened {
			if err := r.record(ctx, q, rep, Change{Kind: kindDispute, ObjectID: d.ID, PurchaseID: p.ID, What: whatDisputed}); err != nil {
				return err
			}
			if err := r.ful.DisputeOpened(ctx, q, dd.next, dd.row); err != nil {
				return err
			}
		}
		if dd.lost {
			if err := r.record(ctx, q, rep, Change{Kind: kindDispute, ObjectID: d.ID, PurchaseID: p.ID, What: whatDisputeLost}); err != nil {
				return err
			}
			return r.ful.DisputeLost(ctx, q, dd.next, dd.row)
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
