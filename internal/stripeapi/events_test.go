package stripeapi_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// TestEventsAfterACursorOldestFirst: from a cursor, EventsAfter yields
// every newer event once, oldest first, across several pages, so the
// caller's cursor (the last event it saw) is the newest. stripe-go already
// reverses a page listed with ending_before into that order.
func TestEventsAfterACursorOldestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 5})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emu", APIBase: srv.URL, MaxRetries: -1,
		RateLimit: 1000}))
	cus, err := api.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: "ada@example.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*stripeapi.PageSize + 30
	for i := range n + 1 {
		clk.Advance(time.Second)
		name := "Ada " + string(rune('A'+i%26))
		if err := emu.UpdateCustomer(cus.ID, stripeemu.CustomerUpdate{Name: &name}); err != nil {
			t.Fatal(err)
		}
	}
	var all []*stripe.Event
	for _, ev := range emu.Events() {
		if ev.Type == "customer.updated" {
			all = append(all, ev)
		}
	}
	if len(all) != n+1 {
		t.Fatalf("%d customer.updated events, want %d", len(all), n+1)
	}
	var got []*stripe.Event
	errTooMany := errors.New("too many events: the cursor does not move forward")
	err = api.EventsAfter(ctx, all[0].ID, clk.Now().Add(-time.Hour), func(ev *stripe.Event) error {
		got = append(got, ev)
		if len(got) > 2*n {
			return errTooMany
		}
		return nil
	})
	if err != nil || len(got) != n {
		t.Fatalf("EventsAfter the first event: %d events, %v; want the %d newer ones", len(got), err, n)
	}
	for i, ev := range got {
		if ev.ID != all[i+1].ID {
			t.Fatalf("event %d is %s (created %d), want %s (created %d): not oldest first", i, ev.ID, ev.Created,
				all[i+1].ID, all[i+1].Created)
		}
	}
}
