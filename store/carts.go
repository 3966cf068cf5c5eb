// Carts: one per user, replaced whole on every change and kept for the
// configured time since its last change. A cart past its expiry reads as
// empty and is pruned by the reconciler's sweep.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CartItem is one line of a cart: a product and how many.
type CartItem struct {
	Product  string `json:"product"`
	Quantity int    `json:"quantity"`
}

// Cart is one row of the carts table.
type Cart struct {
	UserID        string     `json:"user_id"`
	Items         []CartItem `json:"items"`
	PromotionCode *string    `json:"promotion_code"`
	UpdatedAt     time.Time  `json:"updated_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
}

// GetCart returns the user's cart as of now: an empty one when the user has
// none or it expired.
func (q *Queries) GetCart(ctx context.Context, userID string, now time.Time) (Cart, error) {
	var c Cart
	var items []byte
	err := q.db.QueryRow(ctx, `SELECT user_id, items, promotion_code, updated_at, expires_at FROM carts
		WHERE user_id = $1 AND expires_at > $2`, userID, now.UTC()).Scan(&c.UserID, &items, &c.PromotionCode,
		&c.UpdatedAt, &c.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cart{UserID: userID, Items: []CartItem{}}, nil
	}
	if err != nil {
		return Cart{}, fmt.Errorf("get cart of %s: %w", userID, err)
	}
	if err := json.Unmarshal(items, &c.Items); err != nil {
		return Cart{}, fmt.Errorf("get cart of %s: %w", userID, err)
	}
	return c, nil
}

// PutCart replaces the user's cart with c (its items and promotion code),
// dated now and kept until now + ttl. An empty cart without a code is
// deleted.
func (q *Queries) PutCart(ctx context.Context, c Cart, now time.Time, ttl time.Duration) (Cart, error) {
	now = now.Truncate(time.Microsecond) // as stored, so the cart returned reads back the same
	if len(c.Items) == 0 && c.PromotionCode == nil {
		if _, err := q.db.Exec(ctx, `DELETE FROM carts WHERE user_id = $1`, c.UserID); err != nil {
			return Cart{}, fmt.Errorf("empty cart of %s: %w", c.UserID, err)
		}
		return Cart{UserID: c.UserID, Items: []CartItem{}, UpdatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC()}, nil
	}
	if c.Items == nil {
		c.Items = []CartItem{}
	}
	items, err := json.Marshal(c.Items)
	if err != nil {
		return Cart{}, fmt.Errorf("put cart of %s: %w", c.UserID, err)
	}
	c.UpdatedAt, c.ExpiresAt = now.UTC(), now.Add(ttl).UTC()
	_, err = q.db.Exec(ctx, `INSERT INTO carts (user_id, items, promotion_code, updated_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET items = EXCLUDED.items, promotion_code = EXCLUDED.promotion_code,
			updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at`,
		c.UserID, items, c.PromotionCode, c.UpdatedAt, c.ExpiresAt)
	if err != nil {
		return Cart{}, fmt.Errorf("put cart of %s: %w", c.UserID, err)
	}
	return c, nil
}

// TakeFromCart removes what a paid order bought from its buyer's cart:
// each line's quantity comes off the cart's line for the same product, and
// the promotion code goes when the order used it. A cart left unchanged
// since the checkout is thereby emptied; one changed since keeps what was
// added. Its expiry is left as it is.
func (q *Queries) TakeFromCart(ctx context.Context, userID string, lines []OrderLine, promotionCode *string) error {
	var items []byte
	var code *string
	err := q.db.QueryRow(ctx, `SELECT items, promotion_code FROM carts WHERE user_id = $1 FOR UPDATE`, userID).Scan(&items, &code)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("take order from cart of %s: %w", userID, err)
	}
	var cur []CartItem
	if err := json.Unmarshal(items, &cur); err != nil {
		return fmt.Errorf("take order from cart of %s: %w", userID, err)
	}
	bought := map[string]int{}
	for _, l := range lines {
		bought[l.ProductKey] += l.Quantity
	}
	left := cur[:0]
	for _, it := range cur {
		it.Quantity -= bought[it.Product]
		if it.Quantity > 0 {
			left = append(left, it)
		}
	}
	if code != nil && promotionCode != nil && *code == *promotionCode {
		code = nil
	}
	if len(left) == 0 && code == nil {
		_, err = q.db.Exec(ctx, `DELETE FROM carts WHERE user_id = $1`, userID)
	} else {
		if items, err = json.Marshal(left); err == nil {
			_, err = q.db.Exec(ctx, `UPDATE carts SET items = $2, promotion_code = $3 WHERE user_id = $1`, userID, items, code)
		}
	}
	if err != nil {
		return fmt.Errorf("take order from cart of %s: %w", userID, err)
	}
	return nil
}

// PruneCarts deletes up to limit carts that expired before now and
// returns how many it deleted.
func (q *Queries) PruneCarts(ctx context.Context, now time.Time, limit int) (int, error) {
	tag, err := q.db.Exec(ctx, `DELETE FROM carts WHERE user_id IN (
		SELECT user_id FROM carts WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`, now.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("prune carts: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
