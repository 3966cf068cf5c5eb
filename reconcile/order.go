// Orders: a cart's checkout, keyed by its Stripe object (the Checkout
// Session of a hosted order, the PaymentIntent of an embedded one). As for
// purchases, a signal only names the object: the reconciler reads it from
// Stripe and decideOrder says, from what Stripe says and what the row
// holds, what the order becomes and what happens to its stock; a late or
// repeated signal finds the row already there and changes nothing. An
// order row is always written by paymentd before its Stripe object exists
// (its lines and stock cannot come from anywhere else), so "adopting" an
// object means matching its metadata's order_id to a row: an intent or a
// session without one is not an order, and an intent Checkout made for a
// hosted order's session is reconciled through its session, never as an
// embedded order.
package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// OrderFulfillment turns an order's transitions into scheduled steps. The
// reconciler calls it inside the transaction that records the transition,
// so the order row and its steps commit together; every method must be
// idempotent (steps are unique per order, pipeline and name).
type OrderFulfillment interface {
	// OrderPaid schedules the order pipeline: confirmation with its lines,
	// admin notification, access for each line whose product grants it.
	OrderPaid(ctx context.Context, q *store.Queries, o store.Order, lines []store.OrderLine) error
	// OrderPaymentFailed schedules the recovery email of a declined
	// attempt on the order's PaymentIntent, once per intent.
	OrderPaymentFailed(ctx context.Context, q *store.Queries, o store.Order) error
	// OrderRefunded schedules the refund pipeline of refund r, once per
	// refund; o.AmountRefunded is the cumulative amount refunded.
	OrderRefunded(ctx context.Context, q *store.Queries, o store.Order, r store.OrderRefund) error
	// OrderRefundReversed handles refund r, recorded live, having failed or
	// been canceled, once per refund: o is the order as the reversal
	// leaves it; when it is paid for again (entitled) its access is given
	// back; the operator is always told.
	OrderRefundReversed(ctx context.Context, q *store.Queries, o store.Order, r store.OrderRefund) error
	// OrderDisputeLost treats lost dispute d as a full refund of the
	// order without the customer email (access taken back), once per
	// dispute; o is the order as the loss leaves it.
	OrderDisputeLost(ctx context.Context, q *store.Queries, o store.Order, d store.OrderDispute) error
	// RepairOrderAccess schedules, in q's transaction, what brings the
	// order's GitHub access back to want (the access drift pass found it
	// otherwise on GitHub or in the grants).
	RepairOrderAccess(ctx context.Context, q *store.Queries, o store.Order, want store.AccessState) error
}

// Report vocabulary of orders, beside the purchases'.
const (
	kindOrder         = "order"
	whatPaid          = "paid"
	whatProcessing    = "processing"
	whatCanceled      = "canceled"
	whatPaymentFailed = "payment_failed"
	whatStockShort    = "stock_short"
)

// stockMove is what an order's transition does to the stock it holds.
type stockMove uint8

const (
	stockKeep    stockMove = iota
	stockCommit            // paid: the units are sold
	stockRelease           // ended unpaid: the units are available again
)

// orderFacts is what Stripe says about an order's object: its intent
// (embedded), or its session with its line items (hosted).
type orderFacts struct {
	pi    *stripe.PaymentIntent
	s     *stripe.CheckoutSession
	items []*stripe.LineItem
}

// orderDecision is what decideOrder decided.
type orderDecision struct {
	next  store.Order
	what  string // "" when the status did not change
	stock stockMove
	// lines, when set, replace the order's lines (a hosted order paid:
	// its lines as Stripe computed them).
	lines []store.OrderLine
	// failed: a new declined attempt to tell the buyer about.
	failed bool
}

// decideOrder compares order o with what Stripe says and returns what to
// write. It is pure: equal inputs decide the same, and a decision applied
// once decides nothing the second time.
func decideOrder(o store.Order, f orderFacts, lines []store.OrderLine, now time.Time) orderDecision {
	d := orderDecision{next: o}
	switch {
	case f.pi != nil && o.UIMode == store.UIModeEmbedded:
		decideIntent(&d, f.pi, now)
	case f.s != nil && o.UIMode == store.UIModeHosted:
		decideSession(&d, f, lines, now)
	}
	return d
}

