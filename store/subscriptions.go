// Subscriptions and their invoices: one row per Stripe subscription
// paymentd sells and per invoice of one, written by the reconciler under
// the subscription's row lock, so its invoices and the steps they schedule
// change together with it.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SubscriptionStatus is Stripe's status of a subscription, as is. The
// subscriptions table's CHECK lists the same values (TestStatesMatchChecks).
type SubscriptionStatus string

// Subscription statuses (Stripe API version 2023-10-16).
const (
	SubscriptionTrialing          SubscriptionStatus = "trialing"
	SubscriptionActive            SubscriptionStatus = "active"
	SubscriptionPastDue           SubscriptionStatus = "past_due"
	SubscriptionUnpaid            SubscriptionStatus = "unpaid"
	SubscriptionCanceled          SubscriptionStatus = "canceled"
	SubscriptionIncomplete        SubscriptionStatus = "incomplete"
	SubscriptionIncompleteExpired SubscriptionStatus = "incomplete_expired"
	SubscriptionPaused            SubscriptionStatus = "paused"
)

// SubscriptionStatuses lists every SubscriptionStatus.
var SubscriptionStatuses = []SubscriptionStatus{SubscriptionTrialing, SubscriptionActive, SubscriptionPastDue,
	SubscriptionUnpaid, SubscriptionCanceled, SubscriptionIncomplete, SubscriptionIncompleteExpired, SubscriptionPaused}

// Terminal reports whether a subscription in status s has ended for good:
// Stripe never moves it again.
func (s SubscriptionStatus) Terminal() bool {
	return s == SubscriptionCanceled || s == SubscriptionIncompleteExpired
}

// Started reports whether a subscription in status s has begun: it is in a
// trial or was paid for at least once (an incomplete one never was).
func (s SubscriptionStatus) Started() bool {
	return s != SubscriptionIncomplete && s != SubscriptionIncompleteExpired
}

// InvoiceStatus is Stripe's status of an invoice. The invoices table's
// CHECK lists the same values.
type InvoiceStatus string

// Invoice statuses.
const (
	InvoiceDraft         InvoiceStatus = "draft"
	InvoiceOpen          InvoiceStatus = "open"
	InvoicePaid          InvoiceStatus = "paid"
	InvoiceUncollectible InvoiceStatus = "uncollectible"
	InvoiceVoid          InvoiceStatus = "void"
)

// InvoiceStatuses lists every InvoiceStatus.
var InvoiceStatuses = []InvoiceStatus{InvoiceDraft, InvoiceOpen, InvoicePaid, InvoiceUncollectible, InvoiceVoid}

// Unpaid reports whether an invoice in status s is owed: finalized and
// neither paid nor voided (an uncollectible invoice may still be paid).
func (s InvoiceStatus) Unpaid() bool { return s == InvoiceOpen || s == InvoiceUncollectible }

