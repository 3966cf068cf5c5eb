package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paymentd/paymentd/internal/pgtest"
)

func TestInsertHintStoresOnceAndNotifies(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, `LISTEN paymentd_hints`); err != nil {
		t.Fatal(err)
	}

	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	inserted, err := db.InsertHint(ctx, "evt_1", "checkout.session.completed", "cs_test_1", at)
	if err != nil || !inserted {
		t.Fatalf("first insert = %v, %v; want inserted", inserted, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	n, err := listener.WaitForNotification(wctx)
	wcancel()
	if err != nil {
		t.Fatalf("no notification after a new hint: %v", err)
	}
	if n.Channel != "paymentd_hints" || n.Payload != "cs_test_1" {
		t.Errorf("notification %s %q; want paymentd_hints cs_test_1", n.Channel, n.Payload)
	}

	inserted, err = db.InsertHint(ctx, "evt_1", "checkout.session.completed", "cs_test_1", at.Add(time.Minute))
	if err != nil || inserted {
		t.Fatalf("redelivery = %v, %v; want a no-op", inserted, err)
	}
	// A later, different hint is the next notification: the redelivery sent none.
	if _, err := db.InsertHint(ctx, "evt_2", "charge.refunded", "ch_2", at); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel = context.WithTimeout(ctx, 10*time.Second)
	n, err = listener.WaitForNotification(wctx)
	wcancel()
	if err != nil || n.Payload != "ch_2" {
		t.Fatalf("next notification = %+v, %v; want ch_2 (the redelivery must not notify)", n, err)
	}

	var count int
	var received time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), min(received_at) FROM webhook_hints WHERE event_id = 'evt_1'`).
		Scan(&count, &received); err != nil {
		t.Fatal(err)
	}
	if count != 1 || !received.Equal(at) {
		t.Errorf("evt_1 stored %d times, received_at %s; want once at %s", count, received, at)
	}
}
