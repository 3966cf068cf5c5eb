// The console's queries about subjects other than purchases: searching
// subscriptions and orders by keyset, the audit of a subject (its own
// entries and those of its steps), and the overview's counts of both.
package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Search fields that name subscriptions only.
const (
	SearchSubscription SearchField = "subscription" // Stripe's sub_ id
	SearchInvoice      SearchField = "invoice"      // a Stripe invoice of the subscription
)

// subscriptionConditions is the WHERE condition of each field a
// subscription search matches on; $1 is the value. Each walks an index
// but the email, which is compared with the customer's address
// case-insensitively (subscriptions are far fewer than purchases).
var subscriptionConditions = map[SearchField]string{
	SearchEmail:        `lower(customer_email) = lower($1) AND customer_email IS NOT NULL`,
	SearchUserID:       `user_id = $1 AND user_id IS NOT NULL`,
	SearchPurchaseID:   `id = $1::uuid`, // a paymentd id: a uuid names a purchase or a subscription
	SearchSubscription: `stripe_subscription_id = $1`,
	SearchInvoice:      `id = (SELECT subscription_id FROM invoices WHERE id = $1)`,
	SearchCustomer:     `stripe_customer_id = $1`,
}

// SubscriptionSearchable reports whether a search on field can find
// subscriptions.
func SubscriptionSearchable(f SearchField) bool {
	_, ok := subscriptionConditions[f]
	return ok || f == SearchAny
}

// SubscriptionSearch selects a page of subscriptions, newest first (by
// Stripe's creation time). The zero value with a Limit lists every one.
type SubscriptionSearch struct {
	Field    SearchField
	Value    string
	Status   SubscriptionStatus // "" for any
	From, To time.Time
	After    *PurchaseCursor // the same (created_at, id) keyset as purchases
	Limit    int
}

// SearchSubscriptions returns a page of subscriptions matching s, newest
// first, and whether more follow.
func (q *Queries) SearchSubscriptions(ctx context.Context, s SubscriptionSearch) ([]Subscription, bool, error) {
	sql, args, err := subscriptionSearchSQL(s)
	if err != nil {
		return nil, false, err
	}
	ss, err := q.subscriptions(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("search subscriptions: %w", err)
	}
	more := len(ss) > s.Limit
	if more {
		ss = ss[:s.Limit]
	}
	return ss, more, nil
}

func subscriptionSearchSQL(s SubscriptionSearch) (string, []any, error) {
	if s.Status != "" && !slices.Contains(SubscriptionStatuses, s.Status) {
		return "", nil, fmt.Errorf("search subscriptions: unknown status %q", s.Status)
	}
	return keysetSQL("subscriptions", subscriptionColumns, subscriptionConditions, keyset{s.Field, s.Value, string(s.Status),
		s.From, s.To, s.After, s.Limit})
}

// keyset is a search of one table, newest first by (created_at, id).
type keyset struct {
	field    SearchField
	value    string
	status   string // checked by the caller against its type's values
	from, to time.Time
	after    *PurchaseCursor
	limit    int
}

// keysetSQL is the statement of a search of table, whose fields'
// conditions are conds ($1 the value).
func keysetSQL(table, columns string, conds map[SearchField]string, k keyset) (string, []any, error) {
	if k.limit <= 0 || k.limit > 500 {
		return "", nil, fmt.Errorf("search %s: limit %d out of 1..500", table, k.limit)
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if k.field != SearchAny {
		cond, ok := conds[k.field]
		if !ok {
			return "", nil, fmt.Errorf("search %s: unknown field %q", table, k.field)
		}
		arg(k.value) // $1
		where = append(where, cond)
	}
	if k.status != "" {
		where = append(where, "status = "+arg(k.status))
	}
	if !k.from.IsZero() {
		where = append(where, "created_at >= "+arg(k.from.UTC()))
	}
	if !k.to.IsZero() {
		where = append(where, "created_at < "+arg(k.to.UTC()))
	}
	if k.after != nil {
		where = append(where, "(created_at, id) < ("+arg(k.after.CreatedAt.UTC())+", "+arg(k.after.ID)+"::uuid)")
	}
	sql := `SELECT ` + columns + ` FROM ` + table
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	// The limit is in the text, as in searchSQL.
	return sql + ` ORDER BY created_at DESC, id DESC LIMIT ` + strconv.Itoa(k.limit+1), args, nil
}

// orderConditions is the WHERE condition of each field an order search
// matches on; $1 is the value. Each walks an index but the email and the
// customer, which orders have none for.
var orderConditions = map[SearchField]string{
	SearchEmail:         `lower(email) = lower($1) AND email IS NOT NULL`,
	SearchUserID:        `user_id = $1`,
	SearchPurchaseID:    `id = $1::uuid`, // a paymentd id: a uuid names a purchase, a subscription or an order
	SearchSession:       `stripe_session_id = $1`,
	SearchPaymentIntent: `stripe_payment_intent_id = $1`,
	SearchCharge:        `stripe_charge_id = $1 AND stripe_charge_id IS NOT NULL`,
	SearchCustomer:      `stripe_customer_id = $1`,
}

// OrderSearchable reports whether a search on field can find orders.
func OrderSearchable(f SearchField) bool {
	_, ok := orderConditions[f]
	return ok || f == SearchAny
}

// OrderSearch selects a page of orders, newest first.
type OrderSearch struct {
	Field    SearchField
	Value    string
	Status   OrderStatus // "" for any
	From, To time.Time
	After    *PurchaseCursor
	Limit    int
}

// SearchOrders returns a page of orders matching s, newest first, and
// whether more follow.
func (q *Queries) SearchOrders(ctx context.Context, s OrderSearch) ([]Order, bool, error) {
	if s.Status != "" && !slices.Contains(OrderStatuses, s.Status) {
		return nil, false, fmt.Errorf("search orders: unknown status %q", s.Status)
	}
	sql, args, err := keysetSQL("orders", orderColumns, orderConditions, keyset{s.Field, s.Value, string(s.Status),
		s.From, s.To, s.After, s.Limit})
	if err != nil {
		return nil, false, err
	}
	found, err := q.orders(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("search orders: %w", err)
	}
	more := len(found) > s.Limit
	if more {
		found = found[:s.Limit]
	}
	return found, more, nil
}

// SubjectAudit returns the newest limit operator actions on a subject
// (object kind and id) or on any of its steps (by id), newest first.
// Both halves walk operator_audit_object_idx.
func (q *Queries) SubjectAudit(ctx context.Context, kind, id string, stepIDs []int64, limit int) ([]AuditEntry, error) {
	ids := make([]string, len(stepIDs))
	for i, s := range stepIDs {
		ids[i] = strconv.FormatInt(s, 10)
	}
	as, err := q.audits(ctx, `SELECT `+auditColumns+` FROM operator_audit
		WHERE (object_kind = $1 AND object_id = $2) OR (object_kind = 'step' AND object_id = ANY($3))
		ORDER BY id DESC LIMIT $4`, kind, id, ids, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit of %s %s: %w", kind, id, err)
	}
	return as, nil
}

// countSubscriptionsSQL and countOrdersSQL are the overview's counts of
// subscriptions and orders by status, each over its status index.
const (
	countSubscriptionsSQL = `SELECT status, count(*) FROM subscriptions GROUP BY status`
	countOrdersSQL        = `SELECT status, count(*) FROM orders GROUP BY status`
)