// Subscription is one row of the subscriptions table. Times are UTC.
type Subscription struct {
	ID                   string             `json:"id"`
	StripeSubscriptionID string             `json:"stripe_subscription_id"`
	UserID               *string            `json:"user_id"`
	OrganizationID       *string            `json:"organization_id"`
	StripeCustomerID     string             `json:"stripe_customer_id"`
	CustomerEmail        *string            `json:"customer_email"`
	ProductKey           string             `json:"product"`
	PriceKey             string             `json:"price"`
	StripePriceID        string             `json:"stripe_price_id"`
	Status               SubscriptionStatus `json:"status"`
	Quantity             int64              `json:"quantity"`
	// Amount is what one period costs: the price's unit amount times the
	// quantity, in minor units of Currency.
	Amount             int64      `json:"amount"`
	Currency           string     `json:"currency"`
	Interval           string     `json:"interval"`
	IntervalCount      int64      `json:"interval_count"`
	CurrentPeriodStart time.Time  `json:"current_period_start"`
	CurrentPeriodEnd   time.Time  `json:"current_period_end"`
	TrialEnd           *time.Time `json:"trial_end"`
	CancelAtPeriodEnd  bool       `json:"cancel_at_period_end"`
	CanceledAt         *time.Time `json:"canceled_at"`
	EndedAt            *time.Time `json:"ended_at"`
	LatestInvoiceID    *string    `json:"latest_invoice_id"`
	// StartedAt is Stripe's start date, recorded once the subscription is
	// seen started.
	StartedAt *time.Time `json:"started_at"`
	// Entitled says whether the subscription gives access now; GraceUntil
	// is when a past_due one stops doing so. PastDueSince is when paymentd
	// first saw it past_due, set exactly while it is (a CHECK): the grace
	// counts from it when no unpaid invoice shows an earlier failure.
	Entitled     bool        `json:"entitled"`
	GraceUntil   *time.Time  `json:"grace_until"`
	PastDueSince *time.Time  `json:"past_due_since"`
	AccessState  AccessState `json:"access_state"`
	// Transitions counts the transitions recorded; each names the
	// pipeline it schedules.
	Transitions int        `json:"transitions"`
	NextCheckAt *time.Time `json:"next_check_at"`
	CheckedAt   *time.Time `json:"checked_at"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

const subscriptionColumns = `id, stripe_subscription_id, user_id, organization_id, stripe_customer_id, customer_email,
	product_key, price_key, stripe_price_id, status, quantity, amount, currency, interval, interval_count,
	current_period_start, current_period_end, trial_end, cancel_at_period_end, canceled_at, ended_at, latest_invoice_id,
	started_at, entitled, grace_until, past_due_since, access_state, transitions, next_check_at, checked_at, created_at,
	updated_at`

func scanSubscription(row pgx.CollectableRow) (Subscription, error) {
	var s Subscription
	err := row.Scan(&s.ID, &s.StripeSubscriptionID, &s.UserID, &s.OrganizationID, &s.StripeCustomerID, &s.CustomerEmail,
		&s.ProductKey, &s.PriceKey, &s.StripePriceID, &s.Status, &s.Quantity, &s.Amount, &s.Currency, &s.Interval,
		&s.IntervalCount, &s.CurrentPeriodStart, &s.CurrentPeriodEnd, &s.TrialEnd, &s.CancelAtPeriodEnd, &s.CanceledAt,
		&s.EndedAt, &s.LatestInvoiceID, &s.StartedAt, &s.Entitled, &s.GraceUntil, &s.PastDueSince, &s.AccessState,
		&s.Transitions, &s.NextCheckAt, &s.CheckedAt, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

func (s Subscription) args() []any {
	return []any{s.ID, s.StripeSubscriptionID, s.UserID, s.OrganizationID, s.StripeCustomerID, s.CustomerEmail,
		s.ProductKey, s.PriceKey, s.StripePriceID, s.Status, s.Quantity, s.Amount, s.Currency, s.Interval,
		s.IntervalCount, s.CurrentPeriodStart.UTC(), s.CurrentPeriodEnd.UTC(), s.TrialEnd, s.CancelAtPeriodEnd,
		s.CanceledAt, s.EndedAt, s.LatestInvoiceID, s.StartedAt, s.Entitled, s.GraceUntil, s.PastDueSince, s.AccessState,
		s.Transitions, s.NextCheckAt, s.CheckedAt, s.CreatedAt.UTC(), s.UpdatedAt.UTC()}
}

func (q *Queries) oneSubscription(ctx context.Context, sql string, args ...any) (Subscription, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return Subscription{}, err
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanSubscription)
	return s, notFound(err)
}

func (q *Queries) subscriptions(ctx context.Context, sql string, args ...any) ([]Subscription, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSubscription)
}

// GetSubscription returns the subscription with id.
func (q *Queries) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	return q.oneSubscription(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE id = $1`, id)
}

// LockSubscription is GetSubscription holding the row lock until the
// transaction ends.
func (q *Queries) LockSubscription(ctx context.Context, id string) (Subscription, error) {
	return q.oneSubscription(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE id = $1 FOR UPDATE`, id)
}

// SubscriptionByStripeID returns the subscription of a Stripe subscription.
func (q *Queries) SubscriptionByStripeID(ctx context.Context, stripeID string) (Subscription, error) {
	return q.oneSubscription(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE stripe_subscription_id = $1`,
		stripeID)
}

// LockSubscriptionByStripeID is SubscriptionByStripeID holding the row lock
// until the transaction ends.
func (q *Queries) LockSubscriptionByStripeID(ctx context.Context, stripeID string) (Subscription, error) {
	return q.oneSubscription(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE stripe_subscription_id = $1
		FOR UPDATE`, stripeID)
}

// SubscriptionsByStripeIDs returns the subscriptions of the given Stripe
// subscriptions, keyed by Stripe id, in one query.
func (q *Queries) SubscriptionsByStripeIDs(ctx context.Context, stripeIDs []string) (map[string]Subscription, error) {
	ss, err := q.subscriptions(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE stripe_subscription_id = ANY($1)`, stripeIDs)
	if err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	out := make(map[string]Subscription, len(ss))
	for _, s := range ss {
		out[s.StripeSubscriptionID] = s
	}
	return out, nil
}