// decideIntent reads an embedded order's PaymentIntent.
func decideIntent(d *orderDecision, pi *stripe.PaymentIntent, now time.Time) {
	o := &d.next
	if o.StripePaymentIntentID == nil {
		id := pi.ID
		o.StripePaymentIntentID = &id
	}
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded:
		if !o.Status.Paid() {
			paidAt := timeOf(pi.Created, now)
			if ch := pi.LatestCharge; ch != nil && ch.ID != "" {
				id := ch.ID
				o.StripeChargeID = &id
				paidAt = timeOf(ch.Created, paidAt)
			}
			o.Status, o.PaidAt, o.EndedAt, o.LastPaymentError = store.OrderPaid, &paidAt, nil, nil
			d.what, d.stock = whatPaid, stockCommit
		}
	case stripe.PaymentIntentStatusProcessing:
		if o.Status == store.OrderPending {
			o.Status, d.what = store.OrderProcessing, whatProcessing
		}
	case stripe.PaymentIntentStatusCanceled:
		if o.Status.Open() {
			o.Status, o.EndedAt = store.OrderCanceled, &now
			d.what, d.stock = whatCanceled, stockRelease
		}
	case stripe.PaymentIntentStatusRequiresPaymentMethod:
		if o.Status == store.OrderProcessing {
			o.Status = store.OrderPending // a bank debit failed: the buyer may try again
		}
		// A decline is seen as the intent's last error: FailedAttempts
		// counts the distinct ones seen (the same decline twice between
		// two looks counts once); the buyer hears of the first.
		if e := pi.LastPaymentError; e != nil && o.Status.Open() {
			msg := declineOf(e)
			if o.LastPaymentError == nil || *o.LastPaymentError != msg {
				d.failed = o.LastPaymentError == nil
				o.FailedAttempts++
				o.LastPaymentError = &msg
				if d.what == "" {
					d.what = whatPaymentFailed
				}
			}
		}
	}
}

// declineOf is what the order keeps of a declined attempt: the decline
// code, else the error code, else Stripe's message; never card data.
func declineOf(e *stripe.Error) string {
	switch {
	case e.DeclineCode != "":
		return string(e.DeclineCode)
	case e.Code != "":
		return string(e.Code)
	}
	return e.Msg
}

// decideSession reads a hosted order's Checkout Session.
func decideSession(d *orderDecision, f orderFacts, lines []store.OrderLine, now time.Time) {
	o, s := &d.next, f.s
	if o.StripeSessionID == nil {
		id := s.ID
		o.StripeSessionID = &id
	}
	if pi := s.PaymentIntent; pi != nil && pi.ID != "" && o.StripePaymentIntentID == nil {
		id := pi.ID
		o.StripePaymentIntentID = &id
	}
	switch stateOf(s) {
	case sessionPaid:
		if o.Status.Paid() {
			return
		}
		at := paidAt(s)
		if at.IsZero() {
			at = now
		}
		if pi := s.PaymentIntent; pi != nil && pi.LatestCharge != nil && pi.LatestCharge.ID != "" {
			id := pi.LatestCharge.ID
			o.StripeChargeID = &id
		}
		if s.CustomerDetails != nil && s.CustomerDetails.Email != "" && o.Email == nil {
			email := s.CustomerDetails.Email
			o.Email = &email
		}
		if s.Customer != nil && s.Customer.ID != "" {
			id := s.Customer.ID
			o.StripeCustomerID = &id
		}
		o.AmountSubtotal, o.AmountTotal = s.AmountSubtotal, s.AmountTotal
		if td := s.TotalDetails; td != nil {
			o.AmountDiscount, o.AmountTax = td.AmountDiscount, td.AmountTax
		}
		o.Status, o.PaidAt, o.EndedAt = store.OrderPaid, &at, nil
		d.what, d.stock = whatPaid, stockCommit
		d.lines = linesFromItems(o.ID, lines, f.items)
	case sessionUnpaid:
		if o.Status == store.OrderPending {
			o.Status, d.what = store.OrderProcessing, whatProcessing
		}
	case sessionFailed:
		if o.Status.Open() {
			o.Status, o.EndedAt = store.OrderFailed, &now
			d.what, d.stock = whatFailed, stockRelease
		}
	case sessionExpired:
		if o.Status.Open() {
			o.Status, o.EndedAt = store.OrderExpired, &now
			d.what, d.stock = whatExpired, stockRelease
		}
	}
}

