package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
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

// A batch stores each new event once: an event already stored, or earlier
// in the same batch, is reported as not inserted and notifies nothing.
func TestInsertHintsReportsEachEventOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, pgtest.URL(t))
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := db.InsertHint(ctx, "evt_old", "charge.refunded", "ch_old", at); err != nil {
		t.Fatal(err)
	}
	got, err := db.InsertHints(ctx, []store.NewHint{
		{EventID: "evt_a", Type: "checkout.session.completed", ObjectID: "cs_a", ReceivedAt: at},
		{EventID: "evt_old", Type: "charge.refunded", ObjectID: "ch_old", ReceivedAt: at.Add(time.Minute)},
		{EventID: "evt_b", Type: "charge.refunded", ObjectID: "ch_b", ReceivedAt: at},
		{EventID: "evt_a", Type: "checkout.session.completed", ObjectID: "cs_a", ReceivedAt: at.Add(time.Second)},
	})
	if want := []bool{true, false, true, false}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("InsertHints = %v, %v; want %v", got, err, want)
	}
	var rows []string
	r, err := db.Pool.Query(ctx, `SELECT event_id || ' ' || object_id || ' ' || to_char(received_at, 'HH24:MI:SS') FROM webhook_hints ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	if rows, err = pgx.CollectRows(r, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := []string{"evt_a cs_a 12:00:00", "evt_b ch_b 12:00:00", "evt_old ch_old 12:00:00"}; !slices.Equal(rows, want) {
		t.Errorf("stored %v; want %v", rows, want)
	}
}