// SubscriptionIDTaken reports whether id is already a subscription's id.
func (q *Queries) SubscriptionIDTaken(ctx context.Context, id string) (bool, error) {
	var taken bool
	if err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = $1::uuid)`, id).Scan(&taken); err != nil {
		return false, fmt.Errorf("look up subscription id: %w", err)
	}
	return taken, nil
}

// InsertSubscription records s. A subscription whose Stripe subscription is
// already recorded is left alone and reported by inserted=false.
func (q *Queries) InsertSubscription(ctx context.Context, s Subscription) (inserted bool, err error) {
	tag, err := q.db.Exec(ctx, `INSERT INTO subscriptions (`+subscriptionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
			$24, $25, $26, $27, $28, $29, $30, $31, $32)
		ON CONFLICT (stripe_subscription_id) DO NOTHING`, s.args()...)
	if err != nil {
		return false, fmt.Errorf("insert subscription %s: %w", s.StripeSubscriptionID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// UpdateSubscription writes every mutable column of s (found by id) and
// stamps updated_at with now.
func (q *Queries) UpdateSubscription(ctx context.Context, s Subscription, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE subscriptions SET user_id = $2, organization_id = $3, stripe_customer_id = $4,
			customer_email = $5, product_key = $6, price_key = $7, stripe_price_id = $8, status = $9, quantity = $10,
			amount = $11, currency = $12, interval = $13, interval_count = $14, current_period_start = $15,
			current_period_end = $16, trial_end = $17, cancel_at_period_end = $18, canceled_at = $19, ended_at = $20,
			latest_invoice_id = $21, started_at = $22, entitled = $23, grace_until = $24, past_due_since = $25,
			access_state = $26, transitions = $27, next_check_at = $28, checked_at = $29, updated_at = $30
		WHERE id = $1`,
		s.ID, s.UserID, s.OrganizationID, s.StripeCustomerID, s.CustomerEmail, s.ProductKey, s.PriceKey, s.StripePriceID,
		s.Status, s.Quantity, s.Amount, s.Currency, s.Interval, s.IntervalCount, s.CurrentPeriodStart.UTC(),
		s.CurrentPeriodEnd.UTC(), s.TrialEnd, s.CancelAtPeriodEnd, s.CanceledAt, s.EndedAt, s.LatestInvoiceID, s.StartedAt,
		s.Entitled, s.GraceUntil, s.PastDueSince, s.AccessState, s.Transitions, s.NextCheckAt, s.CheckedAt, now.UTC())
	if err != nil {
		return fmt.Errorf("update subscription %s: %w", s.ID, err)
	}
	return nil
}

// SubscriptionWriteState is what writing a page of subscriptions needs to
// know first (see LockSubscriptionWrite).
type SubscriptionWriteState struct {
	// Rows are the recorded subscriptions, keyed by Stripe id, locked.
	Rows map[string]Subscription
	// Taken says which of the candidate subscription ids are already used.
	Taken map[string]bool
	// Invoices are the recorded invoices among those asked for, by id.
	Invoices map[string]Invoice
	// Failed are the recorded invoices of the locked subscriptions that are
	// unpaid with a failed payment, by subscription id (paymentd's): a
	// past_due subscription's grace counts from the earliest of them.
	Failed map[string][]Invoice
	// Hinted says which of the Stripe subscriptions a webhook announced.
	Hinted map[string]bool
}

// LockSubscriptionWrite locks the subscriptions of stripeIDs (in Stripe id
// order, so that two writers of overlapping pages cannot deadlock), and
// reads which of candidateIDs (UUIDs) are subscription ids already, the
// recorded invoices among invoiceIDs, the unpaid failed invoices of the
// subscriptions and which of stripeIDs a webhook announced, all in one
// round trip. The invoices are read after the lock: an invoice is written
// only under its subscription's row lock.
func (q *Queries) LockSubscriptionWrite(ctx context.Context, stripeIDs, candidateIDs, invoiceIDs []string) (SubscriptionWriteState, error) {
	st := SubscriptionWriteState{Rows: map[string]Subscription{}, Taken: map[string]bool{}, Invoices: map[string]Invoice{},
		Failed: map[string][]Invoice{}, Hinted: map[string]bool{}}
	batch := &pgx.Batch{}
	batch.Queue(`SELECT `+subscriptionColumns+` FROM subscriptions WHERE stripe_subscription_id = ANY($1)
		ORDER BY stripe_subscription_id FOR UPDATE`, stripeIDs)
	batch.Queue(`SELECT id::text FROM subscriptions WHERE id = ANY($1::uuid[])`, candidateIDs)
	batch.Queue(`SELECT `+invoiceColumns+` FROM invoices WHERE id = ANY($1)`, invoiceIDs)
	batch.Queue(`SELECT `+invoiceColumns+` FROM invoices
		WHERE subscription_id IN (SELECT id FROM subscriptions WHERE stripe_subscription_id = ANY($1))
			AND status IN ('open', 'uncollectible') AND first_failed_at IS NOT NULL`, stripeIDs)
	batch.Queue(`SELECT DISTINCT object_id FROM webhook_hints WHERE object_id = ANY($1)`, stripeIDs)
	res := q.db.SendBatch(ctx, batch)
	defer res.Close()
	fail := func(err error) (SubscriptionWriteState, error) {
		return st, fmt.Errorf("lock subscriptions for writing: %w", err)
	}
	ss, err := collect(res, scanSubscription)
	if err != nil {
		return fail(err)
	}
	for _, s := range ss {
		st.Rows[s.StripeSubscriptionID] = s
	}
	taken, err := collect(res, pgx.RowTo[string])
	if err != nil {
		return fail(err)
	}
	for _, id := range taken {
		st.Taken[id] = true
	}
	is, err := collect(res, scanInvoice)
	if err != nil {
		return fail(err)
	}
	for _, i := range is {
		st.Invoices[i.ID] = i
	}
	failed, err := collect(res, scanInvoice)
	if err != nil {
		return fail(err)
	}
	for _, i := range failed {
		st.Failed[i.SubscriptionID] = append(st.Failed[i.SubscriptionID], i)
	}
	hinted, err := collect(res, pgx.RowTo[string])
	if err != nil {
		return fail(err)
	}
	for _, id := range hinted {
		st.Hinted[id] = true
	}
	if err := res.Close(); err != nil {
		return fail(err)
	}
	return st, nil
}

// collect reads the next result of a batch.
func collect[T any](res pgx.BatchResults, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := res.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// SubscriptionWrites is one page's write of subscriptions: rows to insert,
// rows to update, ids of rows only compared (marked checked), and invoices
// to write.
type SubscriptionWrites struct {
	Inserts, Updates []Subscription
	Checked          []string
	Invoices         []Invoice
}

// WriteSubscriptions writes w in one round trip at now: the new rows in one
// statement (a Stripe subscription recorded meanwhile is left alone and not
// counted), the changed ones in one (updated_at stamped with now), the
// checked marks in one, then the invoices (see UpsertInvoices). It returns
// how many rows it inserted; fewer than len(w.Inserts) means another
// writer recorded some first, and the caller must roll back (their
// invoices may have been written under ids that do not exist).
func (q *Queries) WriteSubscriptions(ctx context.Context, w SubscriptionWrites, now time.Time) (inserted int, err error) {
	batch := &pgx.Batch{}
	if len(w.Inserts) > 0 {
		batch.Queue(insertSubscriptionsSQL, subscriptionArrays(w.Inserts)...)
	}
	if len(w.Updates) > 0 {
		batch.Queue(updateSubscriptionsSQL, append(subscriptionArrays(w.Updates), now.UTC())...)
	}
	if len(w.Checked) > 0 {
		batch.Queue(`UPDATE subscriptions SET checked_at = $2 WHERE id = ANY($1::uuid[])`, w.Checked, now.UTC())
	}
	if len(w.Invoices) > 0 {
		batch.Queue(upsertInvoicesSQL, invoiceArrays(w.Invoices, now)...)
	}
	if batch.Len() == 0 {
		return 0, nil
	}
	res := q.db.SendBatch(ctx, batch)
	defer res.Close()
	if len(w.Inserts) > 0 {
		tag, err := res.Exec()
		if err != nil {
			return 0, fmt.Errorf("insert subscriptions: %w", err)
		}
		inserted = int(tag.RowsAffected())
	}
	for _, what := range []struct {
		n    int
		verb string
	}{{len(w.Updates), "update subscriptions"}, {len(w.Checked), "mark subscriptions checked"},
		{len(w.Invoices), "write invoices"}} {
		if what.n == 0 {
			continue
		}
		if _, err := res.Exec(); err != nil {
			return inserted, fmt.Errorf("%s: %w", what.verb, err)
		}
	}
	if err := res.Close(); err != nil {
		return inserted, fmt.Errorf("write subscriptions: %w", err)
	}
	return inserted, nil
}

// subscriptionUnnest reads the arrays of subscriptionArrays as rows, named
// as the columns.
const subscriptionUnnest = `unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::text[], $11::integer[], $12::bigint[], $13::text[], $14::text[], $15::integer[],
		$16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::boolean[], $20::timestamptz[],
		$21::timestamptz[], $22::text[], $23::timestamptz[], $24::boolean[], $25::timestamptz[], $26::timestamptz[],
		$27::text[], $28::integer[], $29::timestamptz[], $30::timestamptz[], $31::timestamptz[], $32::timestamptz[])
	AS v (` + subscriptionColumns + `)`

// insertSubscriptionsSQL inserts a batch of subscriptions; one whose Stripe
// subscription is recorded already is left alone.
const insertSubscriptionsSQL = `INSERT INTO subscriptions (` + subscriptionColumns + `)
	SELECT * FROM ` + subscriptionUnnest + `
	ON CONFLICT (stripe_subscription_id) DO NOTHING`

// updateSubscriptionsSQL writes every mutable column of a batch of
// subscriptions (found by id), as UpdateSubscription does for one.
const updateSubscriptionsSQL = `UPDATE subscriptions s SET user_id = v.user_id, organization_id = v.organization_id,
		stripe_customer_id = v.stripe_customer_id, customer_email = v.customer_email, product_key = v.product_key,
		price_key = v.price_key, stripe_price_id = v.stripe_price_id, status = v.status, quantity = v.quantity,
		amount = v.amount, currency = v.currency, interval = v.interval, interval_count = v.interval_count,
		current_period_start = v.current_period_start, current_period_end = v.current_period_end,
		trial_end = v.trial_end, cancel_at_period_end = v.cancel_at_period_end, canceled_at = v.canceled_at,
		ended_at = v.ended_at, latest_invoice_id = v.latest_invoice_id, started_at = v.started_at,
		entitled = v.entitled, grace_until = v.grace_until, past_due_since = v.past_due_since,
		access_state = v.access_state, transitions = v.transitions, next_check_at = v.next_check_at,
		checked_at = v.checked_at, updated_at = $33
	FROM ` + subscriptionUnnest + `
	WHERE s.id = v.id`

// subscriptionArrays is ss as one array per column of subscriptionColumns,
// in its order, for subscriptionUnnest.
func subscriptionArrays(ss []Subscription) []any {
	n := len(ss)
	strs := func() []string { return make([]string, 0, n) }
	ptrs := func() []*string { return make([]*string, 0, n) }
	times := func() []*time.Time { return make([]*time.Time, 0, n) }
	var (
		ids, stripeIDs, customers, products, prices, stripePrices = strs(), strs(), strs(), strs(), strs(), strs()
		statuses, currencies, intervals, access                   = strs(), strs(), strs(), strs()
		users, orgs, emails, latest                               = ptrs(), ptrs(), ptrs(), ptrs()
		quantities, amounts, counts                               = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		transitions                                               = make([]int32, 0, n)
		starts, ends, created, updated                            = make([]time.Time, 0, n), make([]time.Time, 0, n),
			make([]time.Time, 0, n), make([]time.Time, 0, n)
		trials, canceled, ended, started, grace, pastDue, next = times(), times(), times(), times(), times(), times(), times()
		checked                                                = times()
		cancelAtEnd, entitled                                  = make([]bool, 0, n), make([]bool, 0, n)
	)
	for _, s := range ss {
		ids, stripeIDs, users, orgs = append(ids, s.ID), append(stripeIDs, s.StripeSubscriptionID), append(users, s.UserID),
			append(orgs, s.OrganizationID)
		customers, emails, products = append(customers, s.StripeCustomerID), append(emails, s.CustomerEmail),
			append(products, s.ProductKey)
		prices, stripePrices, statuses = append(prices, s.PriceKey), append(stripePrices, s.StripePriceID),
			append(statuses, string(s.Status))
		quantities, amounts, currencies = append(quantities, s.Quantity), append(amounts, s.Amount),
			append(currencies, s.Currency)
		intervals, counts = append(intervals, s.Interval), append(counts, s.IntervalCount)
		starts, ends, trials = append(starts, s.CurrentPeriodStart.UTC()), append(ends, s.CurrentPeriodEnd.UTC()),
			append(trials, s.TrialEnd)
		cancelAtEnd, canceled, ended = append(cancelAtEnd, s.CancelAtPeriodEnd), append(canceled, s.CanceledAt),
			append(ended, s.EndedAt)
		latest, started, entitled = append(latest, s.LatestInvoiceID), append(started, s.StartedAt),
			append(entitled, s.Entitled)
		grace, pastDue, access = append(grace, s.GraceUntil), append(pastDue, s.PastDueSince),
			append(access, string(s.AccessState))
		transitions = append(transitions, int32(s.Transitions))
		next, checked, created, updated = append(next, s.NextCheckAt), append(checked, s.CheckedAt),
			append(created, s.CreatedAt.UTC()), append(updated, s.UpdatedAt.UTC())
	}
	return []any{ids, stripeIDs, users, orgs, customers, emails, products, prices, stripePrices, statuses, quantities,
		amounts, currencies, intervals, counts, starts, ends, trials, cancelAtEnd, canceled, ended, latest, started,
		entitled, grace, pastDue, access, transitions, next, checked, created, updated}
}

// UserSubscriptions returns a user's subscriptions, newest first.
func (q *Queries) UserSubscriptions(ctx context.Context, userID string) ([]Subscription, error) {
	ss, err := q.subscriptions(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE user_id = $1
		ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list user subscriptions: %w", err)
	}
	return ss, nil
}

// Subscriber names who a subscription checkout is for: a user, the
// Stripe customer of their account ("" for none yet) and an organization
// ("" for none).
type Subscriber struct {
	UserID, CustomerID, OrganizationID string
}

// ProductSubscriptionsOf returns, newest first, every subscription to
// productKey (any status, ended included) that is the subscriber's user's,
// in any organization, or the subscriber's organization's (when not ""),
// whoever's. A subscription is the user's when it names them, or when it
// names no user (adopted from Stripe and not claimed yet) and is on their
// customer. A subscription checkout reads it to decide whether the user
// may subscribe again, and whether with the product's trial.
func (q *Queries) ProductSubscriptionsOf(ctx context.Context, sub Subscriber, productKey string) ([]Subscription, error) {
	ss, err := q.subscriptions(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE product_key = $4 AND (user_id = $1
			OR (user_id IS NULL AND $2 <> '' AND stripe_customer_id = $2)
			OR ($3 <> '' AND organization_id = $3))
		ORDER BY created_at DESC, id`, sub.UserID, sub.CustomerID, sub.OrganizationID, productKey)
	if err != nil {
		return nil, fmt.Errorf("list %s subscriptions of %s: %w", productKey, sub.UserID, err)
	}
	return ss, nil
}

