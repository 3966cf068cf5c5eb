// Billing arithmetic: period boundaries, prorations and the retry schedule.
// These are pure functions of their arguments, tested as tables, so the
// lifecycle code that calls them only decides when and records what.

package stripeemu

import (
	"time"
)

// periodBoundary returns the start of period n of a subscription whose
// billing cycle is anchored at anchor (Unix seconds) and repeats every count
// intervals. Months and years keep the anchor's day of month, clamped to the
// month's last day: an anchor of January 31 bills on February 29 (or 28),
// then March 31, as Stripe does, rather than drifting to the 28th.
func periodBoundary(anchor int64, interval string, count, n int64) int64 {
	a := time.Unix(anchor, 0).UTC()
	switch interval {
	case "day":
		return a.AddDate(0, 0, int(count*n)).Unix()
	case "week":
		return a.AddDate(0, 0, int(7*count*n)).Unix()
	case "year":
		return addMonthsClamped(a, 12*count*n).Unix()
	default: // month
		return addMonthsClamped(a, count*n).Unix()
	}
}

// addMonthsClamped adds months to t, keeping t's day of month unless the
// target month is shorter.
func addMonthsClamped(t time.Time, months int64) time.Time {
	y, m, d := t.Date()
	total := int64(y)*12 + int64(m-1) + months
	ty, tm := int(total/12), time.Month(total%12+1)
	if last := daysIn(ty, tm); d > last {
		d = last
	}
	h, mi, s := t.Clock()
	return time.Date(ty, tm, d, h, mi, s, 0, time.UTC)
}

// daysIn returns the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// prorate returns the share of amount for the part of the period
// [start, end) that remains at now, rounded half away from zero as Stripe
// rounds proration line items. It is 0 outside the period.
func prorate(amount, start, end, now int64) int64 {
	if end <= start || now >= end {
		return 0
	}
	if now <= start {
		return amount
	}
	num := amount * (end - now)
	den := end - start
	neg := num < 0
	if neg {
		num = -num
	}
	q := (2*num + den) / (2 * den)
	if neg {
		return -q
	}
	return q
}

// DefaultRetrySchedule is when Stripe-like Smart Retries try a failed
// renewal again, measured from the first failed attempt: three retries over
// two weeks.
var DefaultRetrySchedule = []time.Duration{3 * 24 * time.Hour, 8 * 24 * time.Hour, 14 * 24 * time.Hour}

// nextRetry returns when the automatic attempt after `attempts` automatic
// attempts of an invoice (the first one included) happens, given the time
// of its first failed attempt; ok is false once the schedule is exhausted.
func nextRetry(schedule []time.Duration, firstFailure int64, attempts int) (at int64, ok bool) {
	if attempts < 1 || attempts > len(schedule) {
		return 0, false
	}
	return firstFailure + int64(schedule[attempts-1]/time.Second), true
}
