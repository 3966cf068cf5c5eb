// The Tax Calculations and Tax Transactions APIs (API 2023-10-16), the way
// a PaymentIntent cart gets Stripe Tax: the server calculates the tax of its
// lines for the buyer's address, charges amount_total, and once paid
// records the sale with a transaction made from the calculation; a refund
// is recorded as a reversal (whole, or a flat amount). Calculations expire
// after 90 days; transaction references are unique.

package stripeemu

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// taxRoutes mounts the tax endpoints.
func (e *Emulator) taxRoutes(h func(pattern string, fn apiFunc)) {
	h("POST /v1/tax/calculations", e.createTaxCalculation)
	h("GET /v1/tax/calculations/{id}/line_items", e.listTaxCalculationLines)
	h("POST /v1/tax/transactions/create_from_calculation", e.createTaxTransaction)
	h("POST /v1/tax/transactions/create_reversal", e.createTaxReversal)
	h("GET /v1/tax/transactions/{id}", e.getTaxTransaction)
	h("GET /v1/tax/transactions/{id}/line_items", e.listTaxTransactionLines)
}

// calculationTTL is how long a calculation can be turned into a transaction.
const calculationTTL = 90 * 24 * time.Hour

// taxLocation is where a calculation's customer is taxed.
type taxLocation struct {
	address  map[string]any // tax_product_resource_postal_address
	source   string         // billing or shipping
	ip       string
	country  string
	state    string
	override string // taxability_override: none, customer_exempt, reverse_charge
}

// details renders the location as customer_details.
func (l taxLocation) details() map[string]any {
	var addr any
	if l.address != nil {
		addr = l.address
	}
	return map[string]any{"address": addr, "address_source": optString(l.source), "ip_address": optString(l.ip), "tax_ids": []any{},
		"taxability_override": l.override}
}

// taxLine is a line of a calculation or transaction.
type taxLine struct {
	id        string
	reference string
	product   string
	taxCode   string
	inclusive bool
	amount    int64
	quantity  int64
	tax       int64
	original  string // reversals: the transaction line reversed
}

// taxCalc is a stored tax calculation.
type taxCalc struct {
	id, currency, customerID string
	created, expiresAt       int64
	loc                      taxLocation
	bp                       int64
	reason                   string // taxability_reason of every line
	lines                    []taxLine
	exclusive, inclusive     int64
}

func (c *taxCalc) sortKey() (int64, string) { return c.created, c.id }

// taxTxn is a stored tax transaction or reversal.
type taxTxn struct {
	id, currency, customerID, reference, typ, original string
	created, taxDate                                   int64
	loc                                                taxLocation
	metadata                                           map[string]string
	lines                                              []taxLine
	reversed                                           map[string]taxLine // original lines: what reversals took back so far
}

func (t *taxTxn) sortKey() (int64, string) { return t.created, t.id }

// defaultTaxCode is the product tax code of lines without one: Stripe's
// preset for general electronically supplied services.
const defaultTaxCode = "txcd_10000000"

// taxLocationFromForm reads customer_details; a location Stripe cannot tax
// is refused. The emulator's customers have no address or tax exemption,
// so a customer parameter only has to exist.
func (e *Emulator) taxLocationFromForm(c *call) (taxLocation, *apiError) {
	f := c.form
	loc := taxLocation{ip: f.Get("customer_details[ip_address]"), source: f.Get("customer_details[address_source]"),
		override: orDefault(f.Get("customer_details[taxability_override]"), "none")}
	if ae := oneOf("customer_details[taxability_override]", loc.override, []string{"none", "customer_exempt", "reverse_charge"}); ae != nil {
		return loc, ae
	}
	if cid := f.Get("customer"); cid != "" {
		if _, ok := e.customers.get(cid); !ok {
			return loc, invalid("customer", "resource_missing", "No such customer: '%s'", cid)
		}
	}
	addr := formMap(f, "customer_details[address]")
	if len(addr) == 0 {
		if loc.ip != "" {
			loc.country = "US" // the emulator locates every IP address in the US
			return loc, nil
		}
		return loc, invalid("customer_details[address]", "customer_tax_location_invalid",
			"We could not determine the customer's tax location: provide customer_details[address] (with address_source) or customer_details[ip_address].")
	}
	if loc.source == "" {
		return loc, invalid("customer_details[address_source]", "parameter_missing", "Missing required param: customer_details[address_source] (billing or shipping).")
	}
	if ae := oneOf("customer_details[address_source]", loc.source, []string{"billing", "shipping"}); ae != nil {
		return loc, ae
	}
	loc.country = strings.ToUpper(addr["country"])
	if len(loc.country) != 2 {
		return loc, invalid("customer_details[address][country]", "customer_tax_location_invalid", "Invalid country: %q (a two-letter ISO code).", addr["country"])
	}
	if (loc.country == "US" || loc.country == "CA") && addr["postal_code"] == "" {
		return loc, invalid("customer_details[address][postal_code]", "customer_tax_location_invalid",
			"We could not determine the customer's tax location: a %s address needs a postal_code.", loc.country)
	}
	loc.state = addr["state"]
	loc.address = map[string]any{"country": loc.country}
	for _, k := range []string{"city", "line1", "line2", "postal_code", "state"} {
		loc.address[k] = optString(addr[k])
	}
	return loc, nil
}

