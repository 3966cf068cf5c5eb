// Order grants: what an access provider was asked to give an order's buyer,
// recorded before the provider is called, as access_grants does for
// purchases. Every GitHub product opens the one repository, so an order has
// one GitHub grant per account, whatever its lines; the webhook provider
// gets one grant per product the order bought.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OrderGrant is one row of order_grants.
type OrderGrant struct {
	ID       int64    `json:"id"`
	OrderID  string   `json:"order_id"`
	Provider Provider `json:"provider"`
	// ProductKey is the product a webhook grant is for; "" for GitHub.
	ProductKey   string     `json:"product,omitempty"`
	GitHubUserID int64      `json:"github_user_id,omitempty"`
	GitHubLogin  string     `json:"github_login,omitempty"`
	InvitationID int64      `json:"invitation_id,omitempty"`
	Preexisting  bool       `json:"preexisting"`
	State        GrantState `json:"state"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

const orderGrantColumns = `id, order_id::text, provider, product_key, coalesce(github_user_id, 0),
	coalesce(github_login, ''), coalesce(invitation_id, 0), preexisting, state, created_at, updated_at`

func scanOrderGrant(row pgx.CollectableRow) (OrderGrant, error) {
	var g OrderGrant
	err := row.Scan(&g.ID, &g.OrderID, &g.Provider, &g.ProductKey, &g.GitHubUserID, &g.GitHubLogin, &g.InvitationID,
		&g.Preexisting, &g.State, &g.CreatedAt, &g.UpdatedAt)
	return g, err
}

// RecordOrderGrantAttempt records, before the provider is called, that g
// is about to be granted: a new pending row, or the order's row for the
// same provider, product and account made pending again. Preexisting is
// taken only for a new or revoked grant, as RecordGrantAttempt does.
func (q *Queries) RecordOrderGrantAttempt(ctx context.Context, g OrderGrant, now time.Time) (OrderGrant, error) {
	rows, err := q.db.Query(ctx, `
		INSERT INTO order_grants AS g (order_id, provider, product_key, github_user_id, github_login, preexisting, state,
			created_at, updated_at)
		VALUES ($1, $2, $3, nullif($4::bigint, 0), nullif($5, ''), $6, 'pending', $7, $7)
		ON CONFLICT (order_id, provider, product_key, (coalesce(github_user_id, 0))) DO UPDATE SET
			state = 'pending',
			github_login = coalesce(nullif($5, ''), g.github_login),
			preexisting = CASE WHEN g.state = 'revoked' THEN EXCLUDED.preexisting ELSE g.preexisting END,
			updated_at = $7
		RETURNING `+orderGrantColumns,
		g.OrderID, g.Provider, g.ProductKey, g.GitHubUserID, g.GitHubLogin, g.Preexisting, now.UTC())
	if err != nil {
		return OrderGrant{}, fmt.Errorf("record grant attempt for order %s: %w", g.OrderID, err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanOrderGrant)
	if err != nil {
		return OrderGrant{}, fmt.Errorf("record grant attempt for order %s: %w", g.OrderID, err)
	}
	return out, nil
}

// MarkOrderGrantGranted records that order grant id completed, with the
// invitation GitHub created (0 keeps the one recorded).
func (q *Queries) MarkOrderGrantGranted(ctx context.Context, id, invitationID int64, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE order_grants SET state = 'granted',
			invitation_id = coalesce(nullif($2::bigint, 0), invitation_id), updated_at = $3
		WHERE id = $1`, id, invitationID, now.UTC())
	if err != nil {
		return fmt.Errorf("mark order grant %d granted: %w", id, err)
	}
	return nil
}

// MarkOrderGrantsRevoked records that the order grants ids were taken back.
func (q *Queries) MarkOrderGrantsRevoked(ctx context.Context, ids []int64, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := q.db.Exec(ctx, `UPDATE order_grants SET state = 'revoked', updated_at = $2 WHERE id = ANY($1)`, ids, now.UTC())
	if err != nil {
		return fmt.Errorf("mark order grants %v revoked: %w", ids, err)
	}
	return nil
}

// OrderGrants returns an order's grants, oldest first.
func (q *Queries) OrderGrants(ctx context.Context, orderID string) ([]OrderGrant, error) {
	rows, err := q.db.Query(ctx, `SELECT `+orderGrantColumns+` FROM order_grants WHERE order_id = $1 ORDER BY id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("list grants of order %s: %w", orderID, err)
	}
	gs, err := pgx.CollectRows(rows, scanOrderGrant)
	if err != nil {
		return nil, fmt.Errorf("list grants of order %s: %w", orderID, err)
	}
	return gs, nil
}

// Grant is g as a Grant (with OrderID set), for the rules purchases,
// subscriptions and orders share.
func (g OrderGrant) Grant() Grant {
	return Grant{ID: g.ID, OrderID: g.OrderID, Provider: g.Provider, GitHubUserID: g.GitHubUserID,
		GitHubLogin: g.GitHubLogin, InvitationID: g.InvitationID, Preexisting: g.Preexisting, State: g.State,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

// OrdersWithGitHubGrants returns, a page at a time by id, the orders that
// have a GitHub grant in any state: those the access drift pass compares
// with GitHub (an order with none yet waits for its buyer to name an
// account).
func (q *Queries) OrdersWithGitHubGrants(ctx context.Context, afterID string, limit int) ([]Order, error) {
	os, err := q.orders(ctx, `SELECT `+orderColumns+` FROM orders WHERE id IN (
			SELECT DISTINCT order_id FROM order_grants WHERE provider = 'github' AND order_id > $1::uuid
			ORDER BY order_id LIMIT $2)
		ORDER BY id`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list orders with github grants: %w", err)
	}
	return os, nil
}

// OrderGrantsOf returns the grants of each of the orders, by order id,
// oldest first.
func (q *Queries) OrderGrantsOf(ctx context.Context, orderIDs []string) (map[string][]OrderGrant, error) {
	rows, err := q.db.Query(ctx, `SELECT `+orderGrantColumns+` FROM order_grants WHERE order_id = ANY($1::uuid[])
		ORDER BY id`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("list order grants: %w", err)
	}
	gs, err := pgx.CollectRows(rows, scanOrderGrant)
	if err != nil {
		return nil, fmt.Errorf("list order grants: %w", err)
	}
	out := make(map[string][]OrderGrant, len(orderIDs))
	for _, g := range gs {
		out[g.OrderID] = append(out[g.OrderID], g)
	}
	return out, nil
}
