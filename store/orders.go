// Orders: one row per checkout of a cart, recorded with its lines and its
// stock reserved before the Stripe object exists, then keyed by that object
// (a Checkout Session for a hosted order, a PaymentIntent for an embedded
// one). Statuses move pending → processing → paid → partially_refunded →
// refunded, or from pending or processing to canceled, expired or failed;
// a late payment takes an ended order to paid, never the reverse.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OrderStatus is where an order is in its lifecycle. The orders table's
// CHECK lists the same values (TestStatesMatchChecks).
type OrderStatus string

// Order statuses.
const (
	OrderPending           OrderStatus = "pending"
	OrderProcessing        OrderStatus = "processing"
	OrderPaid              OrderStatus = "paid"
	OrderPartiallyRefunded OrderStatus = "partially_refunded"
	OrderRefunded          OrderStatus = "refunded"
	OrderCanceled          OrderStatus = "canceled"
	OrderExpired           OrderStatus = "expired"
	OrderFailed            OrderStatus = "failed"
)

// OrderStatuses lists every OrderStatus.
var OrderStatuses = []OrderStatus{OrderPending, OrderProcessing, OrderPaid, OrderPartiallyRefunded, OrderRefunded,
	OrderCanceled, OrderExpired, OrderFailed}

// Open reports whether an order in status s may still be paid: its stock
// is held.
func (s OrderStatus) Open() bool { return s == OrderPending || s == OrderProcessing }

// Paid reports whether an order in status s was paid (whatever was
// refunded since).
func (s OrderStatus) Paid() bool {
	return s == OrderPaid || s == OrderPartiallyRefunded || s == OrderRefunded
}

// Entitled reports whether an order in status s gives its buyer what it
// bought: paid and not fully refunded.
func (s OrderStatus) Entitled() bool { return s == OrderPaid || s == OrderPartiallyRefunded }

// Ended reports whether an order in status s ended unpaid.
func (s OrderStatus) Ended() bool { return s == OrderCanceled || s == OrderExpired || s == OrderFailed }

// UIMode is how an order is paid. The orders table's CHECK lists the same
// values.
type UIMode string

// UI modes.
const (
	// UIModeHosted: a Checkout Session, paid on Stripe's page.
	UIModeHosted UIMode = "hosted"
	// UIModeEmbedded: a PaymentIntent, paid on the storefront with Stripe
	// Elements.
	UIModeEmbedded UIMode = "embedded"
)

// UIModes lists every UIMode.
var UIModes = []UIMode{UIModeHosted, UIModeEmbedded}

