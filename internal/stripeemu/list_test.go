// Tests of Stripe list semantics: cursor paging in both directions, created
// filters, and a benchmark of a full backfill over 100,000 sessions.

package stripeemu_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// makeSessions creates n sessions through the Go helper, advancing the clock
// one second after every perSecond sessions so that many share a created
// second; it returns their ids oldest first.
func (f *fixture) makeSessions(n, perSecond int) []string {
	f.t.Helper()
	pr := f.price(f.product("Bulk").ID, 100, "")
	ids := make([]string, n)
	for i := range ids {
		s, err := f.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: pr.ID}}})
		if err != nil {
			f.t.Fatal(err)
		}
		ids[i] = s.ID
		if (i+1)%perSecond == 0 {
			f.clk.Advance(time.Second)
		}
	}
	return ids
}

// rawList is a decoded list response.
type rawList struct {
	Object  string `json:"object"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
	Data    []struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
	} `json:"data"`
}

// list calls a list endpoint directly and decodes the page.
func (f *fixture) list(path string, q url.Values) (int, rawList) {
	f.t.Helper()
	res, body := f.raw(http.MethodGet, path+"?"+q.Encode(), nil, http.Header{"Authorization": {"Bearer sk_test_x"}})
	var l rawList
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			f.t.Fatal(err)
		}
	}
	return res.StatusCode, l
}

func ids(l rawList) []string {
	out := make([]string, len(l.Data))
	for i, d := range l.Data {
		out[i] = d.ID
	}
	return out
}

func TestPagingBothDirections(t *testing.T) {
	f := newFixture(t)
	created := f.makeSessions(250, 7) // oldest first
	newestFirst := make([]string, len(created))
	for i, id := range created {
		newestFirst[len(created)-1-i] = id
	}

	// Forward through the SDK iterator: every session once, newest first.
	f.emu.ResetRequests()
	params := &stripe.CheckoutSessionListParams{}
	params.Limit = stripe.Int64(100)
	it := f.sc.CheckoutSessions.List(params)
	var got []string
	for it.Next() {
		got = append(got, it.CheckoutSession().ID)
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	if fmt.Sprint(got) != fmt.Sprint(newestFirst) {
		t.Fatalf("forward iteration gave %d sessions, not the 250 newest first", len(got))
	}
	if n := len(f.emu.Requests()); n != 3 {
		t.Fatalf("forward iteration made %d requests, want 3", n)
	}

	// Backward from the oldest: the iterator walks towards newer items.
	params = &stripe.CheckoutSessionListParams{}
	params.Limit = stripe.Int64(100)
	params.EndingBefore = stripe.String(created[0])
	it = f.sc.CheckoutSessions.List(params)
	got = []string{created[0]}
	for it.Next() {
		got = append(got, it.CheckoutSession().ID)
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	if fmt.Sprint(got) != fmt.Sprint(created) {
		t.Fatalf("backward iteration gave %d sessions, not all 250 oldest first", len(got))
	}

	// Raw pages: 100 / 100 / 50, and ending_before gives the nearest page.
	_, p1 := f.list("/v1/checkout/sessions", url.Values{"limit": {"100"}})
	_, p2 := f.list("/v1/checkout/sessions", url.Values{"limit": {"100"}, "starting_after": {p1.Data[99].ID}})
	_, p3 := f.list("/v1/checkout/sessions", url.Values{"limit": {"100"}, "starting_after": {p2.Data[99].ID}})
	if len(p1.Data) != 100 || !p1.HasMore || len(p2.Data) != 100 || !p2.HasMore || len(p3.Data) != 50 || p3.HasMore || p1.Object != "list" || p1.URL != "/v1/checkout/sessions" {
		t.Fatalf("pages: %d %v, %d %v, %d %v", len(p1.Data), p1.HasMore, len(p2.Data), p2.HasMore, len(p3.Data), p3.HasMore)
	}
	_, back := f.list("/v1/checkout/sessions", url.Values{"limit": {"100"}, "ending_before": {p3.Data[0].ID}})
	if fmt.Sprint(ids(back)) != fmt.Sprint(ids(p2)) || !back.HasMore {
		t.Fatal("ending_before the third page's first item did not return the second page")
	}
	_, back = f.list("/v1/checkout/sessions", url.Values{"limit": {"10"}, "ending_before": {p2.Data[5].ID}})
	if fmt.Sprint(ids(back)) != fmt.Sprint(append(ids(p1)[95:], ids(p2)[:5]...)) || !back.HasMore {
		t.Fatalf("ending_before mid-page = %v", ids(back))
	}
	_, top := f.list("/v1/checkout/sessions", url.Values{"ending_before": {newestFirst[0]}})
	if len(top.Data) != 0 || top.HasMore {
		t.Fatalf("ending_before newest = %d items has_more %v", len(top.Data), top.HasMore)
	}

	for _, q := range []url.Values{
		{"starting_after": {"cs_test_nope"}},
		{"limit": {"101"}},
		{"limit": {"0"}},
		{"starting_after": {created[1]}, "ending_before": {created[0]}},
	} {
		if status, _ := f.list("/v1/checkout/sessions", q); status != http.StatusBadRequest {
			t.Fatalf("%v: status %d, want 400", q, status)
		}
	}
}

func TestCreatedFilters(t *testing.T) {
	f := newFixture(t)
	created := f.makeSessions(10, 1) // one per second: created = start + i s
	at := func(i int) int64 { return start.Add(time.Duration(i) * time.Second).Unix() }

	collect := func(params *stripe.CheckoutSessionListParams) []string {
		t.Helper()
		it := f.sc.CheckoutSessions.List(params)
		var out []string
		for it.Next() {
			out = append(out, it.CheckoutSession().ID)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	got := collect(&stripe.CheckoutSessionListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: at(2), LesserThan: at(5)}})
	if fmt.Sprint(got) != fmt.Sprint([]string{created[4], created[3], created[2]}) {
		t.Fatalf("gte/lt = %v", got)
	}
	got = collect(&stripe.CheckoutSessionListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThan: at(7)}})
	if fmt.Sprint(got) != fmt.Sprint([]string{created[9], created[8]}) {
		t.Fatalf("gt = %v", got)
	}
	got = collect(&stripe.CheckoutSessionListParams{CreatedRange: &stripe.RangeQueryParams{LesserThanOrEqual: at(1)}})
	if fmt.Sprint(got) != fmt.Sprint([]string{created[1], created[0]}) {
		t.Fatalf("lte = %v", got)
	}
	got = collect(&stripe.CheckoutSessionListParams{Created: stripe.Int64(at(6))})
	if fmt.Sprint(got) != fmt.Sprint([]string{created[6]}) {
		t.Fatalf("exact = %v", got)
	}

	// Filters combine with paging: 2 per page over created >= 3, status open.
	params := &stripe.CheckoutSessionListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: at(3)}, Status: stripe.String("open")}
	params.Limit = stripe.Int64(2)
	if err := f.emu.PaySession(created[5], stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	got = collect(params)
	if fmt.Sprint(got) != fmt.Sprint([]string{created[9], created[8], created[7], created[6], created[4], created[3]}) {
		t.Fatalf("filtered paging = %v", got)
	}

	// Events honour created filters too.
	f.clk.Advance(time.Hour)
	if err := f.emu.PaySession(created[6], stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	it := f.sc.Events.List(&stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThan: at(10)}})
	if !it.Next() || it.Event().GetObjectValue("id") != created[6] || it.Next() {
		t.Fatalf("events created filter: %v", it.Err())
	}
}

// BenchmarkBackfill100k lists 100,000 sessions through stripe-go at limit
// 100, as paymentd's backfill does. Each op is one full pass (1,000 pages).
func BenchmarkBackfill100k(b *testing.B) {
	f := newFixture(b)
	pr := f.price(f.product("Bulk").ID, 100, "")
	for i := range 100_000 {
		if _, err := f.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: pr.ID}}}); err != nil {
			b.Fatal(err)
		}
		if i%50 == 0 {
			f.clk.Advance(time.Second)
		}
	}
	b.ResetTimer()
	for range b.N {
		params := &stripe.CheckoutSessionListParams{}
		params.Limit = stripe.Int64(100)
		it := f.sc.CheckoutSessions.List(params)
		n := 0
		for it.Next() {
			n++
		}
		if it.Err() != nil || n != 100_000 {
			b.Fatalf("listed %d sessions: %v", n, it.Err())
		}
	}
}