// DueSubscriptions returns up to limit subscriptions that have not ended
// and are due for a look without a signal: their next check (a period end,
// trial end, payment retry or end of grace) has come, and they were not
// compared since then, or not for longer than recheck (Stripe may act a
// little after the moment it announced).
func (q *Queries) DueSubscriptions(ctx context.Context, now, recheckBefore time.Time, limit int) ([]Subscription, error) {
	ss, err := q.subscriptions(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE next_check_at IS NOT NULL AND status NOT IN ('canceled', 'incomplete_expired') AND next_check_at <= $1
			AND (checked_at IS NULL OR checked_at < next_check_at OR checked_at < $2)
		ORDER BY next_check_at, id LIMIT $3`, now.UTC(), recheckBefore.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list due subscriptions: %w", err)
	}
	return ss, nil
}

// MarkSubscriptionChecked records that the subscription was compared with
// Stripe at now.
func (q *Queries) MarkSubscriptionChecked(ctx context.Context, id string, now time.Time) error {
	if _, err := q.db.Exec(ctx, `UPDATE subscriptions SET checked_at = $2 WHERE id = $1`, id, now.UTC()); err != nil {
		return fmt.Errorf("mark subscription %s checked: %w", id, err)
	}
	return nil
}

// SetSubscriptionAccess records a subscription's access state.
func (q *Queries) SetSubscriptionAccess(ctx context.Context, id string, state AccessState, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE subscriptions SET access_state = $2, updated_at = $3 WHERE id = $1`, id, state, now.UTC())
	if err != nil {
		return fmt.Errorf("set access of subscription %s: %w", id, err)
	}
	return nil
}