// Order is one row of the orders table.
type Order struct {
	ID     string      `json:"id"`
	UserID string      `json:"user_id"`
	Email  *string     `json:"email"`
	UIMode UIMode      `json:"ui_mode"`
	Status OrderStatus `json:"status"`
	// Amounts in minor units of Currency, as Stripe computed them (the
	// session's totals; an embedded order's are what its intent charges).
	Currency       string `json:"currency"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountDiscount int64  `json:"amount_discount"`
	AmountTax      int64  `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
	AmountRefunded int64  `json:"amount_refunded"`
	// PromotionCode is the code the buyer typed, PromotionCodeID Stripe's id.
	PromotionCode   *string `json:"promotion_code"`
	PromotionCodeID *string `json:"promotion_code_id"`
	// CouponID is the code's coupon (set at insert, never changed).
	CouponID              *string `json:"coupon_id"`
	StripeSessionID       *string `json:"stripe_session_id"`
	StripePaymentIntentID *string `json:"stripe_payment_intent_id"`
	StripeCustomerID      *string `json:"stripe_customer_id"`
	StripeChargeID        *string `json:"stripe_charge_id"`
	// ClientSecret is an embedded order's intent's, for Stripe Elements;
	// CheckoutURL a hosted order's session page.
	ClientSecret     *string `json:"-"`
	CheckoutURL      *string `json:"checkout_url"`
	TaxCalculationID *string `json:"tax_calculation_id"`
	GitHubUsername   *string `json:"github_username"`
	// FailedAttempts counts declined attempts on an embedded order's
	// intent; LastPaymentError is Stripe's last decline code or message.
	FailedAttempts   int     `json:"failed_attempts"`
	LastPaymentError *string `json:"last_payment_error"`
	// StockShort is set when the order was paid for units no longer in
	// stock (the operator was alerted).
	StockShort bool `json:"stock_short"`
	// ExpiresAt ends an unpaid order: its session's expires_at, or when
	// paymentd cancels its intent.
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	PaidAt    *time.Time `json:"paid_at"`
	EndedAt   *time.Time `json:"ended_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	CheckedAt *time.Time `json:"checked_at"`
}

// StripeObjectID is the id of the Stripe object that keys the order: its
// session (hosted) or its intent (embedded); "" before it exists.
func (o Order) StripeObjectID() string {
	if o.UIMode == UIModeHosted {
		if o.StripeSessionID != nil {
			return *o.StripeSessionID
		}
		return ""
	}
	if o.StripePaymentIntentID != nil {
		return *o.StripePaymentIntentID
	}
	return ""
}

// OrderLine is one line of an order.
type OrderLine struct {
	OrderID        string `json:"-"`
	Line           int    `json:"line"`
	ProductKey     string `json:"product"`
	Quantity       int    `json:"quantity"`
	UnitAmount     int64  `json:"unit_amount"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountDiscount int64  `json:"amount_discount"`
	AmountTax      int64  `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
}

const orderColumns = `id, user_id, email, ui_mode, status, currency, amount_subtotal, amount_discount, amount_tax,
	amount_total, amount_refunded, promotion_code, promotion_code_id, stripe_session_id, stripe_payment_intent_id,
	stripe_customer_id, stripe_charge_id, client_secret, checkout_url, tax_calculation_id, github_username,
	failed_attempts, last_payment_error, stock_short, expires_at, created_at, paid_at, ended_at, updated_at, checked_at,
	coupon_id`

func scanOrder(row pgx.CollectableRow) (Order, error) {
	var o Order
	err := row.Scan(&o.ID, &o.UserID, &o.Email, &o.UIMode, &o.Status, &o.Currency, &o.AmountSubtotal, &o.AmountDiscount,
		&o.AmountTax, &o.AmountTotal, &o.AmountRefunded, &o.PromotionCode, &o.PromotionCodeID, &o.StripeSessionID,
		&o.StripePaymentIntentID, &o.StripeCustomerID, &o.StripeChargeID, &o.ClientSecret, &o.CheckoutURL,
		&o.TaxCalculationID, &o.GitHubUsername, &o.FailedAttempts, &o.LastPaymentError, &o.StockShort, &o.ExpiresAt,
		&o.CreatedAt, &o.PaidAt, &o.EndedAt, &o.UpdatedAt, &o.CheckedAt, &o.CouponID)
	return o, err
}

func (q *Queries) oneOrder(ctx context.Context, sql string, args ...any) (Order, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return Order{}, err
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
	return o, notFound(err)
}

func (q *Queries) orders(ctx context.Context, sql string, args ...any) ([]Order, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOrder)
}

// InsertOrder records a new order and its lines.
func (q *Queries) InsertOrder(ctx context.Context, o Order, lines []OrderLine) error {
	_, err := q.db.Exec(ctx, `INSERT INTO orders (`+orderColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
			$23, $24, $25, $26, $27, $28, $29, $30, $31)`,
		o.ID, o.UserID, o.Email, o.UIMode, o.Status, o.Currency, o.AmountSubtotal, o.AmountDiscount, o.AmountTax,
		o.AmountTotal, o.AmountRefunded, o.PromotionCode, o.PromotionCodeID, o.StripeSessionID, o.StripePaymentIntentID,
		o.StripeCustomerID, o.StripeChargeID, o.ClientSecret, o.CheckoutURL, o.TaxCalculationID, o.GitHubUsername,
		o.FailedAttempts, o.LastPaymentError, o.StockShort, o.ExpiresAt.UTC(), o.CreatedAt.UTC(), o.PaidAt, o.EndedAt,
		o.UpdatedAt.UTC(), o.CheckedAt, o.CouponID)
	if err != nil {
		return fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	return q.SetOrderLines(ctx, o.ID, lines)
}

// SetOrderLines replaces the lines of order orderID.
func (q *Queries) SetOrderLines(ctx context.Context, orderID string, lines []OrderLine) error {
	batch := &pgx.Batch{}
	batch.Queue(`DELETE FROM order_lines WHERE order_id = $1`, orderID)
	for _, l := range lines {
		batch.Queue(`INSERT INTO order_lines (order_id, line, product_key, quantity, unit_amount, amount_subtotal,
			amount_discount, amount_tax, amount_total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			orderID, l.Line, l.ProductKey, l.Quantity, l.UnitAmount, l.AmountSubtotal, l.AmountDiscount, l.AmountTax,
			l.AmountTotal)
	}
	if err := q.db.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("set lines of order %s: %w", orderID, err)
	}
	return nil
}

// OrderLines returns an order's lines in order.
func (q *Queries) OrderLines(ctx context.Context, orderID string) ([]OrderLine, error) {
	m, err := q.LinesOf(ctx, []string{orderID})
	return m[orderID], err
}

// LinesOf returns the lines of the given orders, keyed by order id.
func (q *Queries) LinesOf(ctx context.Context, orderIDs []string) (map[string][]OrderLine, error) {
	rows, err := q.db.Query(ctx, `SELECT order_id::text, line, product_key, quantity, unit_amount, amount_subtotal,
			amount_discount, amount_tax, amount_total
		FROM order_lines WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, line`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("list order lines: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OrderLine, error) {
		var l OrderLine
		return l, row.Scan(&l.OrderID, &l.Line, &l.ProductKey, &l.Quantity, &l.UnitAmount, &l.AmountSubtotal,
			&l.AmountDiscount, &l.AmountTax, &l.AmountTotal)
	})
	if err != nil {
		return nil, fmt.Errorf("list order lines: %w", err)
	}
	out := make(map[string][]OrderLine, len(orderIDs))
	for _, l := range ls {
		out[l.OrderID] = append(out[l.OrderID], l)
	}
	return out, nil
}

// GetOrder returns the order with id.
func (q *Queries) GetOrder(ctx context.Context, id string) (Order, error) {
	return q.oneOrder(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id)
}

// LockOrder is GetOrder holding the row lock until the transaction ends.
func (q *Queries) LockOrder(ctx context.Context, id string) (Order, error) {
	return q.oneOrder(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 FOR UPDATE`, id)
}

// OrderBySession returns the order of a Checkout Session.
func (q *Queries) OrderBySession(ctx context.Context, sessionID string) (Order, error) {
	return q.oneOrder(ctx, `SELECT `+orderColumns+` FROM orders WHERE stripe_session_id = $1`, sessionID)
}

// OrderByPaymentIntent returns the order a PaymentIntent pays (an
// embedded order's own, or a hosted order's session's once recorded).
func (q *Queries) OrderByPaymentIntent(ctx context.Context, paymentIntentID string) (Order, error) {
	return q.oneOrder(ctx, `SELECT `+orderColumns+` FROM orders WHERE stripe_payment_intent_id = $1`, paymentIntentID)
}

// UserOrders returns a user's orders, newest first, at most limit.
func (q *Queries) UserOrders(ctx context.Context, userID string, limit int) ([]Order, error) {
	os, err := q.orders(ctx, `SELECT `+orderColumns+` FROM orders WHERE user_id = $1
		ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("list orders of %s: %w", userID, err)
	}
	return os, nil
}

// UpdateOrder writes every mutable column of o (found by id) and stamps
// updated_at.
func (q *Queries) UpdateOrder(ctx context.Context, o Order, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE orders SET email = $2, status = $3, currency = $4, amount_subtotal = $5,
			amount_discount = $6, amount_tax = $7, amount_total = $8, amount_refunded = $9, promotion_code = $10,
			promotion_code_id = $11, stripe_session_id = $12, stripe_payment_intent_id = $13, stripe_customer_id = $14,
			stripe_charge_id = $15, client_secret = $16, checkout_url = $17, tax_calculation_id = $18,
			github_username = $19, failed_attempts = $20, last_payment_error = $21, stock_short = $22,
			expires_at = $23, paid_at = $24, ended_at = $25, updated_at = $26, checked_at = $27
		WHERE id = $1`,
		o.ID, o.Email, o.Status, o.Currency, o.AmountSubtotal, o.AmountDiscount, o.AmountTax, o.AmountTotal,
		o.AmountRefunded, o.PromotionCode, o.PromotionCodeID, o.StripeSessionID, o.StripePaymentIntentID,
		o.StripeCustomerID, o.StripeChargeID, o.ClientSecret, o.CheckoutURL, o.TaxCalculationID, o.GitHubUsername,
		o.FailedAttempts, o.LastPaymentError, o.StockShort, o.ExpiresAt.UTC(), o.PaidAt, o.EndedAt, now.UTC(),
		o.CheckedAt)
	if err != nil {
		return fmt.Errorf("update order %s: %w", o.ID, err)
	}
	return nil
}

// DueOpenOrders returns up to limit open orders the reconciler should
// compare with Stripe now: those past their expiry and those not compared
// since checkBefore, oldest check first, leaving out those whose Stripe
// object is backing off after failures.
func (q *Queries) DueOpenOrders(ctx context.Context, now, checkBefore time.Time, limit int) ([]Order, error) {
	os, err := q.orders(ctx, `SELECT `+orderColumns+` FROM orders o
		WHERE status IN ('pending', 'processing')
			AND (coalesce(checked_at, created_at) <= $2 OR expires_at <= $1)
			AND coalesce(checked_at, created_at) < $1
			AND NOT EXISTS (SELECT 1 FROM reconcile_errors e WHERE e.object_id = o.id::text AND e.next_attempt_at > $1)
		ORDER BY coalesce(checked_at, created_at) LIMIT $3`, now.UTC(), checkBefore.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list due open orders: %w", err)
	}
	return os, nil
}

// MarkOrderChecked records that the reconciler compared an order with Stripe.
func (q *Queries) MarkOrderChecked(ctx context.Context, orderID string, now time.Time) error {
	if _, err := q.db.Exec(ctx, `UPDATE orders SET checked_at = $2 WHERE id = $1`, orderID, now.UTC()); err != nil {
		return fmt.Errorf("mark order checked: %w", err)
	}
	return nil
}

// holdingStatuses are the statuses of an order that holds a use of its
// promotion code: open (it may still be paid) or paid. An order that ended
// unpaid frees its use.
func holdingStatuses() []string {
	var out []string
	for _, s := range OrderStatuses {
		if s.Open() || s.Paid() {
			out = append(out, string(s))
		}
	}
	return out
}

// PromotionUse counts the embedded orders holding a use of a promotion
// code (Code) and of its coupon, through any of the coupon's codes
// (Coupon).
type PromotionUse struct {
	Code, Coupon int
}

// PromotionUses counts the embedded orders, open or paid, holding a use of
// promotion code promotionCodeID and of coupon couponID (none when "").
// Called after LockPromotion in the transaction that records an order, the
// counts cannot change before it commits.
func (q *Queries) PromotionUses(ctx context.Context, promotionCodeID, couponID string) (PromotionUse, error) {
	var u PromotionUse
	err := q.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE promotion_code_id = $1),
			count(*) FILTER (WHERE coupon_id = $2)
		FROM orders WHERE (promotion_code_id = $1 OR coupon_id = $2) AND ui_mode = 'embedded' AND status = ANY($3)`,
		promotionCodeID, couponID, holdingStatuses()).Scan(&u.Code, &u.Coupon)
	if err != nil {
		return u, fmt.Errorf("count uses of promotion code %s: %w", promotionCodeID, err)
	}
	return u, nil
}

// promotionLockClass is the first key of the advisory locks taken on
// coupons and users by LockPromotion: the two-key lock space is apart from
// the one-key locks paymentd holds for a session (migration, poller),
// which a hash could otherwise collide with and block on for good.
const promotionLockClass = 0x70726f6d // "prom"

// LockPromotion serialises, until the transaction ends, the checkouts
// using coupon couponID (whichever of its promotion codes they use) and,
// when userID is not "", those of that user with a first-time code: a
// checkout counts the uses held and records its order under the lock, so
// two cannot both take the last one. q must be a transaction. Locks are
// taken coupon first, user second, in every transaction, so they cannot
// deadlock.
func (q *Queries) LockPromotion(ctx context.Context, couponID, userID string) error {
	if _, err := q.db.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext('coupon:' || $2))`,
		promotionLockClass, couponID); err != nil {
		return fmt.Errorf("lock coupon %s: %w", couponID, err)
	}
	if userID == "" {
		return nil
	}
	if _, err := q.db.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext('user:' || $2))`,
		promotionLockClass, userID); err != nil {
		return fmt.Errorf("lock promotions of %s: %w", userID, err)
	}
	return nil
}

// UserHasOpenDiscountedOrder reports whether the user has an open embedded
// order with a promotion code: paid later, it would make another first-time
// code not theirs to use.
func (q *Queries) UserHasOpenDiscountedOrder(ctx context.Context, userID string) (bool, error) {
	var open bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1 AND ui_mode = 'embedded'
		AND promotion_code_id IS NOT NULL AND status = ANY($2))`, userID, openStatuses()).Scan(&open)
	if err != nil {
		return false, fmt.Errorf("look up open orders of %s: %w", userID, err)
	}
	return open, nil
}