// linesFromItems is the order's lines with each one's amounts as the
// session's line item of the same position says (the session was made
// with one item per line, in order). Without items, or when they do not
// match the lines, the lines are kept as recorded.
func linesFromItems(orderID string, lines []store.OrderLine, items []*stripe.LineItem) []store.OrderLine {
	if len(lines) == 0 || len(items) != len(lines) {
		return nil
	}
	out := make([]store.OrderLine, len(lines))
	for i, l := range lines {
		li := items[i]
		if li.Quantity != int64(l.Quantity) {
			return nil
		}
		l.OrderID = orderID
		if li.Price != nil {
			l.UnitAmount = li.Price.UnitAmount
		}
		l.AmountSubtotal, l.AmountDiscount, l.AmountTax, l.AmountTotal = li.AmountSubtotal, li.AmountDiscount, li.AmountTax, li.AmountTotal
		out[i] = l
	}
	return out
}

// orderIDOf is the order id in a Stripe object's metadata, "" when there
// is none (not an order).
func orderIDOf(md map[string]string) string {
	id := md["order_id"]
	if _, err := uuid.Parse(id); err != nil {
		return ""
	}
	return id
}

// isOrderSession reports whether a Checkout Session is a hosted order's.
func isOrderSession(s *stripe.CheckoutSession) bool { return orderIDOf(s.Metadata) != "" }

// orderObject reconciles the order a PaymentIntent belongs to, if any: it
// reports false when the intent is not an order's (a purchase's session
// intent, or someone else's), for the caller to handle as before.
func (r *Reconciler) orderObject(ctx context.Context, piID string, rep *Report) (bool, error) {
	o, err := r.db.OrderByPaymentIntent(ctx, piID)
	switch {
	case err == nil:
		return true, r.reconcileOrder(ctx, o, rep)
	case !errors.Is(err, store.ErrNotFound):
		return true, err
	}
	// A purchase's intent (payment_intent.* events come for Checkout's
	// intents too) goes its way without a look at the intent.
	switch _, err := r.db.PurchaseByPaymentIntent(ctx, piID); {
	case err == nil:
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return true, err
	}
	pi, err := r.stripe.PaymentIntent(ctx, piID)
	if err != nil {
		return true, err
	}
	id := orderIDOf(pi.Metadata)
	if id == "" {
		return false, nil
	}
	rep.seen(1)
	o, err = r.db.GetOrder(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		r.log.Warn("payment intent names an order paymentd does not have; left alone", "stripe_payment_intent_id", piID, "order_id", id)
		return true, nil
	}
	if err != nil {
		return true, err
	}
	if o.UIMode == store.UIModeHosted {
		// Checkout's own intent: its session decides.
		s, err := r.stripe.CheckoutSessionByPaymentIntent(ctx, piID)
		if err != nil || s == nil {
			return true, err
		}
		return true, r.applyOrderSession(ctx, s, rep)
	}
	if o.StripePaymentIntentID != nil && *o.StripePaymentIntentID != piID {
		r.log.Warn("a second payment intent names an order; left alone", "stripe_payment_intent_id", piID, "order_id", id)
		return true, nil
	}
	if pi, err = r.withCharge(ctx, o, pi); err != nil {
		return true, err
	}
	return true, r.applyOrder(ctx, o.ID, orderFacts{pi: pi}, rep)
}