// Invoice is one row of the invoices table.
type Invoice struct {
	ID               string        `json:"id"`
	SubscriptionID   string        `json:"subscription_id"`
	Status           InvoiceStatus `json:"status"`
	BillingReason    string        `json:"billing_reason"`
	Number           *string       `json:"number"`
	Currency         string        `json:"currency"`
	AmountDue        int64         `json:"amount_due"`
	AmountPaid       int64         `json:"amount_paid"`
	AmountRemaining  int64         `json:"amount_remaining"`
	HostedInvoiceURL *string       `json:"hosted_invoice_url"`
	AttemptCount     int64         `json:"attempt_count"`
	// NextPaymentAttempt is when Stripe tries to charge it again.
	NextPaymentAttempt *time.Time `json:"next_payment_attempt"`
	// PeriodStart and PeriodEnd are the service period its lines bill.
	PeriodStart *time.Time `json:"period_start"`
	PeriodEnd   *time.Time `json:"period_end"`
	PaidAt      *time.Time `json:"paid_at"`
	// FirstFailedAt is when its first payment attempt failed.
	FirstFailedAt *time.Time `json:"first_failed_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

const invoiceColumns = `id, subscription_id, status, billing_reason, number, currency, amount_due, amount_paid,
	amount_remaining, hosted_invoice_url, attempt_count, next_payment_attempt, period_start, period_end, paid_at,
	first_failed_at, created_at, updated_at`

func scanInvoice(row pgx.CollectableRow) (Invoice, error) {
	var i Invoice
	err := row.Scan(&i.ID, &i.SubscriptionID, &i.Status, &i.BillingReason, &i.Number, &i.Currency, &i.AmountDue,
		&i.AmountPaid, &i.AmountRemaining, &i.HostedInvoiceURL, &i.AttemptCount, &i.NextPaymentAttempt, &i.PeriodStart,
		&i.PeriodEnd, &i.PaidAt, &i.FirstFailedAt, &i.CreatedAt, &i.UpdatedAt)
	return i, err
}

func (q *Queries) invoices(ctx context.Context, sql string, args ...any) ([]Invoice, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanInvoice)
}

// GetInvoice returns the invoice with Stripe id id.
func (q *Queries) GetInvoice(ctx context.Context, id string) (Invoice, error) {
	rows, err := q.db.Query(ctx, `SELECT `+invoiceColumns+` FROM invoices WHERE id = $1`, id)
	if err != nil {
		return Invoice{}, err
	}
	i, err := pgx.CollectExactlyOneRow(rows, scanInvoice)
	return i, notFound(err)
}

// InvoicesByIDs returns the recorded invoices among ids, keyed by id.
func (q *Queries) InvoicesByIDs(ctx context.Context, ids []string) (map[string]Invoice, error) {
	out := make(map[string]Invoice, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	is, err := q.invoices(ctx, `SELECT `+invoiceColumns+` FROM invoices WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read invoices: %w", err)
	}
	for _, i := range is {
		out[i.ID] = i
	}
	return out, nil
}

