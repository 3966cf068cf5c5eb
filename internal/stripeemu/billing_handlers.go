// HTTP API endpoints of billing: customers, recurring prices, subscriptions,
// invoices and billing portal sessions, plus the routes of the portal page,
// the hosted invoice page and the dev clock. Handlers run with the
// emulator's mutex held (see api).

package stripeemu

import (
	"io"
	"net/http"
	"net/url"
)

// billingRoutes adds the billing endpoints and pages to the mux.
func (e *Emulator) billingRoutes(h func(string, apiFunc), mux *http.ServeMux) {
	h("POST /v1/customers", e.createCustomer)
	h("GET /v1/customers", e.listCustomers)
	h("GET /v1/customers/search", e.searchCustomers)
	h("POST /v1/customers/{id}", e.updateCustomer)
	h("GET /v1/subscriptions", e.listSubscriptions)
	h("GET /v1/subscriptions/{id}", e.getSubscription)
	h("POST /v1/subscriptions/{id}", e.updateSubscription)
	h("DELETE /v1/subscriptions/{id}", e.cancelSubscription)
	h("POST /v1/subscriptions/{id}/resume", e.resumeSubscription)
	h("GET /v1/invoices", e.listInvoices)
	h("GET /v1/invoices/{id}", e.getInvoice)
	h("POST /v1/invoices/{id}/finalize", e.finalizeInvoice)
	h("POST /v1/invoices/{id}/pay", e.payInvoice)
	h("POST /v1/invoices/{id}/void", e.voidInvoice)
	h("POST /v1/invoices/{id}/mark_uncollectible", e.markInvoiceUncollectible)
	h("POST /v1/billing_portal/sessions", e.createPortalSession)

	mux.HandleFunc("GET /billing/p/session/{id}", e.portalPage)
	mux.HandleFunc("POST /billing/p/session/{id}/{action}", e.portalAction)
	mux.HandleFunc("GET /invoice/{id}", e.invoicePage)
	mux.HandleFunc("POST /invoice/{id}/pay", e.invoicePagePay)
	mux.HandleFunc("GET /_emulator/clock", e.devClock)
	mux.HandleFunc("POST /_emulator/advance", e.devClockAdvance)
}

// recurringFromForm reads recurring[interval], recurring[interval_count]
// and recurring[usage_type] of a new price; nil means a one-time price.
func recurringFromForm(f url.Values) (*recurringJSON, *apiError) {
	interval := f.Get("recurring[interval]")
	if interval == "" {
		for k := range f {
			if len(k) > 10 && k[:10] == "recurring[" {
				return nil, invalid("recurring[interval]", "parameter_missing", "Missing required param: recurring[interval].")
			}
		}
		return nil, nil
	}
	if ae := oneOf("recurring[interval]", interval, []string{"day", "week", "month", "year"}); ae != nil {
		return nil, ae
	}
	r := &recurringJSON{Interval: interval, IntervalCount: 1, UsageType: "licensed"}
	if f.Has("recurring[interval_count]") {
		n, ae := formInt(f, "recurring[interval_count]")
		if ae != nil {
			return nil, ae
		}
		// Stripe allows at most one year between billings.
		limit := map[string]int64{"day": 365, "week": 52, "month": 12, "year": 1}[interval]
		if n < 1 || n > limit {
			return nil, invalid("recurring[interval_count]", "", "The maximum billing interval is one year (got %d %s).", n, interval)
		}
		r.IntervalCount = n
	}
	if u := f.Get("recurring[usage_type]"); u != "" && u != "licensed" {
		return nil, invalid("recurring[usage_type]", "", "The Stripe emulator supports only licensed (not metered) recurring prices.")
	}
	if f.Has("recurring[aggregate_usage]") || f.Has("recurring[trial_period_days]") {
		return nil, invalid("recurring", "", "The Stripe emulator does not support recurring[aggregate_usage] or recurring[trial_period_days].")
	}
	return r, nil
}

// pathSubscription returns the subscription named in the path.
func (e *Emulator) pathSubscription(c *call) (*subscription, *apiError) {
	s, ok := e.bill.subs.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("subscription", c.r.PathValue("id"))
	}
	return s, nil
}

func (e *Emulator) getSubscription(c *call) (any, error) {
	s, ae := e.pathSubscription(c)
	if ae != nil {
		return nil, ae
	}
	return e.renderSubscription(s, c.expand), nil
}

