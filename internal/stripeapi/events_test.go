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

// eventsEmulator is an emulator on a fake clock and the API reading it.
func eventsEmulator(t *testing.T, seed int64) (*clock.Fake, *stripeemu.Emulator, *stripeapi.API) {
	clk := clock.NewFake(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: seed})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emu", APIBase: srv.URL, MaxRetries: -1,
		RateLimit: 1000}))
	return clk, emu, api
}

// TestEventsAfterACursorOldestFirst: from a cursor, EventsAfter yields
// every newer event once, oldest first, across several pages, so the
// caller's cursor (the last event it saw) is the newest. stripe-go already
// reverses a page listed with ending_before into that order.
func TestEventsAfterACursorOldestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk, emu, api := eventsEmulator(t, 5)
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
	err = api.EventsAfter(ctx, all[0].ID, func(ev *stripe.Event) error {
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

// TestEventsPageNewestFirstAcrossPages: EventsPage pages backwards in time
// from the newest event, each event once, identities only, and stops at
// since.
func TestEventsPageNewestFirstAcrossPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk, emu, api := eventsEmulator(t, 6)
	cus, err := api.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: "bea@example.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*stripeapi.PageSize + 30
	var since time.Time
	for i := range n + 10 {
		clk.Advance(time.Second)
		if i == 10 {
			since = clk.Now() // the first ten are older than since
		}
		name := "Bea " + string(rune('A'+i%26))
		if err := emu.UpdateCustomer(cus.ID, stripeemu.CustomerUpdate{Name: &name}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, ev := range emu.Events() {
		if ev.Type == "customer.updated" && ev.Created >= since.Unix() {
			want = append([]string{ev.ID}, want...) // newest first
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("EventsPage does not move backwards")
		}
		page, more, err := api.EventsPage(ctx, after, since)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page {
			if ev.Data == nil || ev.Data.Object["id"] != cus.ID || len(ev.Data.Object) != 1 {
				t.Fatalf("event %s carries %v; want its object's id only", ev.ID, ev.Data)
			}
			if ev.Type == "customer.updated" {
				got = append(got, ev.ID)
			}
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(got) != len(want) || len(got) != n {
		t.Fatalf("EventsPage walked %d customer.updated events, want %d", len(got), n)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d is %s, want %s: not newest first", i, got[i], want[i])
		}
	}
}
