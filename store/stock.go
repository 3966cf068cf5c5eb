// Stock: how many units of a product are left to sell, and which open
// orders hold some. A product without a product_stock row is not limited.
//
// Reserving is one conditional UPDATE per line (... WHERE on_hand -
// reserved >= n): the database decides, under the row's lock, whether the
// units are there, so two buyers on any number of replicas can never both
// take the last one, and the CHECKs keep every count at or above zero
// whatever a statement does. A reservation then moves once, guarded by its
// state: committed when its order is paid, released when the order ends
// unpaid; a repeated signal finds nothing to move.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReservationState is where an order's hold on a product is. The
// stock_reservations table's CHECK lists the same values.
type ReservationState string

// Reservation states.
const (
	// ReservationReserved: held by an open order.
	ReservationReserved ReservationState = "reserved"
	// ReservationCommitted: sold; the units left on_hand.
	ReservationCommitted ReservationState = "committed"
	// ReservationReleased: given back (the order ended unpaid).
	ReservationReleased ReservationState = "released"
)

// ReservationStates lists every ReservationState.
var ReservationStates = []ReservationState{ReservationReserved, ReservationCommitted, ReservationReleased}

// Stock is one product's row of product_stock.
type Stock struct {
	ProductKey string `json:"product"`
	// OnHand is what is left to sell; Reserved what open orders hold.
	OnHand   int `json:"on_hand"`
	Reserved int `json:"reserved"`
	// Oversold counts units paid for beyond OnHand (the stock was lowered
	// under open orders); each such order completed and alerted.
	Oversold  int       `json:"oversold"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Available is what a new checkout may still reserve.
func (s Stock) Available() int { return max(s.OnHand-s.Reserved, 0) }

// StockLine is a quantity of one product.
type StockLine struct {
	ProductKey string
	Quantity   int
}

// Reservation is one row of stock_reservations.
type Reservation struct {
	OrderID    string           `json:"order_id"`
	ProductKey string           `json:"product"`
	Quantity   int              `json:"quantity"`
	State      ReservationState `json:"state"`
	// Short is how many of the units were paid for beyond on_hand.
	Short int `json:"short"`
}

// OutOfStockError is a reservation refused: fewer than Requested units of
// ProductKey are available. Nothing was reserved.
type OutOfStockError struct {
	ProductKey string
	Requested  int
	Available  int
}

func (e *OutOfStockError) Error() string {
	return fmt.Sprintf("%s: %d requested, %d available", e.ProductKey, e.Requested, e.Available)
}

// ErrNegativeStock refuses a stock level below zero.
var ErrNegativeStock = errors.New("stock cannot be negative")

const stockColumns = `product_key, on_hand, reserved, oversold, updated_at`

func scanStock(row pgx.CollectableRow) (Stock, error) {
	var s Stock
	err := row.Scan(&s.ProductKey, &s.OnHand, &s.Reserved, &s.Oversold, &s.UpdatedAt)
	return s, err
}

// SetStock sets a product's units on hand, creating its row (and so
// limiting it) when it had none. Reservations held stay held: when onHand
// is below them, new checkouts wait and the orders already holding units
// complete when paid, counted in oversold.
func (q *Queries) SetStock(ctx context.Context, productKey string, onHand int, now time.Time) (Stock, error) {
	if onHand < 0 {
		return Stock{}, ErrNegativeStock
	}
	rows, err := q.db.Query(ctx, `INSERT INTO product_stock (product_key, on_hand, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (product_key) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at
		RETURNING `+stockColumns, productKey, onHand, now.UTC())
	if err != nil {
		return Stock{}, fmt.Errorf("set stock of %s: %w", productKey, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanStock)
	if err != nil {
		return Stock{}, fmt.Errorf("set stock of %s: %w", productKey, err)
	}
	return s, nil
}

// SeedStock creates a product's stock row with onHand units unless it has
// one: config.yaml's initial stock is applied once, and the database is the
// truth from then on. It reports whether the row was created.
func (q *Queries) SeedStock(ctx context.Context, productKey string, onHand int, now time.Time) (bool, error) {
	if onHand < 0 {
		return false, ErrNegativeStock
	}
	tag, err := q.db.Exec(ctx, `INSERT INTO product_stock (product_key, on_hand, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (product_key) DO NOTHING`, productKey, onHand, now.UTC())
	if err != nil {
		return false, fmt.Errorf("seed stock of %s: %w", productKey, err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetStock returns a product's stock, or ErrNotFound when it is not limited.
func (q *Queries) GetStock(ctx context.Context, productKey string) (Stock, error) {
	rows, err := q.db.Query(ctx, `SELECT `+stockColumns+` FROM product_stock WHERE product_key = $1`, productKey)
	if err != nil {
		return Stock{}, fmt.Errorf("get stock of %s: %w", productKey, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanStock)
	return s, notFound(err)
}

// StockLevels returns every stocked product, by key.
func (q *Queries) StockLevels(ctx context.Context) ([]Stock, error) {
	rows, err := q.db.Query(ctx, `SELECT `+stockColumns+` FROM product_stock ORDER BY product_key`)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanStock)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	return out, nil
}

// reserveSQL takes n units of a product if they are available and records
// the order's reservation, in one statement (the hot row's lock is held
// from it to the commit, so fewer round trips mean more checkouts a
// second): the condition is evaluated on the row as it is once locked, so
// concurrent reservations queue on the row and each sees the one before it.
const reserveSQL = `WITH taken AS (
		UPDATE product_stock SET reserved = reserved + $2, updated_at = $3
		WHERE product_key = $1 AND on_hand - reserved >= $2
		RETURNING product_key)
	INSERT INTO stock_reservations (order_id, product_key, quantity, state, created_at, updated_at)
	SELECT $4, product_key, $2, 'reserved', $3, $3 FROM taken`

// ReserveStock reserves lines for order orderID, in the caller's
// transaction (the one that records the order). Lines of products without
// stock are not limited and reserve nothing. When a product has fewer units
// available than its line asks, it returns an *OutOfStockError and the
// caller must roll back: earlier lines may already be reserved in the
// transaction. Lines are taken in product order, so two orders never wait
// on each other's rows.
func (q *Queries) ReserveStock(ctx context.Context, orderID string, lines []StockLine, now time.Time) error {
	lines = slices.Clone(lines)
	slices.SortFunc(lines, func(a, b StockLine) int { return strings.Compare(a.ProductKey, b.ProductKey) })
	for _, l := range lines {
		if l.Quantity <= 0 {
			return fmt.Errorf("reserve %s: quantity %d", l.ProductKey, l.Quantity)
		}
		tag, err := q.db.Exec(ctx, reserveSQL, l.ProductKey, l.Quantity, now.UTC(), orderID)
		if err != nil {
			return fmt.Errorf("reserve %s: %w", l.ProductKey, err)
		}
		if tag.RowsAffected() == 0 {
			s, err := q.GetStock(ctx, l.ProductKey)
			switch {
			case errors.Is(err, ErrNotFound):
				continue // not limited
			case err != nil:
				return fmt.Errorf("reserve %s: %w", l.ProductKey, err)
			}
			return &OutOfStockError{ProductKey: l.ProductKey, Requested: l.Quantity, Available: s.Available()}
		}
	}
	return nil
}

// ReleaseStock gives back what order orderID holds, once: reservations
// still reserved become released and their units available again. A
// second call (a repeated webhook) finds nothing reserved and changes
// nothing. It returns what it released.
func (q *Queries) ReleaseStock(ctx context.Context, orderID string, now time.Time) ([]Reservation, error) {
	// The stock rows are locked in product order first, as ReserveStock
	// takes them, so a release never deadlocks with a reservation.
	batch := &pgx.Batch{}
	batch.Queue(`SELECT 1 FROM product_stock WHERE product_key IN (
			SELECT product_key FROM stock_reservations WHERE order_id = $1 AND state = 'reserved')
		ORDER BY product_key FOR UPDATE`, orderID)
	batch.Queue(`WITH moved AS (
			UPDATE stock_reservations SET state = 'released', updated_at = $2
			WHERE order_id = $1 AND state = 'reserved'
			RETURNING product_key, quantity)
		UPDATE product_stock s SET reserved = s.reserved - m.quantity, updated_at = $2
		FROM moved m WHERE s.product_key = m.product_key
		RETURNING m.product_key, m.quantity`, orderID, now.UTC())
	res := q.db.SendBatch(ctx, batch)
	defer res.Close()
	if _, err := res.Exec(); err != nil {
		return nil, fmt.Errorf("release stock of %s: %w", orderID, err)
	}
	rows, err := res.Query()
	if err != nil {
		return nil, fmt.Errorf("release stock of %s: %w", orderID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reservation, error) {
		r := Reservation{OrderID: orderID, State: ReservationReleased}
		return r, row.Scan(&r.ProductKey, &r.Quantity)
	})
	if err != nil {
		return nil, fmt.Errorf("release stock of %s: %w", orderID, err)
	}
	return out, res.Close()
}

// CommitStock makes what order orderID holds sold, once: its units leave
// on_hand (and reserved, for those still reserved; a reservation released
// before a late payment is taken again). Units beyond on_hand (the stock was
// lowered meanwhile) are counted in oversold and in the reservation's
// Short, and on_hand stays at zero: a paid order is never refused. A second
// call finds nothing to commit. It returns what it committed.
//
// The reservations and their stock rows are read under their row locks and
// written in the same transaction, in product order; the decision of how
// much is short needs the level before the write, which one UPDATE cannot
// return.
func (q *Queries) CommitStock(ctx context.Context, orderID string, now time.Time) ([]Reservation, error) {
	rows, err := q.db.Query(ctx, `SELECT r.product_key, r.quantity, r.state, s.on_hand
		FROM stock_reservations r JOIN product_stock s USING (product_key)
		WHERE r.order_id = $1 AND r.state <> 'committed'
		ORDER BY r.product_key FOR UPDATE`, orderID)
	if err != nil {
		return nil, fmt.Errorf("commit stock of %s: %w", orderID, err)
	}
	type held struct {
		r      Reservation
		onHand int
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (held, error) {
		h := held{r: Reservation{OrderID: orderID}}
		return h, row.Scan(&h.r.ProductKey, &h.r.Quantity, &h.r.State, &h.onHand)
	})
	if err != nil || len(hs) == 0 {
		if err != nil {
			err = fmt.Errorf("commit stock of %s: %w", orderID, err)
		}
		return nil, err
	}
	batch := &pgx.Batch{}
	out := make([]Reservation, len(hs))
	for i, h := range hs {
		short := max(h.r.Quantity-h.onHand, 0)
		wasHeld := 0
		if h.r.State == ReservationReserved {
			wasHeld = h.r.Quantity
		}
		batch.Queue(`UPDATE product_stock SET on_hand = $2, reserved = reserved - $3, oversold = oversold + $4,
			updated_at = $5 WHERE product_key = $1`, h.r.ProductKey, max(h.onHand-h.r.Quantity, 0), wasHeld, short, now.UTC())
		batch.Queue(`UPDATE stock_reservations SET state = 'committed', short = $3, updated_at = $4
			WHERE order_id = $1 AND product_key = $2`, orderID, h.r.ProductKey, short, now.UTC())
		out[i] = h.r
		out[i].State, out[i].Short = ReservationCommitted, short
	}
	if err := q.db.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("commit stock of %s: %w", orderID, err)
	}
	return out, nil
}

// OrderReservations returns what order orderID holds or held, by product.
func (q *Queries) OrderReservations(ctx context.Context, orderID string) ([]Reservation, error) {
	rows, err := q.db.Query(ctx, `SELECT order_id::text, product_key, quantity, state, short FROM stock_reservations
		WHERE order_id = $1 ORDER BY product_key`, orderID)
	if err != nil {
		return nil, fmt.Errorf("list reservations of %s: %w", orderID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reservation, error) {
		var r Reservation
		return r, row.Scan(&r.OrderID, &r.ProductKey, &r.Quantity, &r.State, &r.Short)
	})
	if err != nil {
		return nil, fmt.Errorf("list reservations of %s: %w", orderID, err)
	}
	return out, nil
}
