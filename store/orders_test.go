package store_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// checkValues returns the values the one CHECK on table.column lists.
func checkValues(t *testing.T, db *store.DB, table, column string) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1::regclass AND contype = 'c'`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	re := regexp.MustCompile(`^CHECK \(\(` + column + ` = ANY \(ARRAY\[(.*)\]\)\)\)$`)
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		if m := re.FindStringSubmatch(d); m != nil {
			var vals []string
			for _, v := range regexp.MustCompile(`'([a-z_]+)'::text`).FindAllStringSubmatch(m[1], -1) {
				vals = append(vals, v[1])
			}
			slices.Sort(vals)
			return vals
		}
	}
	t.Fatalf("no CHECK lists the values of %s.%s", table, column)
	return nil
}

// TestOrderStatesMatchChecks holds the order, UI mode, reservation and
// grant state types to the CHECKs of their tables.
func TestOrderStatesMatchChecks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	strs := func(vs []string) []string { slices.Sort(vs); return vs }
	var order, mode, res, grant []string
	for _, s := range store.OrderStatuses {
		order = append(order, string(s))
	}
	for _, s := range store.UIModes {
		mode = append(mode, string(s))
	}
	for _, s := range store.ReservationStates {
		res = append(res, string(s))
	}
	for _, s := range store.GrantStates {
		grant = append(grant, string(s))
	}
	for _, c := range []struct {
		table, column string
		want          []string
	}{
		{"orders", "status", strs(order)},
		{"orders", "ui_mode", strs(mode)},
		{"stock_reservations", "state", strs(res)},
		{"order_grants", "state", strs(grant)},
	} {
		if got := checkValues(t, db, c.table, c.column); !slices.Equal(got, c.want) {
			t.Errorf("%s.%s: CHECK allows %v, Go declares %v", c.table, c.column, got, c.want)
		}
	}
}

// newOrder records a pending order for lines (product, quantity, unit
// amount 1000) and reserves its stock in one transaction, as checkout does.
func newOrder(t *testing.T, db *store.DB, lines ...store.StockLine) (string, error) {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	o := store.Order{ID: id, UserID: "u1", UIMode: store.UIModeEmbedded, Status: store.OrderPending, Currency: "usd",
		ExpiresAt: t0.Add(time.Hour), CreatedAt: t0, UpdatedAt: t0}
	var ls []store.OrderLine
	for i, l := range lines {
		ls = append(ls, store.OrderLine{Line: i, ProductKey: l.ProductKey, Quantity: l.Quantity, UnitAmount: 1000,
			AmountSubtotal: 1000 * int64(l.Quantity), AmountTotal: 1000 * int64(l.Quantity)})
		o.AmountSubtotal += 1000 * int64(l.Quantity)
	}
	o.AmountTotal = o.AmountSubtotal
	err := db.InTx(ctx, func(q *store.Queries) error {
		if err := q.InsertOrder(ctx, o, ls); err != nil {
			return err
		}
		return q.ReserveStock(ctx, id, lines, t0)
	})
	return id, err
}

func stockOf(t *testing.T, db *store.DB, key string) store.Stock {
	t.Helper()
	s, err := db.GetStock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReserveNeverOversellsUnderConcurrency: 40 buyers race for the last 5
// units on their own connections; exactly 5 orders reserve, every other is
// refused with the units left, and the counts never leave [0, on_hand].
func TestReserveNeverOversellsUnderConcurrency(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.SetStock(ctx, "hot", 5, t0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	refused := 0
	start := make(chan struct{})
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, err := newOrder(t, db, store.StockLine{ProductKey: "hot", Quantity: 1})
			mu.Lock()
			defer mu.Unlock()
			var oos *store.OutOfStockError
			switch {
			case err == nil:
				won = append(won, id)
			case errors.As(err, &oos) && oos.Available == 0 && oos.Requested == 1:
				refused++
			default:
				t.Errorf("reserve: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(won) != 5 || refused != 35 {
		t.Fatalf("%d reserved and %d refused, want 5 and 35", len(won), refused)
	}
	if s := stockOf(t, db, "hot"); s.OnHand != 5 || s.Reserved != 5 || s.Available() != 0 {
		t.Fatalf("stock after the race = %+v", s)
	}
	// A refused order left nothing behind: no order row, no reservation.
	var orders, holds int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM stock_reservations)`).Scan(&orders, &holds); err != nil {
		t.Fatal(err)
	}
	if orders != 5 || holds != 5 {
		t.Errorf("%d orders and %d reservations recorded, want 5 and 5", orders, holds)
	}
}