// SubscriptionInvoices returns a subscription's invoices, newest first.
func (q *Queries) SubscriptionInvoices(ctx context.Context, subscriptionID string) ([]Invoice, error) {
	is, err := q.invoices(ctx, `SELECT `+invoiceColumns+` FROM invoices WHERE subscription_id = $1
		ORDER BY created_at DESC, id DESC`, subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("list invoices of %s: %w", subscriptionID, err)
	}
	return is, nil
}

// UpsertInvoices writes the invoices (inserted, or updated in place) in
// one statement, stamping updated_at with now. An id given twice is
// written once, as its last occurrence says.
func (q *Queries) UpsertInvoices(ctx context.Context, is []Invoice, now time.Time) error {
	if len(is) == 0 {
		return nil
	}
	if _, err := q.db.Exec(ctx, upsertInvoicesSQL, invoiceArrays(is, now)...); err != nil {
		return fmt.Errorf("write invoices: %w", err)
	}
	return nil
}

// upsertInvoicesSQL writes a batch of invoices (one array a column, see
// invoiceArrays). ON CONFLICT DO UPDATE may not touch a row twice in one
// statement: invoiceArrays leaves out repeated ids.
const upsertInvoicesSQL = `INSERT INTO invoices (` + invoiceColumns + `)
	SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
		$8::bigint[], $9::bigint[], $10::text[], $11::integer[], $12::timestamptz[], $13::timestamptz[],
		$14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[])
	ON CONFLICT (id) DO UPDATE SET subscription_id = EXCLUDED.subscription_id, status = EXCLUDED.status,
		billing_reason = EXCLUDED.billing_reason, number = EXCLUDED.number, currency = EXCLUDED.currency,
		amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
		amount_remaining = EXCLUDED.amount_remaining, hosted_invoice_url = EXCLUDED.hosted_invoice_url,
		attempt_count = EXCLUDED.attempt_count, next_payment_attempt = EXCLUDED.next_payment_attempt,
		period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, paid_at = EXCLUDED.paid_at,
		first_failed_at = EXCLUDED.first_failed_at, updated_at = EXCLUDED.updated_at`

