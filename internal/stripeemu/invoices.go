// Invoices: their state (draft → open → paid, uncollectible or void), the
// 2023-10-16 rendering, and the transitions shared by renewals, the API,
// the hosted invoice page and the Go operations: finalizing, attempting a
// payment (with Smart-Retries-like scheduling), marking paid, uncollectible
// or void. Every transition records its event.

package stripeemu

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// invStatus is an invoice's status.
type invStatus string

// The invoice statuses.
const (
	invDraft         invStatus = "draft"
	invOpen          invStatus = "open"
	invPaid          invStatus = "paid"
	invUncollectible invStatus = "uncollectible"
	invVoid          invStatus = "void"
)

// Billing reasons paymentd distinguishes.
const (
	reasonCreate = "subscription_create"
	reasonCycle  = "subscription_cycle"
	reasonUpdate = "subscription_update"
)

// invoice is a stored invoice.
type invoice struct {
	id            string
	created       int64
	sub           *subscription
	customerID    string
	currency      string
	billingReason string
	status        invStatus
	lines         []invoiceLine
	discount      int64
	discountID    string
	subtotal      int64
	subMetadata   map[string]string

	startingBalance int64
	endingBalance   *int64
	amountDue       int64
	amountPaid      int64

	attemptCount       int
	autoAttempts       int // automatic attempts: the first and each retry
	attempted          bool
	autoAdvance        bool
	nextPaymentAttempt int64
	firstFailure       int64

	number                    string
	customerEmail, customerNm string
	periodStart, periodEnd    int64
	finalizedAt, paidAt       int64
	voidedAt, uncollectibleAt int64
	intentID, chargeID        string
}

func (inv *invoice) sortKey() (int64, string) { return inv.created, inv.id }

// total is what the lines cost after the discount.
func (inv *invoice) total() int64 { return inv.subtotal - inv.discount }

// invoiceLine is one line of an invoice.
type invoiceLine struct {
	id            string
	amount        int64
	description   string
	priceID       string
	quantity      int64
	periodStart   int64
	periodEnd     int64
	proration     bool
	subItemID     string
	invoiceItemID string
}

// invoiceLineJSON is a Stripe invoice line item.
type invoiceLineJSON struct {
	ID                     string            `json:"id"`
	Object                 string            `json:"object"`
	Amount                 int64             `json:"amount"`
	AmountExcludingTax     int64             `json:"amount_excluding_tax"`
	Currency               string            `json:"currency"`
	Description            string            `json:"description"`
	DiscountAmounts        []any             `json:"discount_amounts"`
	Discountable           bool              `json:"discountable"`
	Discounts              []any             `json:"discounts"`
	Invoice                *string           `json:"invoice"`
	InvoiceItem            *string           `json:"invoice_item,omitempty"`
	Livemode               bool              `json:"livemode"`
	Metadata               map[string]string `json:"metadata"`
	Period                 linePeriodJSON    `json:"period"`
	Price                  any               `json:"price"`
	Proration              bool              `json:"proration"`
	ProrationDetails       map[string]any    `json:"proration_details"`
	Quantity               int64             `json:"quantity"`
	Subscription           any               `json:"subscription"`
	SubscriptionItem       *string           `json:"subscription_item,omitempty"`
	TaxAmounts             []any             `json:"tax_amounts"`
	TaxRates               []any             `json:"tax_rates"`
	Type                   string            `json:"type"`
	UnitAmountExcludingTax *string           `json:"unit_amount_excluding_tax"`
}

// linePeriodJSON is a line's service period.
type linePeriodJSON struct {
	End   int64 `json:"end"`
	Start int64 `json:"start"`
}

// statusTransitionsJSON is an invoice's status_transitions.
type statusTransitionsJSON struct {
	FinalizedAt           *int64 `json:"finalized_at"`
	MarkedUncollectibleAt *int64 `json:"marked_uncollectible_at"`
	PaidAt                *int64 `json:"paid_at"`
	VoidedAt              *int64 `json:"voided_at"`
}