// reconcileOrder reads order o's Stripe object and applies it. An
// embedded order past its expiry whose intent can still be paid is
// canceled first (its stock is held no longer). An order with no Stripe
// object recorded (paymentd stopped between the two) is looked up by its
// metadata; past its expiry without one, it expires.
func (r *Reconciler) reconcileOrder(ctx context.Context, o store.Order, rep *Report) error {
	now := r.clock.Now()
	switch {
	case o.UIMode == store.UIModeHosted && o.StripeSessionID != nil:
		s, err := r.stripe.CheckoutSession(ctx, *o.StripeSessionID)
		if err != nil {
			return err
		}
		return r.applyOrderSession(ctx, s, rep)
	case o.UIMode == store.UIModeEmbedded && o.StripePaymentIntentID != nil:
		pi, err := r.stripe.PaymentIntent(ctx, *o.StripePaymentIntentID)
		if err != nil {
			return err
		}
		if o.Status.Open() && !now.Before(o.ExpiresAt) && cancelable(pi.Status) && !rep.DryRun {
			if pi, err = r.stripe.CancelPaymentIntent(ctx, pi.ID, "abandoned"); err != nil {
				return fmt.Errorf("cancel expired payment intent: %w", err)
			}
		}
		if pi, err = r.withCharge(ctx, o, pi); err != nil {
			return err
		}
		return r.applyOrder(ctx, o.ID, orderFacts{pi: pi}, rep)
	case o.UIMode == store.UIModeEmbedded:
		pis, err := r.stripe.PaymentIntentsByMetadata(ctx, "order_id", o.ID)
		if err != nil {
			return err
		}
		if len(pis) > 0 {
			pi, err := r.withCharge(ctx, o, pis[0])
			if err != nil {
				return err
			}
			return r.applyOrder(ctx, o.ID, orderFacts{pi: pi}, rep)
		}
	}
	if !o.Status.Open() || now.Before(o.ExpiresAt.Add(orderObjectGrace)) {
		return nil
	}
	// No Stripe object by now: the checkout never opened one the buyer
	// could pay (a session made after all expires by itself, and paying
	// it would still take the order to paid).
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		cur, err := q.LockOrder(ctx, o.ID)
		if err != nil || !cur.Status.Open() || cur.StripeObjectID() != "" {
			return err
		}
		cur.Status, cur.EndedAt = store.OrderExpired, &now
		return r.writeOrder(ctx, q, nil, orderDecision{next: cur, what: whatExpired, stock: stockRelease}, rep)
	})
}

// withCharge returns pi with its latest charge read in full when the
// intent pays an order not yet recorded as paid: the charge's time is the
// payment's (the intent was created at the checkout). One call, once per
// order.
func (r *Reconciler) withCharge(ctx context.Context, o store.Order, pi *stripe.PaymentIntent) (*stripe.PaymentIntent, error) {
	if o.Status.Paid() || pi.Status != stripe.PaymentIntentStatusSucceeded || pi.LatestCharge == nil ||
		pi.LatestCharge.ID == "" || pi.LatestCharge.Created > 0 {
		return pi, nil
	}
	ch, err := r.stripe.Charge(ctx, pi.LatestCharge.ID)
	if err != nil {
		return nil, fmt.Errorf("retrieve the charge of %s: %w", pi.ID, err)
	}
	copied := *pi
	copied.LatestCharge = ch
	return &copied, nil
}

// orderObjectGrace is how long past its expiry an order without a Stripe
// object waits before it expires (Stripe's search lags writes).
const orderObjectGrace = 5 * time.Minute

// cancelable reports whether a PaymentIntent in status st can be canceled
// (nothing is processing or paid).
func cancelable(st stripe.PaymentIntentStatus) bool {
	switch st {
	case stripe.PaymentIntentStatusRequiresPaymentMethod, stripe.PaymentIntentStatusRequiresConfirmation,
		stripe.PaymentIntentStatusRequiresAction:
		return true
	}
	return false
}

// applyOrderSession applies a hosted order's session: the order is found
// by the session id, else by the order id in its metadata.
func (r *Reconciler) applyOrderSession(ctx context.Context, s *stripe.CheckoutSession, rep *Report) error {
	rep.seen(1)
	o, err := r.db.OrderBySession(ctx, s.ID)
	if errors.Is(err, store.ErrNotFound) {
		o, err = r.db.GetOrder(ctx, orderIDOf(s.Metadata))
	}
	if errors.Is(err, store.ErrNotFound) {
		r.log.Warn("checkout session names an order paymentd does not have; left alone", "stripe_session_id", s.ID)
		return nil
	}
	if err != nil {
		return err
	}
	if o.UIMode != store.UIModeHosted || (o.StripeSessionID != nil && *o.StripeSessionID != s.ID) {
		r.log.Warn("checkout session names an order it does not pay; left alone", "stripe_session_id", s.ID, "order_id", o.ID)
		return nil
	}
	f := orderFacts{s: s}
	if st := stateOf(s); st == sessionPaid && !o.Status.Paid() {
		sf, err := r.facts(ctx, s, true)
		if err != nil {
			return err
		}
		f.s, f.items = sf.s, sf.items
	}
	return r.applyOrder(ctx, o.ID, f, rep)
}