// taxLinesFromForm reads line_items of a calculation.
func (e *Emulator) taxLinesFromForm(c *call) ([]taxLine, *apiError) {
	groups := formIndexed(c.form, "line_items")
	if len(groups) == 0 {
		return nil, invalid("line_items", "parameter_missing", "Missing required param: line_items.")
	}
	refs := map[string]bool{}
	lines := make([]taxLine, 0, len(groups))
	for i, g := range groups {
		p := fmt.Sprintf("line_items[%d]", i)
		as, ok := g["amount"]
		if !ok {
			return nil, invalid(p+"[amount]", "parameter_missing", "Missing required param: %s[amount].", p)
		}
		l := taxLine{reference: g["reference"], product: g["product"], taxCode: orDefault(g["tax_code"], defaultTaxCode), quantity: 1}
		var err error
		if l.amount, err = strconv.ParseInt(as, 10, 64); err != nil || l.amount < 0 {
			return nil, invalid(p+"[amount]", "parameter_invalid_integer", "Invalid non-negative integer: %s", as)
		}
		if qs, ok := g["quantity"]; ok {
			if l.quantity, err = strconv.ParseInt(qs, 10, 64); err != nil || l.quantity < 1 {
				return nil, invalid(p+"[quantity]", "parameter_invalid_integer", "Invalid positive integer: %s", qs)
			}
		}
		switch b := orDefault(g["tax_behavior"], "exclusive"); b {
		case "exclusive", "inclusive":
			l.inclusive = b == "inclusive"
		default:
			return nil, invalid(p+"[tax_behavior]", "", "Invalid %s[tax_behavior]: must be one of exclusive or inclusive", p)
		}
		if l.product != "" {
			if _, ok := e.products.get(l.product); !ok {
				return nil, invalid(p+"[product]", "resource_missing", "No such product: '%s'", l.product)
			}
		}
		if l.reference != "" {
			if refs[l.reference] {
				return nil, invalid(p+"[reference]", "", "Line item references must be unique within a calculation: %q is repeated.", l.reference)
			}
			refs[l.reference] = true
		}
		lines = append(lines, l)
	}
	return lines, nil
}

func (e *Emulator) createTaxCalculation(c *call) (any, error) {
	cur, ae := required(c, "currency")
	if ae != nil {
		return nil, ae
	}
	if rejected := rejectUnsupported(c.form, []string{"shipping_cost", "tax_date"}); rejected != nil {
		return nil, rejected
	}
	lines, ae := e.taxLinesFromForm(c)
	if ae != nil {
		return nil, ae
	}
	loc, ae := e.taxLocationFromForm(c)
	if ae != nil {
		return nil, ae
	}
	now := e.clock.Now()
	calc := &taxCalc{id: e.newIDLocked("taxcalc_"), currency: strings.ToLower(cur), customerID: c.form.Get("customer"), created: now.Unix(),
		expiresAt: now.Add(calculationTTL).Unix(), loc: loc, bp: e.pay.tax.percentBP, reason: "standard_rated"}
	switch loc.override {
	case "customer_exempt":
		calc.reason = "customer_exempt"
	case "reverse_charge":
		calc.reason = "reverse_charge"
	}
	for i := range lines {
		l := &lines[i]
		l.id = e.newIDLocked("tax_li_")
		if calc.reason == "standard_rated" {
			l.tax = taxOn(l.amount, calc.bp, l.inclusive)
		}
		if l.inclusive {
			calc.inclusive += l.tax
		} else {
			calc.exclusive += l.tax
		}
	}
	calc.lines = lines
	e.pay.tax.calcs.add(calc)
	return e.renderTaxCalc(calc, c.expand), nil
}