// discountAmountJSON is one entry of total_discount_amounts.
type discountAmountJSON struct {
	Amount   int64  `json:"amount"`
	Discount string `json:"discount"`
}

// invoiceJSON is a Stripe invoice.
type invoiceJSON struct {
	ID                           string                `json:"id,omitempty"` // absent on an upcoming invoice
	Object                       string                `json:"object"`
	AccountCountry               string                `json:"account_country"`
	AccountName                  string                `json:"account_name"`
	AccountTaxIDs                any                   `json:"account_tax_ids"`
	AmountDue                    int64                 `json:"amount_due"`
	AmountPaid                   int64                 `json:"amount_paid"`
	AmountRemaining              int64                 `json:"amount_remaining"`
	AmountShipping               int64                 `json:"amount_shipping"`
	Application                  any                   `json:"application"`
	ApplicationFeeAmount         any                   `json:"application_fee_amount"`
	AttemptCount                 int                   `json:"attempt_count"`
	Attempted                    bool                  `json:"attempted"`
	AutoAdvance                  bool                  `json:"auto_advance"`
	AutomaticTax                 map[string]any        `json:"automatic_tax"`
	BillingReason                string                `json:"billing_reason"`
	Charge                       any                   `json:"charge"`
	CollectionMethod             string                `json:"collection_method"`
	Created                      int64                 `json:"created"`
	Currency                     string                `json:"currency"`
	CustomFields                 any                   `json:"custom_fields"`
	Customer                     any                   `json:"customer"`
	CustomerAddress              any                   `json:"customer_address"`
	CustomerEmail                *string               `json:"customer_email"`
	CustomerName                 *string               `json:"customer_name"`
	CustomerPhone                any                   `json:"customer_phone"`
	CustomerShipping             any                   `json:"customer_shipping"`
	CustomerTaxExempt            string                `json:"customer_tax_exempt"`
	CustomerTaxIDs               []any                 `json:"customer_tax_ids"`
	DefaultPaymentMethod         any                   `json:"default_payment_method"`
	DefaultSource                any                   `json:"default_source"`
	DefaultTaxRates              []any                 `json:"default_tax_rates"`
	Description                  any                   `json:"description"`
	Discount                     any                   `json:"discount"`
	Discounts                    []any                 `json:"discounts"`
	DueDate                      any                   `json:"due_date"`
	EffectiveAt                  *int64                `json:"effective_at"`
	EndingBalance                *int64                `json:"ending_balance"`
	Footer                       any                   `json:"footer"`
	FromInvoice                  any                   `json:"from_invoice"`
	HostedInvoiceURL             *string               `json:"hosted_invoice_url"`
	InvoicePDF                   *string               `json:"invoice_pdf"`
	Issuer                       map[string]any        `json:"issuer"`
	LastFinalizationError        any                   `json:"last_finalization_error"`
	LatestRevision               any                   `json:"latest_revision"`
	Lines                        countedListJSON       `json:"lines"`
	Livemode                     bool                  `json:"livemode"`
	Metadata                     map[string]string     `json:"metadata"`
	NextPaymentAttempt           *int64                `json:"next_payment_attempt"`
	Number                       *string               `json:"number"`
	OnBehalfOf                   any                   `json:"on_behalf_of"`
	Paid                         bool                  `json:"paid"`
	PaidOutOfBand                bool                  `json:"paid_out_of_band"`
	PaymentIntent                any                   `json:"payment_intent"`
	PaymentSettings              map[string]any        `json:"payment_settings"`
	PeriodEnd                    int64                 `json:"period_end"`
	PeriodStart                  int64                 `json:"period_start"`
	PostPaymentCreditNotesAmount int64                 `json:"post_payment_credit_notes_amount"`
	PrePaymentCreditNotesAmount  int64                 `json:"pre_payment_credit_notes_amount"`
	Quote                        any                   `json:"quote"`
	ReceiptNumber                any                   `json:"receipt_number"`
	Rendering                    any                   `json:"rendering"`
	ShippingCost                 any                   `json:"shipping_cost"`
	ShippingDetails              any                   `json:"shipping_details"`
	StartingBalance              int64                 `json:"starting_balance"`
	StatementDescriptor          any                   `json:"statement_descriptor"`
	Status                       invStatus             `json:"status"`
	StatusTransitions            statusTransitionsJSON `json:"status_transitions"`
	Subscription                 any                   `json:"subscription"`
	SubscriptionDetails          map[string]any        `json:"subscription_details"`
	Subtotal                     int64                 `json:"subtotal"`
	SubtotalExcludingTax         int64                 `json:"subtotal_excluding_tax"`
	Tax                          any                   `json:"tax"`
	TestClock                    any                   `json:"test_clock"`
	Total                        int64                 `json:"total"`
	TotalDiscountAmounts         []discountAmountJSON  `json:"total_discount_amounts"`
	TotalExcludingTax            int64                 `json:"total_excluding_tax"`
	TotalTaxAmounts              []any                 `json:"total_tax_amounts"`
	TransferData                 any                   `json:"transfer_data"`
	WebhooksDeliveredAt          *int64                `json:"webhooks_delivered_at"`
}

