// Money: amounts arrive as integer minor units, the way Stripe stores them,
// and are rendered for humans with the currency's CLDR symbol and number of
// decimals. No float ever touches an amount.
package mail

import (
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// FormatMoney renders amount, in minor units of the ISO 4217 currency code
// (any case), in English with the currency's symbol, its standard number of
// decimals and thousands separators: 19900 "usd" is "$199.00", 4999 "eur"
// is "€49.99", 19900 "jpy" is "¥19,900", 1234500 "bhd" is "BHD 1,234.500".
// A code x/text does not know is rendered as the raw amount and the
// uppercase code, e.g. "19900 XYZ", so a wrong scale is never guessed.
func FormatMoney(amount int64, code string) string {
	code = strings.ToUpper(strings.TrimSpace(code))
	unit, err := currency.ParseISO(code)
	if err != nil {
		if code == "" {
			return strconv.FormatInt(amount, 10)
		}
		return strconv.FormatInt(amount, 10) + " " + code
	}
	scale, _ := currency.Standard.Rounding(unit)
	symbol := message.NewPrinter(language.English).Sprint(currency.Symbol(unit))

	var b strings.Builder
	if amount < 0 {
		b.WriteByte('-')
	}
	b.WriteString(symbol)
	if r := []rune(symbol); len(r) > 0 && unicode.IsLetter(r[len(r)-1]) {
		b.WriteByte(' ') // "CHF 10.00", but "$10.00" and "CA$10.00"
	}
	b.WriteString(decimal(absUint(amount), scale))
	return b.String()
}

// absUint returns |n| without overflowing on math.MinInt64.
func absUint(n int64) uint64 {
	if n < 0 {
		return uint64(-(n + 1)) + 1
	}
	return uint64(n)
}

// decimal renders minor units with scale decimals and comma-grouped
// thousands.
func decimal(minor uint64, scale int) string {
	pow := uint64(1)
	for range scale {
		pow *= 10
	}
	whole := strconv.FormatUint(minor/pow, 10)

	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if scale > 0 {
		frac := strconv.FormatUint(minor%pow, 10)
		b.WriteByte('.')
		b.WriteString(strings.Repeat("0", scale-len(frac)))
		b.WriteString(frac)
	}
	return b.String()
}