// invoiceArrays is is as one array per column of invoiceColumns (updated_at
// set to now), each id once (its last occurrence).
func invoiceArrays(is []Invoice, now time.Time) []any {
	last := make(map[string]int, len(is))
	for k, i := range is {
		last[i.ID] = k
	}
	n := len(last)
	var (
		ids, subs, statuses, reasons, currencies = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
			make([]string, 0, n), make([]string, 0, n)
		numbers, urls             = make([]*string, 0, n), make([]*string, 0, n)
		due, paid, remaining      = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		attempts                  = make([]int64, 0, n)
		next, starts, ends, paids = make([]*time.Time, 0, n), make([]*time.Time, 0, n), make([]*time.Time, 0, n),
			make([]*time.Time, 0, n)
		failed           = make([]*time.Time, 0, n)
		created, updated = make([]time.Time, 0, n), make([]time.Time, 0, n)
	)
	for k, i := range is {
		if last[i.ID] != k {
			continue
		}
		ids, subs, statuses = append(ids, i.ID), append(subs, i.SubscriptionID), append(statuses, string(i.Status))
		reasons, numbers, currencies = append(reasons, i.BillingReason), append(numbers, i.Number), append(currencies, i.Currency)
		due, paid, remaining = append(due, i.AmountDue), append(paid, i.AmountPaid), append(remaining, i.AmountRemaining)
		urls, attempts, next = append(urls, i.HostedInvoiceURL), append(attempts, i.AttemptCount), append(next, i.NextPaymentAttempt)
		starts, ends, paids = append(starts, i.PeriodStart), append(ends, i.PeriodEnd), append(paids, i.PaidAt)
		failed, created, updated = append(failed, i.FirstFailedAt), append(created, i.CreatedAt.UTC()), append(updated, now.UTC())
	}
	return []any{ids, subs, statuses, reasons, numbers, currencies, due, paid, remaining, urls, attempts, next, starts,
		ends, paids, failed, created, updated}
}

// InvoiceChange is an invoice as a write found it (nil: not recorded
// before) and as it wrote it.
type InvoiceChange struct {
	Before *Invoice
	After  Invoice
}

// AccountCustomer returns the Stripe customer recorded for a user, "" for
// none (or no account).
func (q *Queries) AccountCustomer(ctx context.Context, userID string) (string, error) {
	var id *string
	err := notFound(q.db.QueryRow(ctx, `SELECT stripe_customer_id FROM accounts WHERE user_id = $1`, userID).Scan(&id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("look up the customer of %s: %w", userID, err)
	}
	if id == nil {
		return "", nil
	}
	return *id, nil
}

// SetAccountCustomer records customerID as the user's Stripe customer,
// creating the account (with email, when not "") if there is none. A
// customer already recorded for the user is kept: it returns the one the
// account holds afterwards.
func (q *Queries) SetAccountCustomer(ctx context.Context, userID, email, customerID string, now time.Time) (string, error) {
	var id string
	err := q.db.QueryRow(ctx, `
		INSERT INTO accounts (user_id, email, stripe_customer_id, created_at, updated_at)
		VALUES ($1, nullif($2, ''), $3, $4, $4)
		ON CONFLICT (user_id) DO UPDATE SET
			stripe_customer_id = coalesce(accounts.stripe_customer_id, EXCLUDED.stripe_customer_id),
			email = coalesce(accounts.email, EXCLUDED.email),
			updated_at = $4
		RETURNING stripe_customer_id`, userID, email, customerID, now.UTC()).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("record the customer of %s: %w", userID, err)
	}
	return id, nil
}