// hostedInvoiceURL is where the emulator serves an invoice's payment page.
func (e *Emulator) hostedInvoiceURL(id string) string { return e.baseURL + "/invoice/" + id }

// renderInvoice renders inv; customer, subscription, payment_intent,
// charge and lines.data.price.product are expandable.
func (e *Emulator) renderInvoice(inv *invoice, x expander) invoiceJSON {
	w := e.invoiceShell(inv.customerID, inv.currency, x)
	w.ID = inv.id
	w.AmountDue, w.AmountPaid = inv.amountDue, inv.amountPaid
	w.AmountRemaining = inv.amountDue - inv.amountPaid
	if inv.status == invPaid {
		w.AmountRemaining = 0
	}
	w.AttemptCount, w.Attempted, w.AutoAdvance = inv.attemptCount, inv.attempted, inv.autoAdvance
	w.BillingReason = inv.billingReason
	w.Created = inv.created
	w.CustomerEmail, w.CustomerName = optString(inv.customerEmail), optString(inv.customerNm)
	w.EffectiveAt = optInt(inv.finalizedAt)
	w.EndingBalance = inv.endingBalance
	if inv.status != invDraft {
		w.HostedInvoiceURL = optString(e.hostedInvoiceURL(inv.id))
	}
	w.NextPaymentAttempt = optInt(inv.nextPaymentAttempt)
	w.Number = optString(inv.number)
	w.Paid = inv.status == invPaid
	w.PeriodEnd, w.PeriodStart = inv.periodEnd, inv.periodStart
	w.StartingBalance = inv.startingBalance
	w.Status = inv.status
	w.StatusTransitions = statusTransitionsJSON{FinalizedAt: optInt(inv.finalizedAt), MarkedUncollectibleAt: optInt(inv.uncollectibleAt),
		PaidAt: optInt(inv.paidAt), VoidedAt: optInt(inv.voidedAt)}
	w.Subtotal, w.SubtotalExcludingTax = inv.subtotal, inv.subtotal
	w.Total, w.TotalExcludingTax = inv.total(), inv.total()
	if inv.discount != 0 {
		w.TotalDiscountAmounts = []discountAmountJSON{{Amount: inv.discount, Discount: inv.discountID}}
		w.Discounts = []any{inv.discountID}
	}
	w.WebhooksDeliveredAt = optInt(inv.created)
	w.SubscriptionDetails = map[string]any{"metadata": cloneMeta(inv.subMetadata)}
	if inv.sub != nil {
		s := inv.sub
		w.Subscription = e.ref(s.id, x, "subscription", func(string, expander) any { return e.renderSubscription(s, x.sub("subscription")) })
	}
	w.PaymentIntent = e.ref(inv.intentID, x, "payment_intent", func(id string, sub expander) any {
		if pi, ok := e.intents.get(id); ok {
			return e.renderIntent(pi, sub)
		}
		return nil
	})
	w.Charge = e.ref(inv.chargeID, x, "charge", func(id string, sub expander) any {
		if ch, ok := e.charges.get(id); ok {
			return e.renderCharge(ch, sub)
		}
		return nil
	})
	w.Lines = e.renderLines(inv.id, inv.sub, inv.currency, inv.lines, x.sub("lines"))
	return w
}