// openStatuses are the statuses of an open order.
func openStatuses() []string {
	var out []string
	for _, s := range OrderStatuses {
		if s.Open() {
			out = append(out, string(s))
		}
	}
	return out
}

// OrderDispute is one row of order_disputes. Status is Stripe's.
type OrderDispute struct {
	ID        string    `json:"id"`
	OrderID   string    `json:"order_id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UpsertOrderDispute records d, or updates its amount and status when they
// changed.
func (q *Queries) UpsertOrderDispute(ctx context.Context, d OrderDispute, now time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO order_disputes (id, order_id, amount, currency, status, reason, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
			WHERE (order_disputes.amount, order_disputes.status) IS DISTINCT FROM (EXCLUDED.amount, EXCLUDED.status)`,
		d.ID, d.OrderID, d.Amount, d.Currency, d.Status, d.Reason, d.CreatedAt.UTC(), now.UTC())
	if err != nil {
		return fmt.Errorf("upsert order dispute %s: %w", d.ID, err)
	}
	return nil
}

const orderDisputeColumns = `id, order_id::text, amount, currency, status, reason, created_at, updated_at`

func scanOrderDispute(row pgx.CollectableRow) (OrderDispute, error) {
	var d OrderDispute
	return d, row.Scan(&d.ID, &d.OrderID, &d.Amount, &d.Currency, &d.Status, &d.Reason, &d.CreatedAt, &d.UpdatedAt)
}