// AccountContact is what a user's account holds to reach them.
type AccountContact struct {
	Email, Name *string
}

// AccountContactOf returns the email and name on a user's account (both
// nil when there is no account).
func (q *Queries) AccountContactOf(ctx context.Context, userID string) (AccountContact, error) {
	var c AccountContact
	err := notFound(q.db.QueryRow(ctx, `SELECT email, name FROM accounts WHERE user_id = $1`, userID).Scan(&c.Email, &c.Name))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return c, fmt.Errorf("look up the account of %s: %w", userID, err)
	}
	return c, nil
}

// SetCustomerContact writes a Stripe customer's email and name (each only
// when not "") to the accounts and subscriptions that name the customer,
// and reports how many rows changed.
func (q *Queries) SetCustomerContact(ctx context.Context, customerID, email, name string, now time.Time) (int, error) {
	batch := &pgx.Batch{}
	batch.Queue(`UPDATE accounts SET email = coalesce(nullif($2, ''), email), name = coalesce(nullif($3, ''), name),
			updated_at = $4
		WHERE stripe_customer_id = $1 AND (email IS DISTINCT FROM coalesce(nullif($2, ''), email)
			OR name IS DISTINCT FROM coalesce(nullif($3, ''), name))`, customerID, email, name, now.UTC())
	batch.Queue(`UPDATE subscriptions SET customer_email = $2, updated_at = $3
		WHERE stripe_customer_id = $1 AND $2 <> '' AND customer_email IS DISTINCT FROM $2`, customerID, email, now.UTC())
	res := q.db.SendBatch(ctx, batch)
	n := 0
	for range 2 {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return 0, fmt.Errorf("write the contact of customer %s: %w", customerID, err)
		}
		n += int(tag.RowsAffected())
	}
	if err := res.Close(); err != nil {
		return 0, fmt.Errorf("write the contact of customer %s: %w", customerID, err)
	}
	return n, nil
}

// KnownCustomer reports whether any account or subscription names the
// Stripe customer.
func (q *Queries) KnownCustomer(ctx context.Context, customerID string) (bool, error) {
	var known bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE stripe_customer_id = $1)
		OR EXISTS (SELECT 1 FROM subscriptions WHERE stripe_customer_id = $1)`, customerID).Scan(&known)
	if err != nil {
		return false, fmt.Errorf("look up customer %s: %w", customerID, err)
	}
	return known, nil
}

// RecordSubscriptionGrantAttempt is RecordGrantAttempt for a grant to a
// subscription's customer (g.SubscriptionID).
func (q *Queries) RecordSubscriptionGrantAttempt(ctx context.Context, g Grant, now time.Time) (Grant, error) {
	rows, err := q.db.Query(ctx, `
		INSERT INTO access_grants AS g (subscription_id, provider, github_user_id, github_login, preexisting, state,
			created_at, updated_at)
		VALUES ($1, $2, nullif($3::bigint, 0), nullif($4, ''), $5, 'pending', $6, $6)
		ON CONFLICT (subscription_id, provider, (coalesce(github_user_id, 0))) WHERE subscription_id IS NOT NULL
		DO UPDATE SET
			state = 'pending',
			github_login = coalesce(nullif($4, ''), g.github_login),
			preexisting = CASE WHEN g.state = 'revoked' THEN EXCLUDED.preexisting ELSE g.preexisting END,
			updated_at = $6
		RETURNING `+grantColumns,
		g.SubscriptionID, g.Provider, g.GitHubUserID, g.GitHubLogin, g.Preexisting, now.UTC())
	if err != nil {
		return Grant{}, fmt.Errorf("record grant attempt for subscription %s: %w", g.SubscriptionID, err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanGrant)
	if err != nil {
		return Grant{}, fmt.Errorf("record grant attempt for subscription %s: %w", g.SubscriptionID, err)
	}
	return out, nil
}

// SubscriptionGrants returns a subscription's grants, oldest first.
func (q *Queries) SubscriptionGrants(ctx context.Context, subscriptionID string) ([]Grant, error) {
	gs, err := q.grants(ctx, `SELECT `+grantColumns+` FROM access_grants WHERE subscription_id = $1 ORDER BY id`,
		subscriptionID)
	if err != nil {
		return nil, fmt.Errorf("list grants of subscription %s: %w", subscriptionID, err)
	}
	return gs, nil
}

// SubscriptionAccessCandidates returns, a page at a time by id, the
// subscriptions of productKeys that entitle their customer or whose access
// is recorded: those the access drift pass compares with GitHub.
func (q *Queries) SubscriptionAccessCandidates(ctx context.Context, productKeys []string, afterID string, limit int) ([]Subscription, error) {
	ss, err := q.subscriptions(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE product_key = ANY($1) AND (entitled OR access_state <> 'none') AND id > $2::uuid
		ORDER BY id LIMIT $3`, productKeys, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list subscription access candidates: %w", err)
	}
	return ss, nil
}