// taxType is the tax an address pays under the emulated rate.
func taxType(country string) (typ, name string) {
	if country == "US" {
		return "sales_tax", "Sales Tax"
	}
	return "vat", "VAT"
}

// renderTaxCalc renders a calculation; line_items only when expanded (the
// first ten, as Stripe embeds lists).
func (e *Emulator) renderTaxCalc(calc *taxCalc, x expander) map[string]any {
	var sum int64
	for _, l := range calc.lines {
		sum += l.amount
	}
	typ, _ := taxType(calc.loc.country)
	breakdown := []any{}
	for _, inclusive := range []bool{false, true} {
		var amount, taxable int64
		found := false
		for _, l := range calc.lines {
			if l.inclusive == inclusive {
				found = true
				amount += l.tax
				taxable += l.amount - inclusiveTax(l)
			}
		}
		if found {
			breakdown = append(breakdown, map[string]any{"amount": amount, "inclusive": inclusive, "taxability_reason": calc.reason, "taxable_amount": taxable,
				"tax_rate_details": map[string]any{"country": calc.loc.country, "percentage_decimal": e.ratePercent(calc), "state": optString(calc.loc.state), "tax_type": typ}})
		}
	}
	w := map[string]any{"id": calc.id, "object": "tax.calculation", "amount_total": sum + calc.exclusive, "currency": calc.currency,
		"customer": optString(calc.customerID), "customer_details": calc.loc.details(), "expires_at": calc.expiresAt, "line_items": nil,
		"livemode": false, "shipping_cost": nil, "tax_amount_exclusive": calc.exclusive, "tax_amount_inclusive": calc.inclusive,
		"tax_breakdown": breakdown, "tax_date": calc.created}
	if x.has("line_items") {
		lines, more := calc.lines, false
		if len(lines) > embeddedListLimit {
			lines, more = lines[:embeddedListLimit], true
		}
		w["line_items"] = renderList("/v1/tax/calculations/"+calc.id+"/line_items", lines, more, func(l taxLine) any { return e.renderCalcLine(calc, l) })
	}
	return w
}

// ratePercent is the rate a calculation applied, as percentage_decimal.
func (e *Emulator) ratePercent(calc *taxCalc) string {
	if calc.reason != "standard_rated" {
		return "0.0"
	}
	return percentDecimal(calc.bp)
}

// inclusiveTax is the tax inside a line's amount: none when exclusive.
func inclusiveTax(l taxLine) int64 {
	if l.inclusive {
		return l.tax
	}
	return 0
}

// renderCalcLine renders a calculation's line with its tax breakdown.
func (e *Emulator) renderCalcLine(calc *taxCalc, l taxLine) any {
	typ, name := taxType(calc.loc.country)
	level, jurisdiction := "country", calc.loc.country
	if calc.loc.state != "" {
		level, jurisdiction = "state", calc.loc.country+"-"+calc.loc.state
	}
	bd := map[string]any{"amount": l.tax, "sourcing": "destination", "taxability_reason": calc.reason, "taxable_amount": l.amount - inclusiveTax(l),
		"jurisdiction":     map[string]any{"country": calc.loc.country, "display_name": jurisdiction + " (emulated)", "level": level, "state": optString(calc.loc.state)},
		"tax_rate_details": map[string]any{"display_name": name, "percentage_decimal": e.ratePercent(calc), "tax_type": typ}}
	return map[string]any{"id": l.id, "object": "tax.calculation_line_item", "amount": l.amount, "amount_tax": l.tax, "livemode": false,
		"product": optString(l.product), "quantity": l.quantity, "reference": optString(l.reference), "tax_behavior": behaviorName(l.inclusive),
		"tax_breakdown": []any{bd}, "tax_code": l.taxCode}
}

// behaviorName names a tax behavior.
func behaviorName(inclusive bool) string {
	if inclusive {
		return "inclusive"
	}
	return "exclusive"
}

func (e *Emulator) listTaxCalculationLines(c *call) (any, error) {
	calc, ok := e.pay.tax.calcs.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("tax.calculation", c.r.PathValue("id"))
	}
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	lines, more, ae := pageSlice(calc.lines, func(l taxLine) string { return l.id }, q, "tax.calculation_line_item")
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/tax/calculations/"+calc.id+"/line_items", lines, more, func(l taxLine) any { return e.renderCalcLine(calc, l) }), nil
}