// invoiceShell is the part of an invoice that every invoice shares.
func (e *Emulator) invoiceShell(customerID, currency string, x expander) invoiceJSON {
	w := invoiceJSON{
		Object: "invoice", AccountCountry: "US", AccountName: "paymentd (Stripe emulator)",
		AutomaticTax: map[string]any{"enabled": false, "liability": nil, "status": nil}, CollectionMethod: "charge_automatically",
		Currency: currency, CustomerTaxExempt: "none", CustomerTaxIDs: []any{}, DefaultTaxRates: []any{}, Discounts: []any{},
		Issuer: map[string]any{"type": "self"}, Metadata: map[string]string{},
		PaymentSettings:      map[string]any{"default_mandate": nil, "payment_method_options": nil, "payment_method_types": nil},
		TotalDiscountAmounts: []discountAmountJSON{}, TotalTaxAmounts: []any{}, Status: invDraft,
	}
	w.Customer = e.ref(customerID, x, "customer", func(id string, _ expander) any {
		if c, ok := e.customers.get(id); ok {
			return c.render()
		}
		return nil
	})
	return w
}

// renderLines renders an invoice's lines; each price is an object.
func (e *Emulator) renderLines(invID string, s *subscription, currency string, lines []invoiceLine, x expander) countedListJSON {
	px := x.sub("data").sub("price")
	data := make([]any, len(lines))
	for i, l := range lines {
		var pr any
		if p, ok := e.prices.get(l.priceID); ok {
			pr = e.renderPrice(p, px)
		}
		typ := "subscription"
		if l.invoiceItemID != "" {
			typ = "invoiceitem"
		}
		lj := invoiceLineJSON{ID: l.id, Object: "line_item", Amount: l.amount, AmountExcludingTax: l.amount, Currency: currency,
			Description: l.description, DiscountAmounts: []any{}, Discountable: !l.proration, Discounts: []any{}, Invoice: optString(invID),
			InvoiceItem: optString(l.invoiceItemID), Metadata: map[string]string{}, Period: linePeriodJSON{End: l.periodEnd, Start: l.periodStart},
			Price: pr, Proration: l.proration, ProrationDetails: map[string]any{"credited_items": nil}, Quantity: l.quantity,
			SubscriptionItem: optString(l.subItemID), TaxAmounts: []any{}, TaxRates: []any{}, Type: typ}
		if s != nil {
			lj.Subscription = s.id
		}
		if l.quantity != 0 {
			u := fmt.Sprintf("%d", l.amount/l.quantity)
			lj.UnitAmountExcludingTax = &u
		}
		data[i] = lj
	}
	url := "/v1/invoices/upcoming/lines"
	if invID != "" {
		url = "/v1/invoices/" + invID + "/lines"
	}
	return countedListJSON{Object: "list", Data: data, TotalCount: len(data), URL: url}
}

// recordInvoiceLocked records an event whose object is inv as it is now.
func (e *Emulator) recordInvoiceLocked(typ string, inv *invoice, req eventRequestJSON) {
	e.recordLocked(typ, e.renderInvoice(inv, nil), req, nil)
}

