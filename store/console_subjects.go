// The console's queries about subjects other than purchases: searching
// subscriptions by keyset, the audit of a subject (its own entries and
// those of its steps), and the overview's subscription counts.
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
	if s.Limit <= 0 || s.Limit > 500 {
		return "", nil, fmt.Errorf("search subscriptions: limit %d out of 1..500", s.Limit)
	}
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if s.Field != SearchAny {
		cond, ok := subscriptionConditions[s.Field]
		if !ok {
			return "", nil, fmt.Errorf("search subscriptions: unknown field %q", s.Field)
		}
		arg(s.Value) // $1
		conds = append(conds, cond)
	}
	if s.Status != "" {
		if !slices.Contains(SubscriptionStatuses, s.Status) {
			return "", nil, fmt.Errorf("search subscriptions: unknown status %q", s.Status)
		}
		conds = append(conds, "status = "+arg(s.Status))
	}
	if !s.From.IsZero() {
		conds = append(conds, "created_at >= "+arg(s.From.UTC()))
	}
	if !s.To.IsZero() {
		conds = append(conds, "created_at < "+arg(s.To.UTC()))
	}
	if s.After != nil {
		conds = append(conds, "(created_at, id) < ("+arg(s.After.CreatedAt.UTC())+", "+arg(s.After.ID)+"::uuid)")
	}
	sql := `SELECT ` + subscriptionColumns + ` FROM subscriptions`
	if len(conds) > 0 {
		sql += ` WHERE ` + strings.Join(conds, " AND ")
	}
	return sql + ` ORDER BY created_at DESC, id DESC LIMIT ` + strconv.Itoa(s.Limit+1), args, nil
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

// countSubscriptionsSQL is the overview's subscription counts: one grouped
// scan of a table that holds one row per subscriber, not per payment.
const countSubscriptionsSQL = `SELECT status, count(*) FROM subscriptions GROUP BY status`
