// Checkout sessions: a session's current state decides its purchase's
// status. Paid means completed (and the purchase pipeline scheduled);
// expired means expired (and the abandoned-checkout step scheduled); a
// complete but unpaid session waits for its asynchronous payment, and a
// failed one means failed. Only paymentd's own sessions become purchases
// (see adopt); every decision here is a pure function of what Stripe said
// and what the database holds, and the transaction that writes it is thin.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// sessionState is what a Checkout Session means for its purchase.
type sessionState string

const (
	sessionOpen    sessionState = "open"    // the buyer has not finished
	sessionPaid    sessionState = "paid"    // complete and paid (or nothing to pay)
	sessionUnpaid  sessionState = "unpaid"  // complete, its asynchronous payment still pending
	sessionFailed  sessionState = "failed"  // complete, its asynchronous payment failed
	sessionExpired sessionState = "expired" // expired unpaid
)

// stateOf is the one reading of a session's state. A complete, unpaid
// session's payment intent (expanded, see stripeapi) tells a pending
// asynchronous payment from a failed one; without it the session reads as
// unpaid.
func stateOf(s *stripe.CheckoutSession) sessionState {
	switch {
	case s.Status == stripe.CheckoutSessionStatusExpired:
		return sessionExpired
	case s.Status == stripe.CheckoutSessionStatusComplete && (s.PaymentStatus == stripe.CheckoutSessionPaymentStatusPaid ||
		s.PaymentStatus == stripe.CheckoutSessionPaymentStatusNoPaymentRequired):
		return sessionPaid
	case s.Status == stripe.CheckoutSessionStatusComplete:
		if pi := s.PaymentIntent; pi != nil && (pi.Status == stripe.PaymentIntentStatusCanceled ||
			pi.Status == stripe.PaymentIntentStatusRequiresPaymentMethod) {
			return sessionFailed
		}
		return sessionUnpaid
	}
	return sessionOpen
}

// Report vocabulary: what a change did.
const (
	whatCreated           = "created"
	whatCompleted         = "completed"
	whatExpired           = "expired"
	whatFailed            = "failed"
	whatRefunded          = "refunded"
	whatPartiallyRefunded = "partially_refunded"
	whatRefundReversed    = "refund_reversed"
	whatDisputed          = "disputed"
	whatDisputeLost       = "dispute_lost"
)

// Kinds of object a change or an error concerns.
const (
	kindSession       = "session"
	kindCharge        = "charge"
	kindRefund        = "refund"
	kindDispute       = "dispute"
	kindPaymentIntent = "payment_intent"
	kindAccess        = "access"
)

// SkipReason says why a Checkout Session is not paymentd's and is left
// alone: never recorded as a purchase, never emailed.
type SkipReason string

// Skip reasons.
const (
	// SkipNotPaymentMode: a setup-mode ("save a card") or subscription-mode
	// session, without paymentd's metadata.
	SkipNotPaymentMode SkipReason = "not_payment_mode"
	// SkipNoLookupKey: no line item's price has a lookup key (a donation
	// Payment Link, an ad-hoc price).
	SkipNoLookupKey SkipReason = "no_lookup_key"
	// SkipUnknownProduct: the prices' lookup keys name no configured product.
	SkipUnknownProduct SkipReason = "unknown_product"
)

// adoption is the decision on a session paymentd has no row for.
type adoption struct {
	skip       SkipReason // "" means: paymentd's, record it
	productKey string
	quantity   int64
}

