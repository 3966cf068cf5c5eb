package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestStockAndOrdersCommands: stock set limits a product and stock list
// shows on hand, held and available; bad input changes nothing; orders
// show prints an order's lines and what it holds.
func TestStockAndOrdersCommands(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	ctx := context.Background()
	for _, args := range [][]string{
		{"stock", "set", "nope", "3"},
		{"stock", "set", "acme_stickers", "-1"},
		{"stock", "set", "acme_stickers", "many"},
		{"stock", "set", "acme_stickers"},
		{"stock", "set", "pro_subscription", "3"}, // a subscription has no stock
	} {
		if code, _, _ := runCLI(t, dbURL, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if levels, _ := db.StockLevels(ctx); len(levels) != 0 {
		t.Fatalf("refused commands changed the stock: %+v", levels)
	}
	if code, out, errOut := runCLI(t, dbURL, "stock", "set", "acme_stickers", "7"); code != exitOK ||
		!strings.Contains(out, "acme_stickers: 7 on hand, 0 held by open checkouts, 7 available") {
		t.Fatalf("stock set = %d %q %q", code, out, errOut)
	}
	now := time.Now()
	email := "ada@example.com"
	o := store.Order{ID: uuid.NewString(), UserID: "u1", Email: &email, UIMode: store.UIModeEmbedded, Status: store.OrderPending,
		Currency: "usd", AmountSubtotal: 2700, AmountTotal: 2700, ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	if err := db.InTx(ctx, func(q *store.Queries) error {
		if err := q.InsertOrder(ctx, o, []store.OrderLine{{Line: 0, ProductKey: "acme_stickers", Quantity: 3, UnitAmount: 900,
			AmountSubtotal: 2700, AmountTotal: 2700}}); err != nil {
			return err
		}
		return q.ReserveStock(ctx, o.ID, []store.StockLine{{ProductKey: "acme_stickers", Quantity: 3}}, now)
	}); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, dbURL, "stock", "list")
	if code != exitOK || !strings.Contains(out, "acme_stickers") || !strings.Contains(strings.Join(strings.Fields(out), " "), "acme_stickers 7 3 4 0") {
		t.Errorf("stock list = %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, dbURL, "orders", "show", o.ID)
	if code != exitOK || !strings.Contains(out, "pending") || !strings.Contains(strings.Join(strings.Fields(out), " "), "acme_stickers 3 900 2700") ||
		!strings.Contains(out, "reserved") {
		t.Errorf("orders show = %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, dbURL, "orders", "show", "not-an-order"); code != exitNotFound {
		t.Errorf("unknown order: exit %d", code)
	}
}