func (e *Emulator) listSubscriptions(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	status, ae := subscriptionStatusFilter(c.form.Get("status"))
	if ae != nil {
		return nil, ae
	}
	peLo, peHi, psLo, psHi := int64(minInt64), int64(maxInt64), int64(minInt64), int64(maxInt64)
	if ae := parseCreated(c.form, "current_period_end", &peLo, &peHi); ae != nil {
		return nil, ae
	}
	if ae := parseCreated(c.form, "current_period_start", &psLo, &psHi); ae != nil {
		return nil, ae
	}
	if cm := c.form.Get("collection_method"); cm != "" && cm != "charge_automatically" {
		return renderList("/v1/subscriptions", []*subscription{}, false, func(*subscription) any { return nil }), nil
	}
	priceID := c.form.Get("price")
	keep := func(s *subscription) bool {
		if status != nil && !status(s.status) || s.periodEnd < peLo || s.periodEnd > peHi || s.periodStart < psLo || s.periodStart > psHi {
			return false
		}
		if priceID == "" {
			return true
		}
		for _, it := range s.items {
			if it.priceID == priceID {
				return true
			}
		}
		return false
	}
	var items []*subscription
	var more bool
	if cust := c.form.Get("customer"); cust != "" {
		items, more, ae = e.bill.subs.pageOf(sortedSubset(e.bill.subsByCustomer[cust]), q, keep)
	} else {
		items, more, ae = e.bill.subs.page(q, keep)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/subscriptions", items, more, func(s *subscription) any { return e.renderSubscription(s, x) }), nil
}

func (e *Emulator) updateSubscription(c *call) (any, error) {
	s, ae := e.pathSubscription(c)
	if ae != nil {
		return nil, ae
	}
	u, ae := subUpdateFromForm(c.form)
	if ae != nil {
		return nil, ae
	}
	if ae := e.updateSubscriptionLocked(s, u, c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderSubscription(s, c.expand), nil
}

// deleteForm adds the body of a DELETE to the call's parameters: stripe-go
// sends them there, and net/http parses bodies only for POST, PUT and PATCH.
func deleteForm(c *call) *apiError {
	b, err := io.ReadAll(c.r.Body)
	if err != nil {
		return invalid("", "", "Invalid request body: %v", err)
	}
	vals, err := url.ParseQuery(string(b))
	if err != nil {
		return invalid("", "", "Invalid request body: %v", err)
	}
	for k, vs := range vals {
		c.form[k] = append(c.form[k], vs...)
	}
	c.expand = parseExpand(c.form)
	return nil
}

func (e *Emulator) cancelSubscription(c *call) (any, error) {
	if ae := deleteForm(c); ae != nil {
		return nil, ae
	}
	s, ae := e.pathSubscription(c)
	if ae != nil {
		return nil, ae
	}
	for _, p := range []string{"invoice_now", "prorate"} {
		if v, _, ae := formBool(c.form, p); ae != nil {
			return nil, ae
		} else if v {
			return nil, invalid(p, "", "The Stripe emulator does not support %s on cancellation.", p)
		}
	}
	fb := c.form.Get("cancellation_details[feedback]")
	if fb != "" {
		if ae := oneOf("cancellation_details[feedback]", fb, cancellationFeedback); ae != nil {
			return nil, ae
		}
	}
	if ae := e.cancelNowLocked(s, c.form.Get("cancellation_details[comment]"), fb, c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderSubscription(s, c.expand), nil
}

// cancelNowLocked cancels s at once, at the customer's request.
func (e *Emulator) cancelNowLocked(s *subscription, comment, feedback string, req eventRequestJSON) *apiError {
	if !s.live() {
		return invalid("", "", "This subscription is already %s.", s.status)
	}
	if comment != "" {
		s.cancelComment = comment
	}
	if feedback != "" {
		s.cancelFeedback = feedback
	}
	e.endSubscriptionLocked(s, "cancellation_requested", false, req)
	return nil
}

func (e *Emulator) resumeSubscription(c *call) (any, error) {
	s, ae := e.pathSubscription(c)
	if ae != nil {
		return nil, ae
	}
	if b := c.form.Get("billing_cycle_anchor"); b != "" && b != "now" {
		return nil, invalid("billing_cycle_anchor", "", "The Stripe emulator resumes only with billing_cycle_anchor=now.")
	}
	if ae := e.resumeLocked(s, c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderSubscription(s, c.expand), nil
}

// pathInvoice returns the invoice named in the path.
func (e *Emulator) pathInvoice(c *call) (*invoice, *apiError) {
	inv, ok := e.bill.invoices.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("invoice", c.r.PathValue("id"))
	}
	return inv, nil
}

func (e *Emulator) getInvoice(c *call) (any, error) {
	inv, ae := e.pathInvoice(c)
	if ae != nil {
		return nil, ae
	}
	return e.renderInvoice(inv, c.expand), nil
}

func (e *Emulator) listInvoices(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	status := invStatus(c.form.Get("status"))
	if status != "" {
		if ae := oneOf("status", string(status), []string{"draft", "open", "paid", "uncollectible", "void"}); ae != nil {
			return nil, ae
		}
	}
	dueFiltered := false
	for _, k := range []string{"due_date", "due_date[gt]", "due_date[gte]", "due_date[lt]", "due_date[lte]"} {
		dueFiltered = dueFiltered || c.form.Has(k)
	}
	cm := c.form.Get("collection_method")
	cust := c.form.Get("customer")
	keep := func(inv *invoice) bool {
		// Subscription invoices charge automatically and have no due date.
		return (status == "" || inv.status == status) && (cust == "" || inv.customerID == cust) && !dueFiltered &&
			(cm == "" || cm == "charge_automatically")
	}
	var items []*invoice
	var more bool
	switch sub, cus := c.form.Get("subscription"), c.form.Get("customer"); {
	case sub != "":
		items, more, ae = e.bill.invoices.pageOf(sortedSubset(e.bill.invoicesBySub[sub]), q, keep)
	case cus != "":
		items, more, ae = e.bill.invoices.pageOf(sortedSubset(e.bill.invoicesByCustomer[cus]), q, keep)
	default:
		items, more, ae = e.bill.invoices.page(q, keep)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/invoices", items, more, func(inv *invoice) any { return e.renderInvoice(inv, x) }), nil
}

func (e *Emulator) finalizeInvoice(c *call) (any, error) {
	inv, ae := e.pathInvoice(c)
	if ae != nil {
		return nil, ae
	}
	if inv.status != invDraft {
		return nil, invalid("", "invoice_not_editable", "This invoice is already finalized, you can't re-finalize a non-draft invoice.")
	}
	if v, ok, ae := formBool(c.form, "auto_advance"); ae != nil {
		return nil, ae
	} else if ok {
		inv.autoAdvance = v
	}
	e.finalizeLocked(inv, c.eventRequest())
	if inv.amountDue == 0 {
		inv.attempted = true
		e.invoicePaidLocked(inv, c.eventRequest())
	}
	return e.renderInvoice(inv, c.expand), nil
}

func (e *Emulator) payInvoice(c *call) (any, error) {
	inv, ae := e.pathInvoice(c)
	if ae != nil {
		return nil, ae
	}
	oob, _, ae := formBool(c.form, "paid_out_of_band")
	if ae != nil {
		return nil, ae
	}
	if ae := e.payInvoiceLocked(inv, oob, c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderInvoice(inv, c.expand), nil
}

// payInvoiceLocked pays an open or uncollectible invoice now, as the
// customer on the hosted page or POST /v1/invoices/{id}/pay does; a draft
// is finalized first. A declined card is a card_declined error, after the
// failed attempt has been recorded.
func (e *Emulator) payInvoiceLocked(inv *invoice, outOfBand bool, req eventRequestJSON) *apiError {
	switch inv.status {
	case invPaid:
		return invalid("", "invoice_already_paid", "Invoice is already paid.")
	case invVoid:
		return invalid("", "invoice_not_payable", "This invoice is void and cannot be paid.")
	case invDraft:
		e.finalizeLocked(inv, req)
	}
	if outOfBand || inv.amountDue == 0 {
		inv.attempted = true
		e.invoicePaidLocked(inv, req)
		return nil
	}
	if !e.attemptLocked(inv, false, req) {
		return declined()
	}
	return nil
}

func (e *Emulator) voidInvoice(c *call) (any, error) {
	inv, ae := e.pathInvoice(c)
	if ae != nil {
		return nil, ae
	}
	if inv.status != invOpen && inv.status != invUncollectible {
		return nil, invalid("", "invoice_not_editable", "You can only void an open or uncollectible invoice (this one is %s).", inv.status)
	}
	e.voidInvoiceLocked(inv, c.eventRequest())
	return e.renderInvoice(inv, c.expand), nil
}

func (e *Emulator) markInvoiceUncollectible(c *call) (any, error) {
	inv, ae := e.pathInvoice(c)
	if ae != nil {
		return nil, ae
	}
	if inv.status != invOpen {
		return nil, invalid("", "invoice_not_editable", "You can only mark an open invoice uncollectible (this one is %s).", inv.status)
	}
	e.markUncollectibleLocked(inv, c.eventRequest())
	return e.renderInvoice(inv, c.expand), nil
}