// applyOrder decides and writes order id against f in one transaction,
// the order row locked.
func (r *Reconciler) applyOrder(ctx context.Context, id string, f orderFacts, rep *Report) error {
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		o, err := q.LockOrder(ctx, id)
		if err != nil {
			return err
		}
		lines, err := q.OrderLines(ctx, id)
		if err != nil {
			return err
		}
		d := decideOrder(o, f, lines, r.clock.Now())
		if d.what == "" && equalOrders(o, d.next) {
			return nil
		}
		return r.writeOrder(ctx, q, lines, d, rep)
	})
}

// writeOrder writes decision d in the caller's transaction: the stock
// moves, the row, the cart, the report and the steps.
func (r *Reconciler) writeOrder(ctx context.Context, q *store.Queries, lines []store.OrderLine, d orderDecision, rep *Report) error {
	now := r.clock.Now()
	o := d.next
	switch d.stock {
	case stockCommit:
		moved, err := q.CommitStock(ctx, o.ID, now)
		if err != nil {
			return err
		}
		if err := r.stockShort(ctx, q, &o, moved, rep); err != nil {
			return err
		}
	case stockRelease:
		if _, err := q.ReleaseStock(ctx, o.ID, now); err != nil {
			return err
		}
	}
	if d.lines != nil {
		if err := q.SetOrderLines(ctx, o.ID, d.lines); err != nil {
			return err
		}
		lines = d.lines
	}
	if err := q.UpdateOrder(ctx, o, now); err != nil {
		return err
	}
	if d.what == "" {
		return nil
	}
	if err := r.record(ctx, q, rep, Change{Kind: kindOrder, ObjectID: o.StripeObjectID(), PurchaseID: o.ID, What: d.what}); err != nil {
		return err
	}
	switch {
	case d.what == whatPaid:
		if err := q.TakeFromCart(ctx, o.UserID, lines, o.PromotionCode); err != nil {
			return err
		}
		if r.opts.Orders != nil {
			return r.opts.Orders.OrderPaid(ctx, q, o, lines)
		}
	case d.failed && r.opts.Orders != nil:
		return r.opts.Orders.OrderPaymentFailed(ctx, q, o)
	}
	return nil
}

// stockShort marks an order paid for units no longer on hand and alerts
// the operator, once per order: the order completes all the same.
func (r *Reconciler) stockShort(ctx context.Context, q *store.Queries, o *store.Order, moved []store.Reservation, rep *Report) error {
	short := 0
	for _, m := range moved {
		short += m.Short
	}
	if short == 0 {
		return nil
	}
	o.StockShort = true
	r.report(rep, Change{Kind: kindOrder, ObjectID: o.StripeObjectID(), PurchaseID: o.ID, What: whatStockShort})
	if r.ful == nil {
		return nil
	}
	return r.ful.Alert(ctx, q, "order_stock_short:"+o.ID, steps.AlertArgs{
		SubjectKind: store.SubjectOrder, SubjectID: o.ID, Pipeline: alertPipeline, Step: "commit stock",
		LastError: fmt.Sprintf("Order %s was paid for %d units beyond what was on hand (the stock was lowered while it "+
			"was open). It completed: ship or refund the missing units; `paymentd stock list` shows the oversold count.", o.ID, short),
	})
}

// equalOrders reports whether writing b over a would change nothing the
// reconciler owns.
func equalOrders(a, b store.Order) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	a.CheckedAt, b.CheckedAt = nil, nil
	return reflect.DeepEqual(a, b)
}