// newInvoiceLocked stores a draft invoice of s with the given lines, for
// the usage period [periodStart, periodEnd] (Stripe's invoice period looks
// back: a renewal invoice's period is the one that just ended; its lines
// carry the service period). It records nothing: the caller records
// invoice.created once the subscription points at it.
func (e *Emulator) newInvoiceLocked(s *subscription, reason string, lines []invoiceLine, periodStart, periodEnd int64) *invoice {
	inv := &invoice{
		id: e.newIDLocked("in_"), created: e.nowUnix(), sub: s, customerID: s.customerID, currency: s.currency,
		billingReason: reason, status: invDraft, autoAdvance: true, subMetadata: cloneMeta(s.metadata),
		periodStart: periodStart, periodEnd: periodEnd,
	}
	for i := range lines {
		lines[i].id = e.newIDLocked("il_")
		inv.subtotal += lines[i].amount
	}
	inv.lines = lines
	inv.amountDue = max(inv.total(), 0)
	e.applyDiscountLocked(s, inv)
	if cu, ok := e.customers.get(s.customerID); ok {
		inv.customerEmail, inv.customerNm = ptrValue(cu.Email), ptrValue(cu.Name)
	}
	e.bill.invoices.add(inv)
	e.bill.invoicesBySub[s.id] = append(e.bill.invoicesBySub[s.id], inv)
	e.bill.invoicesByCustomer[s.customerID] = append(e.bill.invoicesByCustomer[s.customerID], inv)
	return inv
}

// itemLines returns one line per item of s for the service period
// [start, end], at full price (zero during a trial).
func (e *Emulator) itemLines(s *subscription, start, end int64, trial bool) []invoiceLine {
	out := make([]invoiceLine, 0, len(s.items))
	for _, it := range s.items {
		l := invoiceLine{priceID: it.priceID, quantity: it.quantity, periodStart: start, periodEnd: end, subItemID: it.id}
		name := e.productName(it.priceID)
		if trial {
			l.description = "Trial period for " + name
		} else {
			l.amount = e.itemAmount(it)
			l.description = fmt.Sprintf("%d × %s (at %s / %s)", it.quantity, name, e.unitPrice(it.priceID), e.intervalLabel(it.priceID))
		}
		out = append(out, l)
	}
	return out
}

// unitPrice formats a price's unit amount.
func (e *Emulator) unitPrice(priceID string) string {
	if p, ok := e.prices.get(priceID); ok {
		return formatAmount(p.UnitAmount, p.Currency)
	}
	return ""
}

// intervalLabel names a price's interval, e.g. "month" or "3 months".
func (e *Emulator) intervalLabel(priceID string) string {
	p, ok := e.prices.get(priceID)
	if !ok || recurringOf(p) == nil {
		return ""
	}
	r := recurringOf(p)
	if r.IntervalCount == 1 {
		return r.Interval
	}
	return fmt.Sprintf("%d %ss", r.IntervalCount, r.Interval)
}

// renderUpcoming renders the preview Stripe sends as invoice.upcoming: the
// invoice the next renewal of s will create, without an id.
func (e *Emulator) renderUpcoming(s *subscription) invoiceJSON {
	interval, count := e.cycleOf(s)
	start := s.periodEnd
	end := periodBoundary(s.anchor, interval, count, s.cycle+1)
	if s.status == subTrialing {
		end = periodBoundary(s.anchor, interval, count, 1)
	}
	lines := append(slicesClone(s.pending), e.itemLines(s, start, end, false)...)
	var subtotal, off int64
	for i := range lines {
		lines[i].id = "il_tmp_" + itoa(int64(i))
		subtotal += lines[i].amount
	}
	w := e.invoiceShell(s.customerID, s.currency, nil)
	if d, c := e.activeDiscountLocked(s); d != nil && subtotal > 0 {
		if off, _ = c.discount(subtotal, s.currency); off > 0 {
			w.TotalDiscountAmounts = []discountAmountJSON{{Amount: off, Discount: d.id}}
			w.Discounts = []any{d.id}
		}
	}
	total := subtotal - off
	w.AmountDue, w.AmountRemaining = max(total, 0), max(total, 0)
	w.AutoAdvance = true
	w.BillingReason = "upcoming"
	w.Created = s.periodEnd
	w.NextPaymentAttempt = optInt(s.periodEnd + e.bill.draftDelay())
	w.PeriodStart, w.PeriodEnd = s.periodStart, s.periodEnd
	w.Subscription = s.id
	w.SubscriptionDetails = map[string]any{"metadata": cloneMeta(s.metadata)}
	w.Subtotal, w.SubtotalExcludingTax, w.Total, w.TotalExcludingTax = subtotal, subtotal, total, total
	if cu, ok := e.customers.get(s.customerID); ok {
		w.CustomerEmail, w.CustomerName = cu.Email, cu.Name
	}
	w.Lines = e.renderLines("", s, s.currency, lines, nil)
	return w
}

