// Synthetic load: a database filled with realistic purchases and steps in
// bulk, for the benchmarks (make bench). Rows are generated inside
// PostgreSQL (generate_series), so a million steps take seconds, not a
// million round trips. Nothing else calls it.
package store

import (
	"context"
	"fmt"
	"time"
)

// SyntheticLoad is the shape of a generated data set.
type SyntheticLoad struct {
	// Purchases, 5 minutes apart going back from Now; Buyers distinct
	// buyers (buyer<n>@example.com, user-<n>, cus_bench_<n>) share them.
	Purchases, Buyers int
	// StepsPerPurchase steps each, of which about 0.5% failed (each with
	// its operator alert), 0.3% pending long past their run_at, 0.2%
	// running (half past their lease), 2% waiting, 7% pending later, and
	// the rest done. Running steps are made by the engine's claim.
	StepsPerPurchase int
	Now              time.Time
}

// stepNames are the names of a generated purchase's steps, in order.
var stepNames = []string{"purchase_confirmation", "admin_purchase", "grant_access", "access_email", "analytics",
	"followup_onboarding", "followup_feedback", "followup_testimonial", "refund_email", "admin_refund",
	"revoke_access", "access_webhook"}

// GenerateSyntheticLoad inserts l's purchases and steps, plus reconcile
// passes, failing objects and operator actions for the overview, then
// vacuums and analyzes, as a database in service would be.
func (db *DB) GenerateSyntheticLoad(ctx context.Context, l SyntheticLoad) error {
	if l.Purchases < 1 || l.Buyers < 1 || l.StepsPerPurchase < 1 || l.StepsPerPurchase > len(stepNames) {
		return fmt.Errorf("generate load: invalid shape %+v", l)
	}
	now := l.Now.UTC()
	const chunk = 10_000
	for lo := 0; lo < l.Purchases; lo += chunk {
		hi := min(lo+chunk, l.Purchases)
		if _, err := db.Pool.Exec(ctx, `
			INSERT INTO purchases (id, user_id, email, product_key, quantity, status, stripe_session_id, stripe_customer_id,
				stripe_payment_intent_id, stripe_charge_id, amount_total, amount_refunded, currency, access_state,
				created_at, completed_at, updated_at)
			SELECT gen_random_uuid(), 'user-' || (i % $3), 'buyer' || (i % $3) || '@example.com', 'pro', 1, st,
				'cs_bench_' || i, 'cus_bench_' || (i % $3),
				CASE WHEN paid THEN 'pi_bench_' || i END, CASE WHEN paid THEN 'ch_bench_' || i END,
				19900, CASE st WHEN 'refunded' THEN 19900 WHEN 'partially_refunded' THEN 5000 ELSE 0 END, 'usd',
				CASE WHEN st IN ('completed', 'partially_refunded') THEN 'granted' WHEN st = 'refunded' THEN 'revoked'
					ELSE 'none' END,
				created, CASE WHEN paid THEN created + interval '1 minute' END, created
			FROM (SELECT i, $4::timestamptz - i * interval '5 minutes' AS created,
					CASE WHEN i % 100 < 85 THEN 'completed' WHEN i % 100 < 90 THEN 'pending'
						WHEN i % 100 < 95 THEN 'expired' WHEN i % 100 < 98 THEN 'refunded'
						WHEN i % 100 < 99 THEN 'partially_refunded' ELSE 'failed' END AS st
				FROM generate_series($1::int, $2::int - 1) i) g,
				LATERAL (SELECT g.st IN ('completed', 'partially_refunded', 'refunded') AS paid) p`,
			lo, hi, l.Buyers, now); err != nil {
			return fmt.Errorf("generate purchases: %w", err)
		}
		if _, err := db.Pool.Exec(ctx, `
			INSERT INTO steps (subject_id, subject_kind, pipeline, name, args, status, run_at, attempts, max_attempts,
				lease_owner, lease_expires_at, last_error, result, created_at, updated_at, finished_at)
			SELECT p.id, 'purchase', 'purchase', n.name, '{}', s.status,
				CASE WHEN s.status = 'pending' AND s.h % 1000 < 8 THEN $4::timestamptz - interval '3 hours'
					WHEN s.status = 'pending' AND s.h % 1000 < 10 THEN $4::timestamptz - interval '6 hours'
					WHEN s.status = 'pending' THEN $4::timestamptz + interval '7 days' ELSE p.created_at END,
				CASE WHEN s.status IN ('pending', 'waiting') THEN 0 ELSE 1 END, 10,
				NULL, NULL,
				CASE WHEN s.status = 'failed' THEN 'github: add collaborator: 502 Bad Gateway' END,
				CASE WHEN s.status = 'done' THEN '{"sent": true, "template": "purchase_confirmation", "to": "buyer@example.com"}'::jsonb END,
				p.created_at, p.created_at,
				CASE WHEN s.status IN ('done', 'failed') THEN p.created_at + interval '1 minute' END
			FROM purchases p
			CROSS JOIN LATERAL unnest($3::text[]) WITH ORDINALITY AS n(name, k)
			CROSS JOIN LATERAL (SELECT h, CASE WHEN h % 1000 < 5 THEN 'failed' WHEN h % 1000 < 10 THEN 'pending'
					WHEN h % 1000 < 30 THEN 'waiting' WHEN h % 1000 < 100 THEN 'pending' ELSE 'done' END AS status
				FROM (SELECT (substr(p.stripe_session_id, 10)::bigint * 7919 + n.k * 104729) AS h) x) s
			WHERE p.stripe_session_id LIKE 'cs_bench_%' AND substr(p.stripe_session_id, 10)::int >= $1
				AND substr(p.stripe_session_id, 10)::int < $2`,
			lo, hi, stepNames[:l.StepsPerPurchase], now); err != nil {
			return fmt.Errorf("generate steps: %w", err)
		}
	}
	for i, sql := range []string{
		// An operator alert for each failed step, as the engine schedules.
		`INSERT INTO steps (subject_id, subject_kind, pipeline, name, args, status, run_at, attempts, max_attempts,
			result, created_at, updated_at, finished_at)
		SELECT subject_id, subject_kind, 'alert:' || id, 'operator_alert',
			jsonb_build_object('step_id', id, 'purchase_id', subject_id, 'pipeline', pipeline, 'step', name,
				'attempts', attempts, 'last_error', last_error),
			'done', updated_at, 1, 10, '{"sent": true, "template": "operator_alert", "to": "admin@acme.test"}',
			updated_at, updated_at, updated_at
		FROM steps WHERE status = 'failed'`,
		`INSERT INTO reconcile_passes (kind, started_at, duration_us, seen, changes, healed, errors, summary)
		SELECT CASE WHEN i % 60 = 0 THEN 'deep' ELSE 'incremental' END, $1::timestamptz - i * interval '1 minute',
			200000 + i % 7 * 10000, 40 + i % 13, i % 3, i % 5 / 4, i % 50 / 49, 'synthetic'
		FROM generate_series(1, 5000) i`,
		`INSERT INTO operator_audit (at, operator, action, object_kind, object_id, purchase_id, before, after)
		SELECT $1::timestamptz - i * interval '1 hour', 'alice', 'retry_step', 'step', s.id::text, s.purchase_id,
			'{"status": "failed"}', '{"status": "pending"}'
		FROM (SELECT id, subject_id AS purchase_id, row_number() OVER () AS i FROM steps WHERE status = 'failed' LIMIT 2000) s`,
	} {
		var args []any
		if i > 0 { // the alerts take no argument; the others take now
			args = append(args, now)
		}
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("generate load: %w", err)
		}
	}
	// The running steps are claimed as workers claim them (the oldest due,
	// six hours overdue): half by a worker whose lease has lapsed.
	running := int(int64(l.Purchases) * int64(l.StepsPerPurchase) / 500)
	for _, lease := range []time.Duration{-time.Hour, time.Hour} {
		if _, err := db.ClaimSteps(ctx, "bench-worker", now, lease, running/2); err != nil {
			return fmt.Errorf("generate running steps: %w", err)
		}
	}
	// Objects that keep failing, through the reconciler's own statement.
	for i := range 30 {
		for range i + 1 {
			if _, err := db.RecordReconcileError(ctx, "session", fmt.Sprintf("cs_bench_broken_%d", i),
				"stripe: 500 Internal Server Error", now, now); err != nil {
				return err
			}
		}
	}
	for _, table := range []string{"purchases", "steps", "reconcile_passes", "operator_audit", "reconcile_errors"} {
		if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			return fmt.Errorf("vacuum %s: %w", table, err)
		}
	}
	return nil
}