// adopt decides whether a session paymentd has no row for is paymentd's:
// it carries paymentd's metadata (a purchase_id that is a UUID and a
// product that is a configured one-time product, as paymentd's checkout
// always sets them), or it is in payment mode with a line item whose
// price's lookup key is a configured product (a Payment Link for our
// product). Metadata can only be set with the account's secret key, but
// another integration on the same account (another app, a staging
// paymentd in test mode) may set a purchase_id of its own: without one of
// our products named, its session is judged by its line items alone, like
// any other. The amounts still come from Stripe's own fields. items are the
// session's line items; products are the configured products, by key.
func adopt(s *stripe.CheckoutSession, items []*stripe.LineItem, products map[string]config.Product) adoption {
	lookupKey := func(li *stripe.LineItem) string {
		if li.Price == nil {
			return ""
		}
		return li.Price.LookupKey
	}
	quantityOf := func(key string) int64 {
		for _, li := range items {
			if lookupKey(li) == key && li.Quantity > 0 {
				return li.Quantity
			}
		}
		if len(items) > 0 && items[0].Quantity > 0 {
			return items[0].Quantity
		}
		return 1
	}
	if _, err := uuid.Parse(s.Metadata["purchase_id"]); err == nil {
		key := s.Metadata["product"]
		if p, ok := products[key]; ok && !p.IsSubscription() {
			return adoption{productKey: key, quantity: quantityOf(key)}
		}
	}
	if s.Mode != stripe.CheckoutSessionModePayment {
		return adoption{skip: SkipNotPaymentMode}
	}
	anyKey := false
	for _, li := range items {
		k := lookupKey(li)
		if _, ok := products[k]; ok && k != "" {
			return adoption{productKey: k, quantity: quantityOf(k)}
		}
		anyKey = anyKey || k != ""
	}
	if anyKey {
		return adoption{skip: SkipUnknownProduct}
	}
	return adoption{skip: SkipNoLookupKey}
}

// sessionFacts is what Stripe says about a session: the session with its
// expansions, its state, and its line items when they were needed.
type sessionFacts struct {
	s     *stripe.CheckoutSession
	state sessionState
	items []*stripe.LineItem
	// paidAt is Stripe's time of the payment (see paidAt); zero when
	// Stripe says none.
	paidAt time.Time
}

// facts reads a session. A second call is made only when the session came
// without its expansions (its payment intent's status, for a complete but
// unpaid session) or, when withItems is set, with more line items than
// fit in the expansion.
func (r *Reconciler) facts(ctx context.Context, s *stripe.CheckoutSession, withItems bool) (sessionFacts, error) {
	if pi := s.PaymentIntent; pi != nil && pi.ID != "" && pi.Status == "" &&
		s.Status == stripe.CheckoutSessionStatusComplete && s.PaymentStatus == stripe.CheckoutSessionPaymentStatusUnpaid {
		full, err := r.stripe.PaymentIntent(ctx, pi.ID)
		if err != nil {
			return sessionFacts{}, fmt.Errorf("retrieve payment intent: %w", err)
		}
		copied := *s
		copied.PaymentIntent = full
		s = &copied
	}
	f := sessionFacts{s: s, state: stateOf(s), paidAt: paidAt(s)}
	if !withItems {
		return f, nil
	}
	if s.LineItems != nil && !s.LineItems.HasMore {
		f.items = s.LineItems.Data
		return f, nil
	}
	if err := r.stripe.ListLineItems(ctx, s.ID, func(li *stripe.LineItem) error {
		f.items = append(f.items, li)
		return nil
	}); err != nil {
		return f, fmt.Errorf("list line items: %w", err)
	}
	return f, nil
}

// paidAt is Stripe's time of a session's payment, from its expanded
// payment intent: its latest charge's creation when that is expanded too,
// else the intent's (Checkout creates the intent when the buyer pays).
func paidAt(s *stripe.CheckoutSession) time.Time {
	pi := s.PaymentIntent
	switch {
	case pi == nil:
		return time.Time{}
	case pi.LatestCharge != nil && pi.LatestCharge.Created > 0:
		return time.Unix(pi.LatestCharge.Created, 0).UTC()
	case pi.Created > 0:
		return time.Unix(pi.Created, 0).UTC()
	}
	return time.Time{}
}

// sessionResult is what applying a session did to its purchase.
type sessionResult struct {
	purchase store.Purchase
	found    bool // a purchase exists (or was created) for the session
	// wasFinal: the purchase had already left pending before this call.
	wasFinal bool
	// skipped says why the session is not paymentd's ("" when it is).
	skipped SkipReason
}

// applySession makes the session's purchase agree with s. A claimant, when
// set, is the verified user claiming the session (see Claim).
func (r *Reconciler) applySession(ctx context.Context, s *stripe.CheckoutSession, c *Claimant, rep *Report) error {
	_, err := r.applySessionResult(ctx, s, c, rep, false)
	return err
}