// slicesClone copies lines.
func slicesClone(lines []invoiceLine) []invoiceLine { return append([]invoiceLine(nil), lines...) }

// finalizeLocked moves a draft to open: it gets its number and hosted page,
// and the customer's balance is applied (credit lowers amount_due; a
// negative total becomes credit).
func (e *Emulator) finalizeLocked(inv *invoice, req eventRequestJSON) {
	now := e.nowUnix()
	inv.status = invOpen
	inv.finalizedAt = now
	if cu, ok := e.customers.get(inv.customerID); ok {
		inv.number = fmt.Sprintf("%s-%04d", cu.InvoicePrefix, cu.NextInvoiceSequence)
		cu.NextInvoiceSequence++
		inv.customerEmail, inv.customerNm = ptrValue(cu.Email), ptrValue(cu.Name)
		inv.startingBalance = cu.Balance
		due := inv.total() + cu.Balance
		newBalance := int64(0)
		if due < 0 {
			newBalance, due = due, 0
		}
		inv.amountDue = due
		inv.endingBalance = &newBalance
		if newBalance != cu.Balance {
			before := snapshot(cu.render())
			cu.Balance = newBalance
			e.customerChangedLocked(cu, before, eventRequestJSON{})
		}
	}
	e.recordInvoiceLocked("invoice.finalized", inv, req)
}

// finalizeAndCollectLocked finalizes a draft and collects it: a zero
// amount is paid at once, anything else is charged. A subscription whose
// collection is paused keeps its renewal drafts, or marks them
// uncollectible, or voids them, as pause_collection.behavior says.
func (e *Emulator) finalizeAndCollectLocked(inv *invoice, req eventRequestJSON) {
	if s := inv.sub; s != nil && s.pause != nil && inv.billingReason == reasonCycle {
		switch s.pause.Behavior {
		case "keep_as_draft":
			inv.autoAdvance = false
			return
		case "mark_uncollectible":
			e.finalizeLocked(inv, req)
			e.markUncollectibleLocked(inv, req)
			return
		case "void":
			e.finalizeLocked(inv, req)
			e.voidInvoiceLocked(inv, req)
			return
		}
	}
	e.finalizeLocked(inv, req)
	if inv.amountDue == 0 {
		inv.attempted = true
		e.invoicePaidLocked(inv, req)
		return
	}
	e.attemptLocked(inv, true, req)
}

// cardLocked returns the customer's default payment method and whether a
// charge to it succeeds.
func (e *Emulator) cardLocked(customerID string) (pm string, ok bool) {
	pm = e.bill.cards[customerID]
	return pm, pm != "" && !e.bill.declining[customerID]
}

