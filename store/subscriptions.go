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
	// is when a past_due one stops doing so.
	Entitled    bool        `json:"entitled"`
	GraceUntil  *time.Time  `json:"grace_until"`
	AccessState AccessState `json:"access_state"`
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
	started_at, entitled, grace_until, access_state, transitions, next_check_at, checked_at, created_at, updated_at`

func scanSubscription(row pgx.CollectableRow) (Subscription, error) {
	var s Subscription
	err := row.Scan(&s.ID, &s.StripeSubscriptionID, &s.UserID, &s.OrganizationID, &s.StripeCustomerID, &s.CustomerEmail,
		&s.ProductKey, &s.PriceKey, &s.StripePriceID, &s.Status, &s.Quantity, &s.Amount, &s.Currency, &s.Interval,
		&s.IntervalCount, &s.CurrentPeriodStart, &s.CurrentPeriodEnd, &s.TrialEnd, &s.CancelAtPeriodEnd, &s.CanceledAt,
		&s.EndedAt, &s.LatestInvoiceID, &s.StartedAt, &s.Entitled, &s.GraceUntil, &s.AccessState, &s.Transitions,
		&s.NextCheckAt, &s.CheckedAt, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

func (s Subscription) args() []any {
	return []any{s.ID, s.StripeSubscriptionID, s.UserID, s.OrganizationID, s.StripeCustomerID, s.CustomerEmail,
		s.ProductKey, s.PriceKey, s.StripePriceID, s.Status, s.Quantity, s.Amount, s.Currency, s.Interval,
		s.IntervalCount, s.CurrentPeriodStart.UTC(), s.CurrentPeriodEnd.UTC(), s.TrialEnd, s.CancelAtPeriodEnd,
		s.CanceledAt, s.EndedAt, s.LatestInvoiceID, s.StartedAt, s.Entitled, s.GraceUntil, s.AccessState, s.Transitions,
		s.NextCheckAt, s.CheckedAt, s.CreatedAt.UTC(), s.UpdatedAt.UTC()}
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
			$24, $25, $26, $27, $28, $29, $30, $31)
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
			latest_invoice_id = $21, started_at = $22, entitled = $23, grace_until = $24, access_state = $25,
			transitions = $26, next_check_at = $27, checked_at = $28, updated_at = $29
		WHERE id = $1`,
		s.ID, s.UserID, s.OrganizationID, s.StripeCustomerID, s.CustomerEmail, s.ProductKey, s.PriceKey, s.StripePriceID,
		s.Status, s.Quantity, s.Amount, s.Currency, s.Interval, s.IntervalCount, s.CurrentPeriodStart.UTC(),
		s.CurrentPeriodEnd.UTC(), s.TrialEnd, s.CancelAtPeriodEnd, s.CanceledAt, s.EndedAt, s.LatestInvoiceID, s.StartedAt,
		s.Entitled, s.GraceUntil, s.AccessState, s.Transitions, s.NextCheckAt, s.CheckedAt, now.UTC())
	if err != nil {
		return fmt.Errorf("update subscription %s: %w", s.ID, err)
	}
	return nil
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
// one round trip, stamping updated_at with now.
func (q *Queries) UpsertInvoices(ctx context.Context, is []Invoice, now time.Time) error {
	if len(is) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, i := range is {
		batch.Queue(`INSERT INTO invoices (`+invoiceColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
			ON CONFLICT (id) DO UPDATE SET subscription_id = EXCLUDED.subscription_id, status = EXCLUDED.status,
				billing_reason = EXCLUDED.billing_reason, number = EXCLUDED.number, currency = EXCLUDED.currency,
				amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
				amount_remaining = EXCLUDED.amount_remaining, hosted_invoice_url = EXCLUDED.hosted_invoice_url,
				attempt_count = EXCLUDED.attempt_count, next_payment_attempt = EXCLUDED.next_payment_attempt,
				period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, paid_at = EXCLUDED.paid_at,
				first_failed_at = EXCLUDED.first_failed_at, updated_at = EXCLUDED.updated_at`,
			i.ID, i.SubscriptionID, i.Status, i.BillingReason, i.Number, i.Currency, i.AmountDue, i.AmountPaid,
			i.AmountRemaining, i.HostedInvoiceURL, i.AttemptCount, i.NextPaymentAttempt, i.PeriodStart, i.PeriodEnd,
			i.PaidAt, i.FirstFailedAt, i.CreatedAt.UTC(), now.UTC())
	}
	res := q.db.SendBatch(ctx, batch)
	for _, i := range is {
		if _, err := res.Exec(); err != nil {
			res.Close()
			return fmt.Errorf("write invoice %s: %w", i.ID, err)
		}
	}
	if err := res.Close(); err != nil {
		return fmt.Errorf("write invoices: %w", err)
	}
	return nil
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