// checkReference refuses a missing or already used transaction reference.
func (e *Emulator) checkReference(c *call) (string, *apiError) {
	ref, ae := required(c, "reference")
	if ae != nil {
		return "", ae
	}
	if len(ref) > 500 {
		return "", invalid("reference", "", "The reference must be at most 500 characters.")
	}
	if id, ok := e.pay.tax.references[ref]; ok {
		return "", invalid("reference", "", "A transaction with the reference %q already exists (%s). References must be unique across transactions and reversals.", ref, id)
	}
	return ref, nil
}

func (e *Emulator) createTaxTransaction(c *call) (any, error) {
	calcID, ae := required(c, "calculation")
	if ae != nil {
		return nil, ae
	}
	calc, ok := e.pay.tax.calcs.get(calcID)
	if !ok {
		return nil, invalid("calculation", "resource_missing", "No such tax calculation: '%s'", calcID)
	}
	if e.nowUnix() >= calc.expiresAt {
		return nil, invalid("calculation", "", "The tax calculation %s expired; create a new one.", calc.id)
	}
	ref, ae := e.checkReference(c)
	if ae != nil {
		return nil, ae
	}
	t := &taxTxn{id: e.newIDLocked("tax_"), currency: calc.currency, customerID: calc.customerID, reference: ref, typ: "transaction",
		created: e.nowUnix(), taxDate: calc.created, loc: calc.loc, metadata: formMap(c.form, "metadata"), reversed: map[string]taxLine{}}
	for i, l := range calc.lines {
		l.id = e.newIDLocked("tax_li_")
		l.reference = orDefault(l.reference, fmt.Sprintf("L%d", i+1))
		t.lines = append(t.lines, l)
	}
	e.pay.tax.txns.add(t)
	e.pay.tax.references[ref] = t.id
	return e.renderTaxTxn(t, c.expand), nil
}

// remaining returns what reversals have not yet taken back of orig's line l.
func (t *taxTxn) remaining(l taxLine) (amount, tax int64) {
	r := t.reversed[l.id]
	return l.amount + r.amount, l.tax + r.tax
}

func (e *Emulator) createTaxReversal(c *call) (any, error) {
	f := c.form
	mode, ae := required(c, "mode")
	if ae != nil {
		return nil, ae
	}
	if ae := oneOf("mode", mode, []string{"full", "partial"}); ae != nil {
		return nil, ae
	}
	origID, ae := required(c, "original_transaction")
	if ae != nil {
		return nil, ae
	}
	orig, ok := e.pay.tax.txns.get(origID)
	if !ok || orig.typ != "transaction" {
		return nil, invalid("original_transaction", "resource_missing", "No such tax transaction: '%s'", origID)
	}
	if ae := rejectUnsupported(f, []string{"line_items", "shipping_cost"}); ae != nil {
		return nil, invalid(ae.Param, "", "The emulator reverses a whole transaction (mode=full) or a flat_amount (mode=partial), not %s.", ae.Param)
	}
	var flat int64
	switch {
	case mode == "full" && f.Has("flat_amount"):
		return nil, invalid("flat_amount", "", "flat_amount is only allowed with mode=partial.")
	case mode == "partial" && !f.Has("flat_amount"):
		return nil, invalid("flat_amount", "parameter_missing", "Missing required param: flat_amount (a negative amount, taxes included).")
	case mode == "partial":
		if flat, ae = formInt(f, "flat_amount"); ae != nil {
			return nil, ae
		}
		if flat >= 0 {
			return nil, invalid("flat_amount", "", "flat_amount must be negative: the amount to reverse, taxes included.")
		}
	}
	ref, ae := e.checkReference(c)
	if ae != nil {
		return nil, ae
	}
	lines, ae := reversalLines(orig, -flat)
	if ae != nil {
		return nil, ae
	}
	t := &taxTxn{id: e.newIDLocked("tax_"), currency: orig.currency, customerID: orig.customerID, reference: ref, typ: "reversal", original: orig.id,
		created: e.nowUnix(), taxDate: orig.taxDate, loc: orig.loc, metadata: formMap(f, "metadata")}
	for i := range lines {
		lines[i].id = e.newIDLocked("tax_li_")
		r := orig.reversed[lines[i].original]
		r.amount += lines[i].amount
		r.tax += lines[i].tax
		orig.reversed[lines[i].original] = r
	}
	t.lines = lines
	e.pay.tax.txns.add(t)
	e.pay.tax.references[ref] = t.id
	return e.renderTaxTxn(t, c.expand), nil
}