// attemptLocked charges an open invoice once and applies the outcome. An
// automatic attempt (the first of a renewal, or a retry) schedules the next
// retry or, once the schedule is exhausted, applies the account's dunning
// settings; a manual one (the hosted page, POST /v1/invoices/{id}/pay)
// leaves the schedule alone. A subscription's first invoice is never
// retried: the customer was there to pay it, and it expires instead.
func (e *Emulator) attemptLocked(inv *invoice, automatic bool, req eventRequestJSON) bool {
	now := e.nowUnix()
	inv.attemptCount++
	inv.attempted = true
	if automatic {
		inv.autoAttempts++
	}
	pm, ok := e.cardLocked(inv.customerID)
	e.chargeInvoiceLocked(inv, pm, ok)
	if ok {
		e.invoicePaidLocked(inv, req)
		return true
	}
	if inv.firstFailure == 0 {
		inv.firstFailure = now
	}
	s := inv.sub
	exhausted := false
	if automatic && inv.billingReason != reasonCreate && s != nil && s.live() {
		if at, ok := nextRetry(e.bill.retrySchedule(), inv.firstFailure, inv.autoAttempts); ok {
			inv.nextPaymentAttempt = at
			e.scheduleLocked(at, jobRetry, s, inv, int64(inv.autoAttempts))
		} else {
			inv.nextPaymentAttempt = 0
			exhausted = true
		}
	}
	e.recordInvoiceLocked("invoice.payment_failed", inv, req)
	if s == nil || s != nil && inv != s.latestInvoice {
		if exhausted && e.bill.settings.MarkUncollectible {
			e.markUncollectibleLocked(inv, eventRequestJSON{})
		}
		return false
	}
	if s.status == subActive || s.status == subTrialing {
		before := e.subSnapshotLocked(s)
		s.status = subPastDue
		e.subChangedLocked(s, before, req)
	}
	if exhausted {
		e.dunningExhaustedLocked(s, inv)
	}
	return false
}

// dunningExhaustedLocked applies the account's settings once every retry
// of s's latest invoice failed.
func (e *Emulator) dunningExhaustedLocked(s *subscription, inv *invoice) {
	if e.bill.settings.MarkUncollectible {
		e.markUncollectibleLocked(inv, eventRequestJSON{})
	}
	switch e.bill.afterRetries() {
	case "canceled":
		e.endSubscriptionLocked(s, "payment_failed", false, eventRequestJSON{})
	case "unpaid":
		before := e.subSnapshotLocked(s)
		s.status = subUnpaid
		e.subChangedLocked(s, before, eventRequestJSON{})
	}
}

// invoicePaidLocked marks inv paid. Paying a subscription's latest invoice
// makes an incomplete, past_due or unpaid subscription active again; paying
// an older one does not.
func (e *Emulator) invoicePaidLocked(inv *invoice, req eventRequestJSON) {
	inv.status = invPaid
	inv.amountPaid = inv.amountDue
	inv.paidAt = e.nowUnix()
	inv.nextPaymentAttempt = 0
	snap := json.RawMessage(mustJSON(e.renderInvoice(inv, nil))) // one rendering, two events
	e.recordLocked("invoice.paid", snap, req, nil)
	e.recordLocked("invoice.payment_succeeded", snap, req, nil)
	s := inv.sub
	if s == nil || inv != s.latestInvoice {
		return
	}
	switch s.status {
	case subIncomplete, subPastDue, subUnpaid:
		before := e.subSnapshotLocked(s)
		s.status = subActive
		e.subChangedLocked(s, before, req)
	}
}

// markUncollectibleLocked moves an open invoice to uncollectible; it can
// still be paid later.
func (e *Emulator) markUncollectibleLocked(inv *invoice, req eventRequestJSON) {
	inv.status = invUncollectible
	inv.uncollectibleAt = e.nowUnix()
	inv.nextPaymentAttempt = 0
	inv.autoAdvance = false
	e.recordInvoiceLocked("invoice.marked_uncollectible", inv, req)
}

// voidInvoiceLocked voids an open or uncollectible invoice.
func (e *Emulator) voidInvoiceLocked(inv *invoice, req eventRequestJSON) {
	inv.status = invVoid
	inv.voidedAt = e.nowUnix()
	inv.nextPaymentAttempt = 0
	inv.autoAdvance = false
	e.recordInvoiceLocked("invoice.voided", inv, req)
}

