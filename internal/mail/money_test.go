package mail_test

import (
	"math"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

func TestFormatMoney(t *testing.T) {
	tests := []struct {
		amount   int64
		currency string
		want     string
	}{
		{19900, "usd", "$199.00"},
		{19900, "USD", "$199.00"},
		{4999, "eur", "€49.99"},
		{19900, "jpy", "¥19,900"},
		{1050, "gbp", "£10.50"},
		{5, "usd", "$0.05"},
		{0, "usd", "$0.00"},
		{0, "jpy", "¥0"},
		{0, "bhd", "BHD 0.000"},
		{1234567, "krw", "₩1,234,567"},
		{1234500, "bhd", "BHD 1,234.500"},
		{7, "bhd", "BHD 0.007"},
		{123456789012, "usd", "$1,234,567,890.12"},
		{100000000, "eur", "€1,000,000.00"},
		{99999, "usd", "$999.99"},
		{-2500, "usd", "-$25.00"},
		{1000, "chf", "CHF 10.00"},
		{1000, "cad", "CA$10.00"},
		{math.MaxInt64, "usd", "$92,233,720,368,547,758.07"},
		{math.MinInt64, "usd", "-$92,233,720,368,547,758.08"},
		{19900, "xyz", "19900 XYZ"},
		{19900, "XYZ", "19900 XYZ"},
		{19900, "dollars", "19900 DOLLARS"},
		{19900, "", "19900"},
	}
	for _, tt := range tests {
		if got := mail.FormatMoney(tt.amount, tt.currency); got != tt.want {
			t.Errorf("FormatMoney(%d, %q) = %q, want %q", tt.amount, tt.currency, got, tt.want)
		}
	}
}
