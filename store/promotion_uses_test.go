package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestPromotionUsesCountOpenAndPaidEmbeddedOrders: an embedded order holds
// a use of its code and of its coupon while it is open or once it is paid
// (a refund gives nothing back, as at Stripe); one that ended unpaid frees
// it, and a hosted order's use is Stripe's to count.
func TestPromotionUsesCountOpenAndPaidEmbeddedOrders(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	insert := func(mode store.UIMode, status store.OrderStatus, code, coupon string) {
		t.Helper()
		o := store.Order{ID: uuid.NewString(), UserID: "u1", UIMode: mode, Status: status, Currency: "usd",
			AmountSubtotal: 1000, AmountTotal: 800, AmountDiscount: 200, PromotionCodeID: &code, CouponID: &coupon,
			ExpiresAt: t0.Add(time.Hour), CreatedAt: t0, UpdatedAt: t0}
		if status.Paid() {
			o.PaidAt = &t0
		}
		if status.Ended() {
			o.EndedAt = &t0
		}
		if err := db.InsertOrder(ctx, o, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range store.OrderStatuses {
		insert(store.UIModeEmbedded, s, "promo_a", "cpn_1")
		insert(store.UIModeHosted, s, "promo_a", "cpn_1")
	}
	insert(store.UIModeEmbedded, store.OrderPending, "promo_b", "cpn_1")
	insert(store.UIModeEmbedded, store.OrderPending, "promo_c", "cpn_2")

	// pending, processing, paid, partially_refunded, refunded.
	if u, err := db.PromotionUses(ctx, "promo_a", "cpn_1"); err != nil || u != (store.PromotionUse{Code: 5, Coupon: 6}) {
		t.Errorf("uses of promo_a and cpn_1 = %+v, %v; want 5 and 6", u, err)
	}
	if u, err := db.PromotionUses(ctx, "promo_c", "cpn_2"); err != nil || u != (store.PromotionUse{Code: 1, Coupon: 1}) {
		t.Errorf("uses of promo_c and cpn_2 = %+v, %v; want 1 and 1", u, err)
	}
	if u, err := db.PromotionUses(ctx, "promo_none", "cpn_none"); err != nil || u != (store.PromotionUse{}) {
		t.Errorf("uses of an unused code = %+v, %v", u, err)
	}
}

// TestLockPromotionSerialisesACoupon: while one transaction holds a
// coupon's lock, another asking for it waits (seen waiting in pg_locks),
// one for another coupon does not, and the waiter gets it once the first
// commits.
func TestLockPromotionSerialisesACoupon(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := store.New(tx).LockPromotion(ctx, "cpn_1", "u1"); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(q *store.Queries) error { return q.LockPromotion(ctx, "cpn_2", "") }); err != nil {
		t.Fatalf("another coupon: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		got <- db.InTx(ctx, func(q *store.Queries) error { return q.LockPromotion(ctx, "cpn_1", "") })
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-got:
			t.Fatalf("took the coupon's lock while another transaction held it (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second transaction never waited for the coupon's lock")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the coupon's lock after the holder committed")
	}
}
