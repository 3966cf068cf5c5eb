// Refunds and disputes: one row per Stripe object, keyed by its Stripe id,
// written by the reconciler from what Stripe says.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Refund is one row of the refunds table. Status is Stripe's: pending,
// requires_action, succeeded, failed or canceled.
type Refund struct {
	ID         string    `json:"id"`
	PurchaseID string    `json:"purchase_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Dispute is one row of the disputes table. Status is Stripe's
// (warning_needs_response, needs_response, under_review, won, lost, ...).
type Dispute struct {
	ID         string    `json:"id"`
	PurchaseID string    `json:"purchase_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// UpsertRefund records r, or updates its amount and status when they
// changed. It reports whether the row is new and whether anything changed.
func (q *Queries) UpsertRefund(ctx context.Context, r Refund, now time.Time) (inserted, changed bool, err error) {
	var wasInserted bool
	err = q.db.QueryRow(ctx, `
		INSERT INTO refunds (id, purchase_id, amount, currency, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
			WHERE (refunds.amount, refunds.status) IS DISTINCT FROM (EXCLUDED.amount, EXCLUDED.status)
		RETURNING (xmax = 0)`,
		r.ID, r.PurchaseID, r.Amount, r.Currency, r.Status, r.CreatedAt.UTC(), now.UTC()).Scan(&wasInserted)
	if err == pgx.ErrNoRows {
		return false, false, nil // present and unchanged
	}
	if err != nil {
		return false, false, fmt.Errorf("upsert refund %s: %w", r.ID, err)
	}
	return wasInserted, true, nil
}

// GetRefund returns the refund with a Stripe id.
func (q *Queries) GetRefund(ctx context.Context, id string) (Refund, error) {
	var r Refund
	err := q.db.QueryRow(ctx, `SELECT id, purchase_id, amount, currency, status, created_at, updated_at
		FROM refunds WHERE id = $1`, id).Scan(&r.ID, &r.PurchaseID, &r.Amount, &r.Currency, &r.Status, &r.CreatedAt, &r.UpdatedAt)
	return r, notFound(err)
}

// PurchaseRefunds returns a purchase's refunds, oldest first.
func (q *Queries) PurchaseRefunds(ctx context.Context, purchaseID string) ([]Refund, error) {
	rows, err := q.db.Query(ctx, `SELECT id, purchase_id, amount, currency, status, created_at, updated_at
		FROM refunds WHERE purchase_id = $1 ORDER BY created_at, id`, purchaseID)
	if err != nil {
		return nil, fmt.Errorf("list refunds: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Refund, error) {
		var r Refund
		err := row.Scan(&r.ID, &r.PurchaseID, &r.Amount, &r.Currency, &r.Status, &r.CreatedAt, &r.UpdatedAt)
		return r, err
	})
}

// UpsertDispute records d, or updates its status when it changed. It
// reports whether the row is new and whether anything changed.
func (q *Queries) UpsertDispute(ctx context.Context, d Dispute, now time.Time) (inserted, changed bool, err error) {
	var wasInserted bool
	err = q.db.QueryRow(ctx, `
		INSERT INTO disputes (id, purchase_id, amount, currency, status, reason, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at
			WHERE (disputes.status, disputes.amount) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.amount)
		RETURNING (xmax = 0)`,
		d.ID, d.PurchaseID, d.Amount, d.Currency, d.Status, d.Reason, d.CreatedAt.UTC(), now.UTC()).Scan(&wasInserted)
	if err == pgx.ErrNoRows {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("upsert dispute %s: %w", d.ID, err)
	}
	return wasInserted, true, nil
}

// HasLostDispute reports whether any dispute of the purchase was lost.
func (q *Queries) HasLostDispute(ctx context.Context, purchaseID string) (bool, error) {
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM disputes WHERE purchase_id = $1 AND status = 'lost')`,
		purchaseID).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("look up lost disputes: %w", err)
	}
	return yes, nil
}

// GetDispute returns the dispute with a Stripe id.
func (q *Queries) GetDispute(ctx context.Context, id string) (Dispute, error) {
	var d Dispute
	err := q.db.QueryRow(ctx, `SELECT id, purchase_id, amount, currency, status, reason, created_at, updated_at
		FROM disputes WHERE id = $1`, id).Scan(&d.ID, &d.PurchaseID, &d.Amount, &d.Currency, &d.Status, &d.Reason,
		&d.CreatedAt, &d.UpdatedAt)
	return d, notFound(err)
}
