// Table tests of the billing arithmetic.

package stripeemu

import (
	"testing"
	"time"
)

func TestPeriodBoundary(t *testing.T) {
	at := func(s string) int64 {
		t.Helper()
		v, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.Unix()
	}
	for _, tc := range []struct {
		anchor, interval string
		count, n         int64
		want             string
	}{
		{"2024-01-31 09:30:00", "month", 1, 0, "2024-01-31 09:30:00"},
		{"2024-01-31 09:30:00", "month", 1, 1, "2024-02-29 09:30:00"}, // leap year, clamped
		{"2024-01-31 09:30:00", "month", 1, 2, "2024-03-31 09:30:00"}, // back to the anchor day
		{"2024-01-31 09:30:00", "month", 1, 13, "2025-02-28 09:30:00"},
		{"2024-01-31 09:30:00", "month", 3, 1, "2024-04-30 09:30:00"},
		{"2024-03-15 00:00:00", "month", 1, 10, "2025-01-15 00:00:00"},
		{"2024-02-29 12:00:00", "year", 1, 1, "2025-02-28 12:00:00"},
		{"2024-02-29 12:00:00", "year", 1, 4, "2028-02-29 12:00:00"},
		{"2024-03-01 12:00:00", "week", 2, 3, "2024-04-12 12:00:00"},
		{"2024-03-30 12:00:00", "day", 7, 1, "2024-04-06 12:00:00"},
	} {
		if got := periodBoundary(at(tc.anchor), tc.interval, tc.count, tc.n); got != at(tc.want) {
			t.Errorf("periodBoundary(%s, %d %s, %d) = %s, want %s", tc.anchor, tc.count, tc.interval, tc.n,
				time.Unix(got, 0).UTC().Format(time.DateTime), tc.want)
		}
	}
}

func TestProrate(t *testing.T) {
	for _, tc := range []struct {
		amount, start, end, now, want int64
	}{
		{3000, 0, 100, 50, 1500},
		{3000, 0, 100, 0, 3000},
		{3000, 0, 100, -10, 3000},
		{3000, 0, 100, 100, 0},
		{3000, 0, 100, 150, 0},
		{1000, 0, 3, 1, 667},   // 666.67 rounds up
		{1000, 0, 3, 2, 333},   // 333.33 rounds down
		{-1000, 0, 3, 1, -667}, // symmetric for credits
		{1, 0, 2, 1, 1},        // half rounds away from zero
		{500, 10, 10, 10, 0},   // an empty period prorates to nothing
	} {
		if got := prorate(tc.amount, tc.start, tc.end, tc.now); got != tc.want {
			t.Errorf("prorate(%d, %d..%d at %d) = %d, want %d", tc.amount, tc.start, tc.end, tc.now, got, tc.want)
		}
	}
}

func TestNextRetry(t *testing.T) {
	const first = int64(1_000_000)
	d := int64(24 * 3600)
	for _, tc := range []struct {
		schedule []time.Duration
		attempts int
		want     int64
		ok       bool
	}{
		{DefaultRetrySchedule, 1, first + 3*d, true},
		{DefaultRetrySchedule, 2, first + 8*d, true},
		{DefaultRetrySchedule, 3, first + 14*d, true},
		{DefaultRetrySchedule, 4, 0, false},
		{DefaultRetrySchedule, 0, 0, false},
		{[]time.Duration{}, 1, 0, false},
		{[]time.Duration{time.Hour}, 1, first + 3600, true},
	} {
		got, ok := nextRetry(tc.schedule, first, tc.attempts)
		if got != tc.want || ok != tc.ok {
			t.Errorf("nextRetry(%v, %d) = %d %v, want %d %v", tc.schedule, tc.attempts, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPreviousAttributes(t *testing.T) {
	before := snapshot(map[string]any{"status": "active", "items": map[string]any{"n": 1}, "same": 1, "gone": true})
	after := snapshot(map[string]any{"status": "past_due", "items": map[string]any{"n": 2}, "same": 1})
	prev := previousAttributes(before, after)
	if len(prev) != 3 || string(mustJSON(prev["status"])) != `"active"` || string(mustJSON(prev["items"])) != `{"n":1}` || prev["gone"] == nil {
		t.Fatalf("previousAttributes = %s", mustJSON(prev))
	}
	if p := previousAttributes(after, after); len(p) != 0 {
		t.Fatalf("no change gave %v", p)
	}
}
