// Purchases: one row per Stripe Checkout Session, moving along its
// lifecycle pending → completed → partially_refunded → refunded, or
// pending → expired / failed.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PurchaseStatus is where a purchase is in its lifecycle. The purchases
// table's CHECK lists the same values (TestStatesMatchChecks).
type PurchaseStatus string

// Purchase statuses.
const (
	PurchasePending           PurchaseStatus = "pending"
	PurchaseCompleted         PurchaseStatus = "completed"
	PurchasePartiallyRefunded PurchaseStatus = "partially_refunded"
	PurchaseRefunded          PurchaseStatus = "refunded"
	PurchaseExpired           PurchaseStatus = "expired"
	PurchaseFailed            PurchaseStatus = "failed"
)

// PurchaseStatuses lists every PurchaseStatus.
var PurchaseStatuses = []PurchaseStatus{PurchasePending, PurchaseCompleted, PurchasePartiallyRefunded,
	PurchaseRefunded, PurchaseExpired, PurchaseFailed}

// Paid reports whether a purchase in status s was paid (whatever was
// refunded since).
func (s PurchaseStatus) Paid() bool {
	return s == PurchaseCompleted || s == PurchasePartiallyRefunded || s == PurchaseRefunded
}

// Entitled reports whether a purchase in status s gives its buyer access:
// paid and not fully refunded (a lost dispute makes it refunded).
func (s PurchaseStatus) Entitled() bool { return slices.Contains(entitledStatuses, string(s)) }

// entitledStatuses are the statuses Entitled accepts, as statements that
// check it under the row lock take them.
var entitledStatuses = []string{string(PurchaseCompleted), string(PurchasePartiallyRefunded)}

// AccessState is what a purchase's access provider was last told. The
// purchases table's CHECK lists the same values.
type AccessState string

// Access states.
const (
	AccessNone    AccessState = "none"
	AccessGranted AccessState = "granted"
	AccessRevoked AccessState = "revoked"
	AccessFailed  AccessState = "failed"
)

// AccessStates lists every AccessState.
var AccessStates = []AccessState{AccessNone, AccessGranted, AccessRevoked, AccessFailed}