// TestCommitAndReleaseAreIdempotent: a repeated commit or release moves
// nothing, a release frees the units for the next buyer, and the final
// on_hand is the initial stock minus what was paid for.
func TestCommitAndReleaseAreIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.SetStock(ctx, "a", 3, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetStock(ctx, "b", 10, t0); err != nil {
		t.Fatal(err)
	}
	paid, err := newOrder(t, db, store.StockLine{ProductKey: "a", Quantity: 2}, store.StockLine{ProductKey: "b", Quantity: 4},
		store.StockLine{ProductKey: "unlimited", Quantity: 7})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := newOrder(t, db, store.StockLine{ProductKey: "a", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newOrder(t, db, store.StockLine{ProductKey: "a", Quantity: 1}); err == nil {
		t.Fatal("a third order reserved a unit that is not there")
	}
	for range 2 {
		c, err := db.CommitStock(ctx, paid, t0)
		if err != nil {
			t.Fatal(err)
		}
		r, err := db.ReleaseStock(ctx, gone, t0)
		if err != nil {
			t.Fatal(err)
		}
		_ = c
		_ = r
	}
	if s := stockOf(t, db, "a"); s.OnHand != 1 || s.Reserved != 0 || s.Oversold != 0 {
		t.Errorf("a after commit and release = %+v, want 1 on hand, none reserved", s)
	}
	if s := stockOf(t, db, "b"); s.OnHand != 6 || s.Reserved != 0 {
		t.Errorf("b after commit = %+v, want 6 on hand", s)
	}
	// Committing the released order again is a late payment: it takes the
	// unit it had given back.
	c, err := db.CommitStock(ctx, gone, t0)
	if err != nil || len(c) != 1 || c[0].Short != 0 {
		t.Fatalf("late commit = %+v, %v", c, err)
	}
	if s := stockOf(t, db, "a"); s.OnHand != 0 || s.Reserved != 0 {
		t.Errorf("a after the late payment = %+v", s)
	}
	// And a release after a commit releases nothing.
	if r, err := db.ReleaseStock(ctx, paid, t0); err != nil || len(r) != 0 {
		t.Errorf("release after commit = %+v, %v", r, err)
	}
}

// TestCommitBeyondStockCompletesAndCountsTheShortfall: the operator lowers
// the stock under an open order; paying it leaves on_hand at zero (never
// negative), records the units short, and a second commit adds nothing.
func TestCommitBeyondStockCompletesAndCountsTheShortfall(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.SetStock(ctx, "a", 4, t0); err != nil {
		t.Fatal(err)
	}
	id, err := newOrder(t, db, store.StockLine{ProductKey: "a", Quantity: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetStock(ctx, "a", 1, t0); err != nil {
		t.Fatal(err)
	}
	if s := stockOf(t, db, "a"); s.Available() != 0 {
		t.Fatalf("available below the reservations = %d, want 0", s.Available())
	}
	c, err := db.CommitStock(ctx, id, t0)
	if err != nil || len(c) != 1 || c[0].Short != 2 {
		t.Fatalf("commit = %+v, %v; want 2 short", c, err)
	}
	if c, err := db.CommitStock(ctx, id, t0); err != nil || len(c) != 0 {
		t.Fatalf("second commit = %+v, %v", c, err)
	}
	if s := stockOf(t, db, "a"); s.OnHand != 0 || s.Reserved != 0 || s.Oversold != 2 {
		t.Errorf("stock = %+v, want 0 on hand, 0 reserved, 2 oversold", s)
	}
}

// TestStockCannotGoNegative: the CHECKs refuse any write below zero,
// whatever the statement.
func TestStockCannotGoNegative(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.SetStock(ctx, "a", 1, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetStock(ctx, "a", -1, t0); !errors.Is(err, store.ErrNegativeStock) {
		t.Errorf("set -1: %v", err)
	}
	for _, sql := range []string{`UPDATE product_stock SET on_hand = on_hand - 2`, `UPDATE product_stock SET reserved = -1`} {
		_, err := db.Pool.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("%s: %v, want a CHECK violation", sql, err)
		}
	}
}

// TestCartKeepsForItsTTLAndTakesThePaidOrder: a cart reads back until its
// expiry; a paid order takes its lines and its code off the cart, leaving
// what was added since.
func TestCartKeepsForItsTTLAndTakesThePaidOrder(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	code := "LAUNCH20"
	if _, err := db.PutCart(ctx, store.Cart{UserID: "u1", Items: []store.CartItem{{Product: "a", Quantity: 2},
		{Product: "b", Quantity: 1}}, PromotionCode: &code}, t0, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	c, err := db.GetCart(ctx, "u1", t0.Add(23*time.Hour))
	if err != nil || len(c.Items) != 2 || c.PromotionCode == nil {
		t.Fatalf("cart within its ttl = %+v, %v", c, err)
	}
	if c, err := db.GetCart(ctx, "u1", t0.Add(24*time.Hour)); err != nil || len(c.Items) != 0 {
		t.Fatalf("cart past its ttl = %+v, %v", c, err)
	}
	if err := db.TakeFromCart(ctx, "u1", []store.OrderLine{{ProductKey: "a", Quantity: 1}, {ProductKey: "b", Quantity: 1}}, &code); err != nil {
		t.Fatal(err)
	}
	c, err = db.GetCart(ctx, "u1", t0)
	if err != nil || len(c.Items) != 1 || c.Items[0] != (store.CartItem{Product: "a", Quantity: 1}) || c.PromotionCode != nil {
		t.Fatalf("cart after the order = %+v, %v", c, err)
	}
	if err := db.TakeFromCart(ctx, "u1", []store.OrderLine{{ProductKey: "a", Quantity: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM carts`).Scan(&n); err != nil || n != 0 {
		t.Errorf("an emptied cart is deleted: %d rows, %v", n, err)
	}
	if n, err := db.PruneCarts(ctx, t0, 10); err != nil || n != 0 {
		t.Errorf("prune = %d, %v", n, err)
	}
}