// GetOrderDispute returns the order dispute with a Stripe id.
func (q *Queries) GetOrderDispute(ctx context.Context, id string) (OrderDispute, error) {
	rows, err := q.db.Query(ctx, `SELECT `+orderDisputeColumns+` FROM order_disputes WHERE id = $1`, id)
	if err != nil {
		return OrderDispute{}, fmt.Errorf("read order dispute %s: %w", id, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanOrderDispute)
	return d, notFound(err)
}

// OrderDisputes returns the disputes of an order's payment, oldest first.
func (q *Queries) OrderDisputes(ctx context.Context, orderID string) ([]OrderDispute, error) {
	rows, err := q.db.Query(ctx, `SELECT `+orderDisputeColumns+` FROM order_disputes WHERE order_id = $1
		ORDER BY created_at, id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("list disputes of order %s: %w", orderID, err)
	}
	ds, err := pgx.CollectRows(rows, scanOrderDispute)
	if err != nil {
		return nil, fmt.Errorf("list disputes of order %s: %w", orderID, err)
	}
	return ds, nil
}

// OrderHasLostDispute reports whether a dispute of the order's payment was
// lost.
func (q *Queries) OrderHasLostDispute(ctx context.Context, orderID string) (bool, error) {
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM order_disputes WHERE order_id = $1 AND status = 'lost')`,
		orderID).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("look up lost disputes of order %s: %w", orderID, err)
	}
	return yes, nil
}

