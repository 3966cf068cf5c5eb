// Table tests of the cart arithmetic: a discount spread over lines and
// Stripe Tax's rounding.

package stripeemu

import (
	"fmt"
	"testing"
)

func TestSpreadDiscount(t *testing.T) {
	for _, c := range []struct {
		subtotals []int64
		discount  int64
		want      []int64
	}{
		{[]int64{3998, 3750, 999}, 1749, []int64{799, 750, 200}}, // remainders .38 .83 .79
		{[]int64{5000}, 1000, []int64{1000}},
		{[]int64{1, 1, 1}, 2, []int64{1, 1, 0}},     // ties go to the earlier line
		{[]int64{100, 200}, 300, []int64{100, 200}}, // 100% off
		{[]int64{333, 333, 334}, 1000, []int64{333, 333, 334}},
		{[]int64{0, 500}, 100, []int64{0, 100}},
	} {
		items := make([]lineItem, len(c.subtotals))
		var subtotal int64
		for i, s := range c.subtotals {
			items[i].amountSubtotal = s
			subtotal += s
		}
		spreadDiscount(items, c.discount, subtotal)
		var got []int64
		var sum int64
		for _, li := range items {
			got = append(got, li.amountDiscount)
			sum += li.amountDiscount
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) || sum != c.discount {
			t.Errorf("spread %d over %v = %v, want %v", c.discount, c.subtotals, got, c.want)
		}
	}
}

func TestTaxOn(t *testing.T) {
	for _, c := range []struct {
		amount, bp int64
		inclusive  bool
		want       int64
	}{
		{3199, 1000, false, 320}, // 319.9
		{3000, 1000, false, 300},
		{5, 1000, false, 1},     // 0.5 rounds up
		{4, 1000, false, 0},     // 0.4 rounds down
		{999, 825, false, 82},   // 82.4175
		{1100, 1000, true, 100}, // 1000 + 100
		{1100, 825, true, 84},   // 1016.17 + 83.83
		{1, 1000, true, 0},      // 0.909 of net rounds to 1
		{0, 1000, false, 0},
		{2000, 0, false, 0},
		{10000, 2000, true, 1667}, // 8333.33 + 1666.67
	} {
		if got := taxOn(c.amount, c.bp, c.inclusive); got != c.want {
			t.Errorf("taxOn(%d, %d, inclusive=%v) = %d, want %d", c.amount, c.bp, c.inclusive, got, c.want)
		}
	}
	if got := percentDecimal(825); got != "8.25" {
		t.Errorf("percentDecimal(825) = %s", got)
	}
	if got := percentDecimal(1000); got != "10.0" {
		t.Errorf("percentDecimal(1000) = %s", got)
	}
}