// orderCharge applies a charge of an order's PaymentIntent (its refunds);
// it reports false when the charge is not an order's.
func (r *Reconciler) orderCharge(ctx context.Context, ch *stripe.Charge, refunds []*stripe.Refund, rep *Report) (bool, error) {
	if ch.PaymentIntent == nil || ch.PaymentIntent.ID == "" {
		return false, nil
	}
	o, err := r.db.OrderByPaymentIntent(ctx, ch.PaymentIntent.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if !o.Status.Paid() && ch.Paid {
		// The refund came before the payment was seen: apply the payment.
		if err := r.reconcileOrder(ctx, o, rep); err != nil {
			return true, err
		}
	}
	return true, r.inTx(ctx, rep, func(q *store.Queries) error {
		o, err := q.LockOrder(ctx, o.ID)
		if err != nil || !o.Status.Paid() {
			return err
		}
		recorded, err := q.OrderRefunds(ctx, o.ID)
		if err != nil {
			return err
		}
		lost, err := q.OrderHasLostDispute(ctx, o.ID)
		if err != nil {
			return err
		}
		next, upserts, events := decideOrderRefunds(o, ch, refunds, recorded, lost)
		now := r.clock.Now()
		for _, u := range upserts {
			if err := q.UpsertOrderRefund(ctx, u, now); err != nil {
				return err
			}
		}
		if equalOrders(o, next) && len(events) == 0 {
			return nil
		}
		if err := q.UpdateOrder(ctx, next, now); err != nil {
			return err
		}
		for _, ev := range events {
			if err := r.record(ctx, q, rep, Change{Kind: kindRefund, ObjectID: ev.r.ID, PurchaseID: o.ID, What: ev.what}); err != nil {
				return err
			}
			if r.opts.Orders == nil {
				continue
			}
			if ev.what == whatRefundReversed {
				if err := r.opts.Orders.OrderRefundReversed(ctx, q, next, ev.r); err != nil {
					return err
				}
				continue
			}
			at := next
			at.AmountRefunded = ev.cumulative
			if err := r.opts.Orders.OrderRefunded(ctx, q, at, ev.r); err != nil {
				return err
			}
		}
		return nil
	})
}

// orderRefundEvent is a refund to report and schedule, with the amount
// refunded up to and including it.
type orderRefundEvent struct {
	r          store.OrderRefund
	cumulative int64
	what       string
}

// decideOrderRefunds compares a paid order's charge and refunds with what
// is recorded: the order's refunded amount and status are the charge's
// (refunded whatever they say once a dispute was lost), every refund row
// is upserted, and each refund that newly counts (seen for the first time,
// or no longer failed) is an event, oldest first, as decideCharge does for
// purchases: partial or full by what the live refunds of this snapshot
// add up to, so a refund recorded live that has since failed counts for
// nothing. A refund recorded live that is now failed or canceled is a
// reversal (whatRefundReversed).
func decideOrderRefunds(o store.Order, ch *stripe.Charge, refunds []*stripe.Refund, recorded []store.OrderRefund,
	disputeLost bool) (store.Order, []store.OrderRefund, []orderRefundEvent) {
	known := make(map[string]store.OrderRefund, len(recorded))
	for _, r := range recorded {
		known[r.ID] = r
	}
	sorted := append([]*stripe.Refund(nil), refunds...)
	slices.SortFunc(sorted, func(a, b *stripe.Refund) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	var upserts []store.OrderRefund
	var events []orderRefundEvent
	var cumulative int64
	for _, re := range sorted {
		row := store.OrderRefund{ID: re.ID, OrderID: o.ID, Amount: re.Amount, Currency: string(re.Currency),
			Status: string(re.Status), CreatedAt: timeOf(re.Created, time.Time{})}
		live := refundLive(row.Status)
		if live {
			cumulative += row.Amount
		}
		old, had := known[re.ID]
		if had && old.Amount == row.Amount && old.Status == row.Status {
			continue
		}
		upserts = append(upserts, row)
		switch {
		case live && (!had || !refundLive(old.Status)):
			what := whatPartiallyRefunded
			if cumulative >= o.AmountTotal {
				what = whatRefunded
			}
			events = append(events, orderRefundEvent{r: row, cumulative: min(cumulative, o.AmountTotal), what: what})
		case !live && had && refundLive(old.Status):
			events = append(events, orderRefundEvent{r: row, cumulative: min(cumulative, o.AmountTotal), what: whatRefundReversed})
		}
	}
	next := o
	next.AmountRefunded = min(ch.AmountRefunded, o.AmountTotal)
	switch {
	case disputeLost || (next.AmountRefunded >= o.AmountTotal && o.AmountTotal > 0):
		next.Status = store.OrderRefunded
	case next.AmountRefunded > 0:
		next.Status = store.OrderPartiallyRefunded
	default:
		next.Status = store.OrderPaid
	}
	return next, upserts, events
}

// orderDispute records a dispute of an order's payment and alerts the
// operator, once per dispute and status (paymentd does not answer
// disputes); a dispute newly lost counts as a full refund: the order is
// refunded and its access taken back.
func (r *Reconciler) orderDispute(ctx context.Context, d *stripe.Dispute, piID string, rep *Report) error {
	if piID == "" {
		return nil
	}
	o, err := r.db.OrderByPaymentIntent(ctx, piID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not ours
	}
	if err != nil {
		return err
	}
	if !o.Status.Paid() {
		// The dispute came before the payment was seen: apply the payment.
		if err := r.reconcileOrder(ctx, o, rep); err != nil {
			return err
		}
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		o, err := q.LockOrder(ctx, o.ID)
		if err != nil {
			return err
		}
		if !o.Status.Paid() {
			// Nothing is recorded, so a loss is not missed: retried later.
			return fmt.Errorf("dispute %s: the payment of order %s is not recorded yet", d.ID, o.ID)
		}
		var recorded *store.OrderDispute
		switch row, err := q.GetOrderDispute(ctx, d.ID); {
		case err == nil:
			recorded = &row
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		now := r.clock.Now()
		dd := decideOrderDispute(o, d, recorded, now)
		if recorded != nil && recorded.Status == dd.row.Status && recorded.Amount == dd.row.Amount {
			return nil // seen before as it is
		}
		if err := q.UpsertOrderDispute(ctx, dd.row, now); err != nil {
			return err
		}
		if r.ful != nil && (recorded == nil || recorded.Status != dd.row.Status) {
			if err := r.ful.Alert(ctx, q, fmt.Sprintf("order_dispute:%s:%s", d.ID, d.Status), steps.AlertArgs{
				SubjectKind: store.SubjectOrder, SubjectID: o.ID, Pipeline: alertPipeline, Step: "dispute",
				LastError: fmt.Sprintf("Order %s's payment is disputed (%s, %s, %d %s): answer it in the Stripe dashboard; "+
					"a lost dispute refunds the order and takes its access back.", o.ID, d.ID, d.Status, d.Amount, d.Currency),
			}); err != nil {
				return err
			}
		}
		if !dd.lost {
			return nil
		}
		if !equalOrders(o, dd.next) {
			if err := q.UpdateOrder(ctx, dd.next, now); err != nil {
				return err
			}
		}
		if err := r.record(ctx, q, rep, Change{Kind: kindDispute, ObjectID: d.ID, PurchaseID: o.ID, What: whatDisputeLost}); err != nil {
			return err
		}
		if r.opts.Orders == nil {
			return nil
		}
		return r.opts.Orders.OrderDisputeLost(ctx, q, dd.next, dd.row)
	})
}

// orderDisputeDecision is what a dispute changes on its order.
type orderDisputeDecision struct {
	row  store.OrderDispute
	next store.Order // the order as the dispute leaves it
	// lost: lost since it was last recorded (counts as a full refund).
	lost bool
}

// decideOrderDispute compares a dispute with its order o and its recorded
// row (o is paid). A dispute newly lost refunds the order in full (its
// refunded amount stays the charge's: no money was refunded, it was taken
// back). A recorded final status is kept, as for a purchase's dispute
// (staleDispute): the row stays as recorded, so nothing is written and
// OrderHasLostDispute keeps counting a loss.
func decideOrderDispute(o store.Order, d *stripe.Dispute, recorded *store.OrderDispute, now time.Time) orderDisputeDecision {
	row := store.OrderDispute{ID: d.ID, OrderID: o.ID, Amount: d.Amount, Currency: strings.ToLower(string(d.Currency)),
		Status: string(d.Status), Reason: string(d.Reason), CreatedAt: timeOf(d.Created, now)}
	if recorded != nil {
		row.CreatedAt, row.UpdatedAt = recorded.CreatedAt, recorded.UpdatedAt
		if stale, _ := staleDispute(recorded.Status, row.Status); stale {
			return orderDisputeDecision{row: *recorded, next: o}
		}
	}
	out := orderDisputeDecision{row: row, next: o}
	if d.Status != stripe.DisputeStatusLost || (recorded != nil && recorded.Status == string(stripe.DisputeStatusLost)) {
		return out
	}
	out.lost, out.next.Status = true, store.OrderRefunded
	return out
}