// OrderRefund is one row of order_refunds. Status is Stripe's.
type OrderRefund struct {
	ID        string    `json:"id"`
	OrderID   string    `json:"order_id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UpsertOrderRefund records r, or updates its amount and status when they
// changed.
func (q *Queries) UpsertOrderRefund(ctx context.Context, r OrderRefund, now time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO order_refunds (id, order_id, amount, currency, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
			WHERE (order_refunds.amount, order_refunds.status) IS DISTINCT FROM (EXCLUDED.amount, EXCLUDED.status)`,
		r.ID, r.OrderID, r.Amount, r.Currency, r.Status, r.CreatedAt.UTC(), now.UTC())
	if err != nil {
		return fmt.Errorf("upsert order refund %s: %w", r.ID, err)
	}
	return nil
}

// RefundsOfOrders returns the refunds of the given orders, oldest first,
// keyed by order id.
func (q *Queries) RefundsOfOrders(ctx context.Context, orderIDs []string) (map[string][]OrderRefund, error) {
	rows, err := q.db.Query(ctx, `SELECT id, order_id::text, amount, currency, status, created_at, updated_at
		FROM order_refunds WHERE order_id = ANY($1::uuid[]) ORDER BY created_at, id`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("list order refunds: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OrderRefund, error) {
		var r OrderRefund
		return r, row.Scan(&r.ID, &r.OrderID, &r.Amount, &r.Currency, &r.Status, &r.CreatedAt, &r.UpdatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list order refunds: %w", err)
	}
	out := make(map[string][]OrderRefund, len(orderIDs))
	for _, r := range rs {
		out[r.OrderID] = append(out[r.OrderID], r)
	}
	return out, nil
}

// OrderRefunds returns an order's refunds, oldest first.
func (q *Queries) OrderRefunds(ctx context.Context, orderID string) ([]OrderRefund, error) {
	m, err := q.RefundsOfOrders(ctx, []string{orderID})
	return m[orderID], err
}

// UserHasPaid reports whether the user ever paid for an order or a
// purchase (a first-time promotion code is not theirs to use).
func (q *Queries) UserHasPaid(ctx context.Context, userID string) (bool, error) {
	var paid bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1
			AND status IN ('paid', 'partially_refunded', 'refunded'))
		OR EXISTS (SELECT 1 FROM purchases WHERE user_id = $1
			AND status IN ('completed', 'partially_refunded', 'refunded'))`, userID).Scan(&paid)
	if err != nil {
		return false, fmt.Errorf("look up payments of %s: %w", userID, err)
	}
	return paid, nil
}

// UserStripeCustomer returns the Stripe customer the user last paid or
// ordered as, "" when none is known.
func (q *Queries) UserStripeCustomer(ctx context.Context, userID string) (string, error) {
	var id string
	err := q.db.QueryRow(ctx, `SELECT stripe_customer_id FROM (
			SELECT stripe_customer_id, created_at FROM orders WHERE user_id = $1 AND stripe_customer_id IS NOT NULL
			UNION ALL
			SELECT stripe_customer_id, created_at FROM purchases WHERE user_id = $1 AND stripe_customer_id IS NOT NULL
		) c ORDER BY created_at DESC LIMIT 1`, userID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up the stripe customer of %s: %w", userID, err)
	}
	return id, nil
}

// HasEmbeddedOrdersSince reports whether any embedded order was created
// at or after since: without one, no PaymentIntent of that time can be an
// order's (an order is recorded before its intent exists).
func (q *Queries) HasEmbeddedOrdersSince(ctx context.Context, since time.Time) (bool, error) {
	var ok bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE ui_mode = 'embedded' AND created_at >= $1)`,
		since.UTC()).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look for embedded orders: %w", err)
	}
	return ok, nil
}