// applySessionResult applies a session in one transaction, its purchase
// row locked. A session paymentd has no row for is recorded only when
// adopt says it is paymentd's; one that is not is counted as skipped, and
// a claim of it finds no session. walk is set when a walk of the lists
// applies the session (see Fulfillment.Completed).
func (r *Reconciler) applySessionResult(ctx context.Context, s *stripe.CheckoutSession, c *Claimant, rep *Report,
	walk bool) (sessionResult, error) {
	if isOrderSession(s) {
		// A cart's session is an order's, never a purchase (order.go).
		if c != nil {
			return sessionResult{}, fmt.Errorf("%w: the session of an order", ErrUnknownSession)
		}
		return sessionResult{}, r.applyOrderSession(ctx, s, rep)
	}
	if routedToSubscription(s) {
		_, err := r.sessionSubscription(ctx, s, c, rep)
		return sessionResult{skipped: SkipNotPaymentMode}, err
	}
	rep.seen(1)
	// Learn what needs a Stripe call before taking row locks: the line
	// items matter only for a session without a row, and only when it is
	// no longer open.
	f, err := r.facts(ctx, s, stateOf(s) != sessionOpen)
	if err != nil {
		return sessionResult{}, err
	}
	it := &sessionItem{f: f, a: adopt(s, f.items, r.products)}
	err = r.inTx(ctx, rep, func(q *store.Queries) error {
		return r.writeSessions(ctx, q, []*sessionItem{it}, c, rep, walk)
	})
	if err == nil && it.res.skipped != "" {
		rep.skip(s.ID, it.res.skipped)
		if c != nil {
			return it.res, fmt.Errorf("%w: not a paymentd session (%s)", ErrUnknownSession, it.res.skipped)
		}
	}
	return it.res, err
}

// sessionItem is one session to write: what Stripe said, the adoption
// decision, and (once written) what writing it did.
type sessionItem struct {
	f   sessionFacts
	a   adoption
	res sessionResult
}

// errCreatedMeanwhile means a purchase this transaction meant to create
// was created by another one first; applying the session again finds it.
var errCreatedMeanwhile = errors.New("the purchase was created concurrently; retried")

// sessionChange is a change writeSessions reports and acts on.
type sessionChange struct {
	sessionID string
	p         store.Purchase
	what      string
}

// writeSessions makes the purchases of the given sessions agree with them,
// in the caller's transaction, with their rows locked: what it must know
// is read in one round trip, decideSessions says what to write, new rows
// are inserted in one statement and changed ones updated in one round
// trip, and the pipelines of the batch are scheduled in the same
// transaction. A claimant, when set, is the verified user claiming the
// (single) session; walk is set when a walk of the lists writes them.
func (r *Reconciler) writeSessions(ctx context.Context, q *store.Queries, items []*sessionItem, c *Claimant, rep *Report,
	walk bool) error {
	ids := make([]string, len(items))
	var candidates []string
	for i, it := range items {
		ids[i] = it.f.s.ID
		if id := it.f.s.Metadata["purchase_id"]; it.a.skip == "" {
			if _, err := uuid.Parse(id); err == nil {
				candidates = append(candidates, id)
			}
		}
	}
	st, err := q.LockSessionWrite(ctx, ids, candidates)
	if err != nil {
		return err
	}
	w, err := decideSessions(items, st.Rows, st.Taken, c, r.clock.Now())
	if err != nil {
		return err
	}
	inserted, err := q.InsertPurchases(ctx, w.inserts)
	if err != nil {
		return err
	}
	if len(inserted) != len(w.inserts) {
		return errCreatedMeanwhile
	}
	if err := q.UpdatePurchases(ctx, w.updates, w.now); err != nil {
		return err
	}
	var completed []store.Purchase
	for _, ch := range w.changes {
		r.report(rep, Change{Kind: kindSession, ObjectID: ch.sessionID, PurchaseID: ch.p.ID, What: ch.what,
			Unannounced: !st.Hinted[ch.sessionID]})
		if ch.what == whatCompleted {
			completed = append(completed, ch.p) // scheduled together, below
			continue
		}
		if err := r.sessionTransition(ctx, q, ch.p, ch.what); err != nil {
			return err
		}
	}
	if err := r.ful.Completed(ctx, q, completed, walk); err != nil {
		return err
	}
	for _, p := range w.claimed {
		if err := r.ful.Claimed(ctx, q, p); err != nil {
			return err
		}
	}
	return nil
}