// chargeInvoiceLocked records the payment attempt: the invoice's payment
// intent (created on the first attempt) and, when there is a card, a charge
// that succeeded or was declined.
func (e *Emulator) chargeInvoiceLocked(inv *invoice, pm string, ok bool) {
	now := e.nowUnix()
	pi, found := e.intents.get(inv.intentID)
	if !found {
		pi = &paymentIntent{customerID: inv.customerID}
		pi.intentJSON = intentJSON{
			ID: e.newIDLocked("pi_"), Object: "payment_intent", AmountDetails: map[string]any{"tip": map[string]any{}},
			CaptureMethod: "automatic", ConfirmationMethod: "automatic", Created: now, Currency: inv.currency,
			Description: optString(billingDescription(inv.billingReason)), Invoice: inv.id, Metadata: map[string]string{},
			PaymentMethodOptions: map[string]any{}, PaymentMethodTypes: []string{"card"}, SetupFutureUsage: "off_session",
		}
		pi.ClientSecret = pi.ID + "_secret_" + e.newIDLocked("")[10:]
		e.intents.add(pi)
		inv.intentID = pi.ID
	}
	pi.Amount = inv.amountDue
	pi.PaymentMethod = optString(pm)
	if pm == "" {
		pi.Status = "requires_payment_method"
		pi.LastPaymentError = &paymentErrorJSON{Code: "payment_intent_payment_attempt_failed", Type: "invalid_request_error",
			Message: "The customer has no default payment method."}
		return
	}
	ch := &charge{customerID: inv.customerID, intentID: pi.ID}
	ch.chargeJSON = chargeJSON{
		ID: e.newIDLocked("ch_"), Object: "charge", Amount: inv.amountDue, BillingDetails: map[string]any{"address": nil, "email": nil, "name": nil, "phone": nil},
		CalculatedStatementDescriptor: "PAYMENTD", Created: now, Currency: inv.currency, Description: billingDescription(inv.billingReason),
		FraudDetails: map[string]any{}, Invoice: inv.id, Metadata: map[string]string{}, PaymentMethod: pm,
		PaymentMethodDetails: map[string]any{"type": "card", "card": map[string]any{"brand": "visa", "country": "US", "exp_month": 12,
			"exp_year": 2034, "funding": "credit", "last4": "4242", "network": "visa"}},
	}
	if ok {
		ch.Status, ch.Paid, ch.Captured, ch.AmountCaptured = "succeeded", true, true, inv.amountDue
		ch.Outcome = map[string]any{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal", "risk_score": 21,
			"seller_message": "Payment complete.", "type": "authorized"}
		ch.ReceiptURL = "https://pay.stripe.com/receipts/invoices/" + inv.id
		pi.Status, pi.AmountReceived, pi.LastPaymentError = "succeeded", inv.amountDue, nil
	} else {
		ch.Status = "failed"
		ch.PaymentMethodDetails["card"].(map[string]any)["last4"] = "0002"
		ch.FailureCode, ch.FailureMessage = optString("card_declined"), optString("Your card was declined.")
		ch.Outcome = map[string]any{"network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
			"seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined"}
		pi.Status = "requires_payment_method"
		pi.LastPaymentError = &paymentErrorJSON{Code: "card_declined", Type: "card_error", Message: "Your card was declined."}
	}
	pi.chargeID = ch.ID
	inv.chargeID = ch.ID
	e.charges.add(ch)
	e.chargesByIntent[pi.ID] = append(e.chargesByIntent[pi.ID], ch)
}

// billingDescription is the description Stripe gives a subscription
// payment.
func billingDescription(reason string) string {
	switch reason {
	case reasonCreate:
		return "Subscription creation"
	case reasonUpdate:
		return "Subscription update"
	}
	return "Subscription cycle"
}

// invoiceCopyLocked decodes an invoice's wire form into stripe-go's type.
func (e *Emulator) invoiceCopyLocked(inv *invoice) (*stripe.Invoice, error) {
	var out stripe.Invoice
	if err := json.Unmarshal(mustJSON(e.renderInvoice(inv, nil)), &out); err != nil {
		return nil, fmt.Errorf("stripeemu: decode invoice %s: %w", inv.id, err)
	}
	return &out, nil
}

// formatDate formats a Unix time as a date for pages and descriptions.
func formatDate(t int64) string {
	return time.Unix(t, 0).UTC().Format("Jan 2, 2006")
}

// capitalize upper-cases the first letter of s.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