// reversalLines takes back what remains of orig's lines (flat is 0), or
// flat (taxes included) spread over them in proportion to what remains of
// each, the rounding remainder on the last; amounts are negative.
func reversalLines(orig *taxTxn, flat int64) ([]taxLine, *apiError) {
	var gross int64
	for _, l := range orig.lines {
		a, t := orig.remaining(l)
		gross += grossOf(l.inclusive, a, t)
	}
	if gross <= 0 {
		return nil, invalid("original_transaction", "", "Transaction %s has been fully reversed.", orig.id)
	}
	if flat > gross {
		return nil, invalid("flat_amount", "", "flat_amount (%d) exceeds what remains to reverse of %s (%d).", -flat, orig.id, gross)
	}
	var out []taxLine
	left := flat
	for i, l := range orig.lines {
		a, t := orig.remaining(l)
		lineGross := grossOf(l.inclusive, a, t)
		take, takeTax := a, t
		if flat > 0 {
			share := flat * lineGross / gross
			if i == len(orig.lines)-1 {
				share = left
			}
			left -= share
			takeTax = 0
			if lineGross > 0 {
				takeTax = (share*t + lineGross/2) / lineGross
			}
			take = share
			if !l.inclusive {
				take = share - takeTax
			}
		}
		out = append(out, taxLine{reference: l.reference, product: l.product, taxCode: l.taxCode, inclusive: l.inclusive, amount: -take,
			tax: -takeTax, quantity: l.quantity, original: l.id})
	}
	return out, nil
}

// grossOf is what a line costs the buyer, tax included.
func grossOf(inclusive bool, amount, tax int64) int64 {
	if inclusive {
		return amount
	}
	return amount + tax
}

func (e *Emulator) getTaxTransaction(c *call) (any, error) {
	t, ok := e.pay.tax.txns.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("tax.transaction", c.r.PathValue("id"))
	}
	return e.renderTaxTxn(t, c.expand), nil
}

func (e *Emulator) listTaxTransactionLines(c *call) (any, error) {
	t, ok := e.pay.tax.txns.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("tax.transaction", c.r.PathValue("id"))
	}
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	lines, more, ae := pageSlice(t.lines, func(l taxLine) string { return l.id }, q, "tax.transaction_line_item")
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/tax/transactions/"+t.id+"/line_items", lines, more, func(l taxLine) any { return renderTxnLine(t, l) }), nil
}

// renderTaxTxn renders a transaction; line_items only when expanded.
func (e *Emulator) renderTaxTxn(t *taxTxn, x expander) map[string]any {
	var reversal any
	if t.typ == "reversal" {
		reversal = map[string]any{"original_transaction": t.original}
	}
	w := map[string]any{"id": t.id, "object": "tax.transaction", "created": t.created, "currency": t.currency, "customer": optString(t.customerID),
		"customer_details": t.loc.details(), "line_items": nil, "livemode": false, "metadata": cloneMeta(t.metadata), "reference": t.reference,
		"reversal": reversal, "shipping_cost": nil, "tax_date": t.taxDate, "type": t.typ}
	if x.has("line_items") {
		lines, more := t.lines, false
		if len(lines) > embeddedListLimit {
			lines, more = lines[:embeddedListLimit], true
		}
		w["line_items"] = renderList("/v1/tax/transactions/"+t.id+"/line_items", lines, more, func(l taxLine) any { return renderTxnLine(t, l) })
	}
	return w
}

// renderTxnLine renders a transaction's line.
func renderTxnLine(t *taxTxn, l taxLine) any {
	var reversal any
	if l.original != "" {
		reversal = map[string]any{"original_line_item": l.original}
	}
	return map[string]any{"id": l.id, "object": "tax.transaction_line_item", "amount": l.amount, "amount_tax": l.tax, "livemode": false,
		"metadata": map[string]string{}, "product": optString(l.product), "quantity": l.quantity, "reference": l.reference, "reversal": reversal,
		"tax_behavior": behaviorName(l.inclusive), "tax_code": l.taxCode, "type": t.typ}
}