// sessionWrites is what decideSessions decided: the rows to insert and to
// update, the changes to report and act on, in order, and the purchases a
// claim gave a user after they were completed.
type sessionWrites struct {
	now              time.Time
	inserts, updates []store.Purchase
	changes          []sessionChange
	claimed          []store.Purchase
}

// decideSessions decides, for each session, what its purchase should be
// given its locked row (rows, by session id; none when not recorded) and
// the purchase ids already taken, and fills in each item's result. A
// session without a row is recorded only when it is no longer open and
// adopt took it, under its metadata's purchase id unless that id is not
// ours or is taken. A claimant may not claim another user's purchase; one
// who claims a purchase without a user makes it theirs, and when it was
// recorded past pending before (the webhook won the race with the
// buyer's browser) it is listed in claimed: what needed the user at
// completion was not scheduled then.
func decideSessions(items []*sessionItem, rows map[string]store.Purchase, taken map[string]bool, c *Claimant,
	now time.Time) (sessionWrites, error) {
	w := sessionWrites{now: now}
	for _, it := range items {
		s := it.f.s
		p, found := rows[s.ID]
		switch {
		case found:
			it.res.wasFinal = p.Status != store.PurchasePending
		case it.f.state == sessionOpen:
			continue // nothing to record until it completes or expires
		case it.a.skip != "":
			it.res.skipped = it.a.skip
			continue
		default:
			id := s.Metadata["purchase_id"]
			if _, err := uuid.Parse(id); err != nil || taken[id] {
				id = uuid.NewString() // not ours to reuse, or taken by another session's row
			}
			taken[id] = true
			var err error
			if p, err = newPurchase(s, it.a, id, now); err != nil {
				return w, err
			}
		}
		it.res.found = true
		if c != nil && p.UserID != nil && *p.UserID != c.UserID {
			return w, ErrNotYours // recorded for another user
		}
		next, what := nextSessionState(p, it.f, now)
		attached := c != nil && p.UserID == nil
		if attached {
			next.UserID = &c.UserID // a Payment Link purchase, claimed by its buyer's verified email
		}
		it.res.purchase = p
		if found && equalPurchases(next, p) {
			continue // matches: write nothing
		}
		next.CheckedAt = &now
		it.res.purchase = next
		if found {
			w.updates = append(w.updates, next)
		} else {
			w.inserts = append(w.inserts, next)
			w.changes = append(w.changes, sessionChange{s.ID, next, whatCreated})
		}
		if what != "" {
			w.changes = append(w.changes, sessionChange{s.ID, next, what})
		}
		if attached && found && p.Status != store.PurchasePending {
			w.claimed = append(w.claimed, next)
		}
	}
	return w, nil
}

// sessionTransition schedules what a lifecycle transition sets in motion,
// in the transaction that recorded it.
func (r *Reconciler) sessionTransition(ctx context.Context, q *store.Queries, p store.Purchase, what string) error {
	switch what {
	case whatCompleted:
		return r.ful.Completed(ctx, q, []store.Purchase{p}, false)
	case whatExpired:
		return r.ful.Expired(ctx, q, p)
	case whatFailed:
		return r.ful.PaymentFailed(ctx, q, p)
	}
	return nil
}

// newPurchase is the pending row of an adopted session: product and
// quantity as adopt found them, amount and currency as Stripe says, created
// when Stripe created the session.
func newPurchase(s *stripe.CheckoutSession, a adoption, id string, now time.Time) (store.Purchase, error) {
	currency := strings.ToLower(string(s.Currency))
	if currency == "" {
		return store.Purchase{}, fmt.Errorf("session %s has no currency", s.ID)
	}
	p := store.Purchase{
		ID: id, ProductKey: a.productKey, Quantity: int(a.quantity), Status: store.PurchasePending, StripeSessionID: s.ID,
		AmountTotal: s.AmountTotal, Currency: currency, AccessState: store.AccessNone,
		CreatedAt: timeOf(s.Created, now), UpdatedAt: now,
	}
	if u := s.Metadata["user_id"]; u != "" {
		p.UserID = &u
	} else if s.ClientReferenceID != "" {
		p.UserID = &s.ClientReferenceID
	}
	if e := sessionEmail(s); e != "" {
		p.Email = &e
	}
	if s.ExpiresAt > 0 {
		t := timeOf(s.ExpiresAt, now)
		p.SessionExpiresAt = &t
	}
	p.ConsentRequired = s.ConsentCollection != nil && s.ConsentCollection.Promotions == "auto"
	return p, nil
}