// Purchase is one row of the purchases table.
type Purchase struct {
	ID                    string         `json:"id"`
	UserID                *string        `json:"user_id"`
	Email                 *string        `json:"email"`
	ProductKey            string         `json:"product"`
	Quantity              int            `json:"quantity"`
	Status                PurchaseStatus `json:"status"`
	StripeSessionID       string         `json:"stripe_session_id"`
	StripeCustomerID      *string        `json:"stripe_customer_id"`
	StripePaymentIntentID *string        `json:"stripe_payment_intent_id"`
	StripeChargeID        *string        `json:"stripe_charge_id"`
	AmountTotal           int64          `json:"amount_total"`
	AmountRefunded        int64          `json:"amount_refunded"`
	Currency              string         `json:"currency"`
	GitHubUsername        *string        `json:"github_username"`
	AccessState           AccessState    `json:"access_state"`
	AccessRef             *string        `json:"access_ref"`
	ConsentRequired       bool           `json:"consent_required"`
	PromotionsConsent     *bool          `json:"promotions_consent"`
	RecoveryURL           *string        `json:"recovery_url"`
	SessionExpiresAt      *time.Time     `json:"session_expires_at"`
	Disputed              bool           `json:"disputed"`
	CreatedAt             time.Time      `json:"created_at"`
	CompletedAt           *time.Time     `json:"completed_at"`
	// ExpiredAt is when the session expired: the earlier of its expires_at
	// and when it was first seen expired.
	ExpiredAt *time.Time `json:"expired_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// CheckedAt is when the reconciler last compared the purchase with Stripe.
	CheckedAt *time.Time `json:"checked_at"`
}

const purchaseColumns = `id, user_id, email, product_key, quantity, status, stripe_session_id, stripe_customer_id,
	stripe_payment_intent_id, stripe_charge_id, amount_total, amount_refunded, currency, github_username,
	access_state, access_ref, consent_required, promotions_consent, recovery_url, session_expires_at, disputed,
	created_at, completed_at, updated_at, checked_at, expired_at`

func scanPurchase(row pgx.CollectableRow) (Purchase, error) {
	var p Purchase
	err := row.Scan(&p.ID, &p.UserID, &p.Email, &p.ProductKey, &p.Quantity, &p.Status, &p.StripeSessionID,
		&p.StripeCustomerID, &p.StripePaymentIntentID, &p.StripeChargeID, &p.AmountTotal, &p.AmountRefunded,
		&p.Currency, &p.GitHubUsername, &p.AccessState, &p.AccessRef, &p.ConsentRequired, &p.PromotionsConsent,
		&p.RecoveryURL, &p.SessionExpiresAt, &p.Disputed, &p.CreatedAt, &p.CompletedAt, &p.UpdatedAt, &p.CheckedAt, &p.ExpiredAt)
	return p, err
}

func (q *Queries) onePurchase(ctx context.Context, sql string, args ...any) (Purchase, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return Purchase{}, err
	}
	p, err := pgx.CollectExactlyOneRow(rows, scanPurchase)
	return p, notFound(err)
}

func (q *Queries) purchases(ctx context.Context, sql string, args ...any) ([]Purchase, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanPurchase)
}

// InsertPurchase records p. A purchase whose Stripe session is already
// recorded is left alone and reported by inserted=false.
func (q *Queries) InsertPurchase(ctx context.Context, p Purchase) (inserted bool, err error) {
	tag, err := q.db.Exec(ctx, `INSERT INTO purchases (`+purchaseColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
		ON CONFLICT (stripe_session_id) DO NOTHING`,
		p.ID, p.UserID, p.Email, p.ProductKey, p.Quantity, p.Status, p.StripeSessionID, p.StripeCustomerID,
		p.StripePaymentIntentID, p.StripeChargeID, p.AmountTotal, p.AmountRefunded, p.Currency, p.GitHubUsername,
		p.AccessState, p.AccessRef, p.ConsentRequired, p.PromotionsConsent, p.RecoveryURL, p.SessionExpiresAt,
		p.Disputed, p.CreatedAt.UTC(), p.CompletedAt, p.UpdatedAt.UTC(), p.CheckedAt, p.ExpiredAt)
	if err != nil {
		return false, fmt.Errorf("insert purchase: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// InsertPurchases records ps in one statement. Those whose Stripe session
// is already recorded are left alone; it returns the session ids of the
// rows it inserted.
func (q *Queries) InsertPurchases(ctx context.Context, ps []Purchase) (map[string]bool, error) {
	inserted := make(map[string]bool, len(ps))
	if len(ps) == 0 {
		return inserted, nil
	}
	const columns = 26
	var sql strings.Builder
	sql.WriteString(`INSERT INTO purchases (` + purchaseColumns + `) VALUES `)
	args := make([]any, 0, len(ps)*columns)
	for i, p := range ps {
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString("(")
		for c := range columns {
			if c > 0 {
				sql.WriteString(", ")
			}
			fmt.Fprintf(&sql, "$%d", i*columns+c+1)
		}
		sql.WriteString(")")
		args = append(args, p.ID, p.UserID, p.Email, p.ProductKey, p.Quantity, p.Status, p.StripeSessionID,
			p.StripeCustomerID, p.StripePaymentIntentID, p.StripeChargeID, p.AmountTotal, p.AmountRefunded, p.Currency,
			p.GitHubUsername, p.AccessState, p.AccessRef, p.ConsentRequired, p.PromotionsConsent, p.RecoveryURL,
			p.SessionExpiresAt, p.Disputed, p.CreatedAt.UTC(), p.CompletedAt, p.UpdatedAt.UTC(), p.CheckedAt, p.ExpiredAt)
	}
	sql.WriteString(` ON CONFLICT (stripe_session_id) DO NOTHING RETURNING stripe_session_id`)
	rows, err := q.db.Query(ctx, sql.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("insert purchases: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert purchases: %w", err)
	}
	for _, id := range ids {
		inserted[id] = true
	}
	return inserted, nil
}

// UpdatePurchases writes each purchase as UpdatePurchase does, in one
// round trip.
func (q *Queries) UpdatePurchases(ctx context.Context, ps []Purchase, now time.Time) error {
	if len(ps) == 0 {
		return nil
	}
	if len(ps) == 1 {
		return q.UpdatePurchase(ctx, ps[0], now)
	}
	// Many rows in one statement: each row a JSON object named by column,
	// read back as a purchases record. Times are cut to microseconds, as
	// the binary protocol writes them, so a row reads back the same either
	// way.
	rows := make([]map[string]any, len(ps))
	for i, p := range ps {
		rows[i] = map[string]any{"id": p.ID, "user_id": p.UserID, "email": p.Email, "status": p.Status,
			"stripe_customer_id": p.StripeCustomerID, "stripe_payment_intent_id": p.StripePaymentIntentID,
			"stripe_charge_id": p.StripeChargeID, "amount_total": p.AmountTotal, "amount_refunded": p.AmountRefunded,
			"currency": p.Currency, "github_username": p.GitHubUsername, "access_state": p.AccessState,
			"access_ref": p.AccessRef, "promotions_consent": p.PromotionsConsent, "recovery_url": p.RecoveryURL,
			"session_expires_at": usec(p.SessionExpiresAt), "disputed": p.Disputed, "completed_at": usec(p.CompletedAt),
			"checked_at": usec(p.CheckedAt), "expired_at": usec(p.ExpiredAt)}
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("update purchases: encode: %w", err)
	}
	tag, err := q.db.Exec(ctx, `UPDATE purchases p SET user_id = r.user_id, email = r.email, status = r.status,
			stripe_customer_id = r.stripe_customer_id, stripe_payment_intent_id = r.stripe_payment_intent_id,
			stripe_charge_id = r.stripe_charge_id, amount_total = r.amount_total, amount_refunded = r.amount_refunded,
			currency = r.currency, github_username = r.github_username, access_state = r.access_state,
			access_ref = r.access_ref, promotions_consent = r.promotions_consent, recovery_url = r.recovery_url,
			session_expires_at = r.session_expires_at, disputed = r.disputed, completed_at = r.completed_at,
			updated_at = $2, checked_at = r.checked_at, expired_at = r.expired_at
		FROM jsonb_populate_recordset(NULL::purchases, $1) r
		WHERE p.id = r.id`, doc, now.UTC())
	if err != nil {
		return fmt.Errorf("update %d purchases: %w", len(ps), err)
	}
	if int(tag.RowsAffected()) != len(ps) {
		return fmt.Errorf("update purchases: %d of %d rows found", tag.RowsAffected(), len(ps))
	}
	return nil
}

// SessionWriteState is what writing a batch of sessions' purchases needs
// to know first (see LockSessionWrite).
type SessionWriteState struct {
	// Rows are the purchases of the sessions, keyed by session id, locked.
	Rows map[string]Purchase
	// Taken says which of the candidate purchase ids are already used.
	Taken map[string]bool
	// Hinted says which of the sessions a webhook ever announced.
	Hinted map[string]bool
}

// LockSessionWrite locks the purchases of sessionIDs (as
// LockPurchasesBySessions does), and reads which of candidateIDs are
// purchase ids already and which sessions a webhook announced, all in one
// round trip.
func (q *Queries) LockSessionWrite(ctx context.Context, sessionIDs, candidateIDs []string) (SessionWriteState, error) {
	st := SessionWriteState{Rows: map[string]Purchase{}, Taken: map[string]bool{}, Hinted: map[string]bool{}}
	batch := &pgx.Batch{}
	batch.Queue(`SELECT `+purchaseColumns+` FROM purchases WHERE stripe_session_id = ANY($1)
		ORDER BY stripe_session_id FOR UPDATE`, sessionIDs)
	batch.Queue(`SELECT id::text FROM purchases WHERE id = ANY($1::uuid[])`, candidateIDs)
	batch.Queue(`SELECT DISTINCT object_id FROM webhook_hints WHERE object_id = ANY($1)`, sessionIDs)
	res := q.db.SendBatch(ctx, batch)
	defer res.Close()
	rows, err := res.Query()
	if err == nil {
		var ps []Purchase
		if ps, err = pgx.CollectRows(rows, scanPurchase); err == nil {
			for _, p := range ps {
				st.Rows[p.StripeSessionID] = p
			}
		}
	}
	for _, into := range []map[string]bool{st.Taken, st.Hinted} {
		if err != nil {
			break
		}
		if rows, err = res.Query(); err == nil {
			var ids []string
			if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
				for _, id := range ids {
					into[id] = true
				}
			}
		}
	}
	if err != nil {
		return st, fmt.Errorf("lock purchases for writing sessions: %w", err)
	}
	return st, res.Close()
}

// GetPurchase returns the purchase with id.
func (q *Queries) GetPurchase(ctx context.Context, id string) (Purchase, error) {
	return q.onePurchase(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE id = $1`, id)
}

// PurchaseBySession returns the purchase of a Stripe checkout session.
func (q *Queries) PurchaseBySession(ctx context.Context, sessionID string) (Purchase, error) {
	return q.onePurchase(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE stripe_session_id = $1`, sessionID)
}

// LockPurchaseBySession is PurchaseBySession holding the row lock until the
// transaction ends.
func (q *Queries) LockPurchaseBySession(ctx context.Context, sessionID string) (Purchase, error) {
	return q.onePurchase(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE stripe_session_id = $1 FOR UPDATE`, sessionID)
}

// LockPurchase is GetPurchase holding the row lock until the transaction ends.
func (q *Queries) LockPurchase(ctx context.Context, id string) (Purchase, error) {
	return q.onePurchase(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE id = $1 FOR UPDATE`, id)
}

// PurchaseByPaymentIntent returns the purchase paid by a payment intent.
func (q *Queries) PurchaseByPaymentIntent(ctx context.Context, paymentIntentID string) (Purchase, error) {
	return q.onePurchase(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE stripe_payment_intent_id = $1`, paymentIntentID)
}

// UserPurchases returns a user's purchases, newest first.
func (q *Queries) UserPurchases(ctx context.Context, userID string) ([]Purchase, error) {
	ps, err := q.purchases(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE user_id = $1
		ORDER BY created_at DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list user purchases: %w", err)
	}
	return ps, nil
}

// PurchasesByEmail returns the purchases made with an email, newest first.
func (q *Queries) PurchasesByEmail(ctx context.Context, email string) ([]Purchase, error) {
	ps, err := q.purchases(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE lower(email) = lower($1)
		ORDER BY created_at DESC`, email)
	if err != nil {
		return nil, fmt.Errorf("list purchases by email: %w", err)
	}
	return ps, nil
}

// UpdatePurchase writes every mutable column of p (found by id) and stamps
// updated_at.
func (q *Queries) UpdatePurchase(ctx context.Context, p Purchase, now time.Time) error {
	_, err := q.db.Exec(ctx, updatePurchaseSQL,
		p.ID, p.UserID, p.Email, p.Status, p.StripeCustomerID, p.StripePaymentIntentID, p.StripeChargeID,
		p.AmountTotal, p.AmountRefunded, p.Currency, p.GitHubUsername, p.AccessState, p.AccessRef,
		p.PromotionsConsent, p.RecoveryURL, p.SessionExpiresAt, p.Disputed, p.CompletedAt, now.UTC(), p.CheckedAt,
		p.ExpiredAt)
	if err != nil {
		return fmt.Errorf("update purchase %s: %w", p.ID, err)
	}
	return nil
}

const updatePurchaseSQL = `UPDATE purchases SET user_id = $2, email = $3, status = $4, stripe_customer_id = $5,
		stripe_payment_intent_id = $6, stripe_charge_id = $7, amount_total = $8, amount_refunded = $9,
		currency = $10, github_username = $11, access_state = $12, access_ref = $13, promotions_consent = $14,
		recovery_url = $15, session_expires_at = $16, disputed = $17, completed_at = $18, updated_at = $19,
		checked_at = $20, expired_at = $21
	WHERE id = $1`

// SetAccess records a purchase's access state and reference (for example a
// GitHub invitation id).
func (q *Queries) SetAccess(ctx context.Context, purchaseID string, state AccessState, ref *string, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE purchases SET access_state = $2, access_ref = $3, updated_at = $4 WHERE id = $1`,
		purchaseID, state, ref, now.UTC())
	if err != nil {
		return fmt.Errorf("set access of %s: %w", purchaseID, err)
	}
	return nil
}

// usec is t truncated to the microsecond, nil for nil.
func usec(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.Truncate(time.Microsecond)
	return &u
}