// nextSessionState returns p as the session says it should be at now, and
// the lifecycle transition that takes it there ("" when only details
// change). A purchase's status only moves forward: a paid purchase is never
// made pending, expired or failed again. Times are Stripe's: completed_at
// is when the payment was made, expired_at the earlier of the session's
// expires_at and now (the first time it is seen expired: a session expired
// early through the API or the Dashboard expired no later than that).
func nextSessionState(p store.Purchase, f sessionFacts, now time.Time) (store.Purchase, string) {
	s := f.s
	next := p
	if next.SessionExpiresAt == nil && s.ExpiresAt > 0 {
		t := timeOf(s.ExpiresAt, now)
		next.SessionExpiresAt = &t
	}
	if next.Email == nil {
		if e := sessionEmail(s); e != "" {
			next.Email = &e
		}
	}
	if s.Consent != nil && s.Consent.Promotions != "" {
		yes := s.Consent.Promotions == stripe.CheckoutSessionConsentPromotionsOptIn
		next.PromotionsConsent = &yes
	}
	what := ""
	switch f.state {
	case sessionPaid:
		if s.Customer != nil && s.Customer.ID != "" {
			next.StripeCustomerID = &s.Customer.ID
		}
		if s.PaymentIntent != nil && s.PaymentIntent.ID != "" {
			next.StripePaymentIntentID = &s.PaymentIntent.ID
		}
		next.AmountTotal = s.AmountTotal
		if s.Currency != "" {
			next.Currency = strings.ToLower(string(s.Currency))
		}
		if p.Status == store.PurchasePending || p.Status == store.PurchaseExpired || p.Status == store.PurchaseFailed {
			next.Status = store.PurchaseCompleted
			at := completedAt(p, f, now)
			next.CompletedAt = &at
			what = whatCompleted
		}
	case sessionUnpaid:
		if s.PaymentIntent != nil && s.PaymentIntent.ID != "" {
			next.StripePaymentIntentID = &s.PaymentIntent.ID
		}
	case sessionFailed:
		if p.Status == store.PurchasePending {
			next.Status = store.PurchaseFailed
			what = whatFailed
		}
	case sessionExpired:
		if s.AfterExpiration != nil && s.AfterExpiration.Recovery != nil && s.AfterExpiration.Recovery.URL != "" {
			next.RecoveryURL = &s.AfterExpiration.Recovery.URL
		}
		if next.ExpiredAt == nil && (p.Status == store.PurchasePending || p.Status == store.PurchaseExpired) {
			at := now
			if next.SessionExpiresAt != nil && next.SessionExpiresAt.Before(now) {
				at = *next.SessionExpiresAt
			}
			next.ExpiredAt = &at
		}
		if p.Status == store.PurchasePending {
			next.Status = store.PurchaseExpired
			what = whatExpired
		}
	}
	return next, what
}

// completedAt is when a session's purchase was paid, as Stripe tells it:
// the charge's time. An asynchronous payment (a bank debit) is created
// when the buyer submits it and succeeds days later; when the purchase was
// already seen waiting for it, it succeeded after that, so it counts from
// now, the first time it is seen paid. A session with nothing to pay (a
// 100% discount) has no charge: it completed no later than now and no
// later than its expiry.
func completedAt(p store.Purchase, f sessionFacts, now time.Time) time.Time {
	switch {
	case p.Status == store.PurchasePending && p.StripePaymentIntentID != nil:
		return now
	case !f.paidAt.IsZero():
		if f.paidAt.After(now) {
			return now
		}
		return f.paidAt
	case f.s.ExpiresAt > 0 && time.Unix(f.s.ExpiresAt, 0).Before(now):
		return time.Unix(f.s.ExpiresAt, 0).UTC()
	}
	return now
}

func sessionEmail(s *stripe.CheckoutSession) string {
	if s.CustomerDetails != nil && s.CustomerDetails.Email != "" {
		return s.CustomerDetails.Email
	}
	return s.CustomerEmail
}
