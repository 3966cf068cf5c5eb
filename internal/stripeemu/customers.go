// Customers: creating, updating, listing and searching them through the
// API, customer.created and customer.updated (with previous_attributes),
// and the card each one pays with, which tests can make decline.

package stripeemu

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76"
)

// blankCustomerLocked returns a new customer, not yet stored.
func (e *Emulator) blankCustomerLocked() *customer {
	return &customer{customerJSON{
		ID: e.newIDLocked("cus_"), Object: "customer", Created: e.nowUnix(), InvoicePrefix: strings.ToUpper(e.newIDLocked("")[16:24]),
		InvoiceSettings: map[string]any{"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil},
		Metadata:        map[string]string{}, NextInvoiceSequence: 1, PreferredLocales: []string{}, TaxExempt: "none",
	}}
}

// newCustomerLocked stores a customer and records customer.created.
func (e *Emulator) newCustomerLocked(email, name string, meta map[string]string, req eventRequestJSON) *customer {
	cu := e.blankCustomerLocked()
	cu.Email, cu.Name, cu.Metadata = optString(email), optString(name), cloneMeta(meta)
	e.customers.add(cu)
	e.recordLocked("customer.created", cu.render(), req, nil)
	return cu
}

// customerChangedLocked records customer.updated with the fields that
// changed since before, or nothing when none did.
func (e *Emulator) customerChangedLocked(cu *customer, before subSnapshot, req eventRequestJSON) {
	after := snapshot(cu.render())
	if prev := previousAttributes(before, after); len(prev) > 0 {
		e.recordLocked("customer.updated", json.RawMessage(after.raw), req, prev)
	}
}

// setDefaultCardLocked makes pm the customer's default payment method for
// invoices, the one renewals charge.
func (e *Emulator) setDefaultCardLocked(cu *customer, pm string) {
	settings := map[string]any{}
	for k, v := range cu.InvoiceSettings {
		settings[k] = v
	}
	settings["default_payment_method"] = optString(pm)
	cu.InvoiceSettings = settings
	if pm == "" {
		delete(e.bill.cards, cu.ID)
		return
	}
	e.bill.cards[cu.ID] = pm
}

// customerForm is the decoded body of a customer create or update.
type customerForm struct {
	email, name, description, phone *string
	defaultPM                       *string
	balance                         *int64
}

// customerFormFrom decodes the customer parameters the emulator models.
func customerFormFrom(f url.Values) (customerForm, *apiError) {
	var cf customerForm
	str := func(name string) *string {
		if !f.Has(name) {
			return nil
		}
		v := f.Get(name)
		return &v
	}
	cf.email, cf.name, cf.description, cf.phone = str("email"), str("name"), str("description"), str("phone")
	if cf.email != nil && *cf.email != "" && !strings.Contains(*cf.email, "@") {
		return cf, invalid("email", "email_invalid", "Invalid email address: %s", *cf.email)
	}
	if pm := str("invoice_settings[default_payment_method]"); pm != nil {
		if *pm != "" && !strings.HasPrefix(*pm, "pm_") {
			return cf, invalid("invoice_settings[default_payment_method]", "resource_missing", "No such PaymentMethod: '%s'", *pm)
		}
		cf.defaultPM = pm
	}
	if f.Has("balance") {
		b, ae := formInt(f, "balance")
		if ae != nil {
			return cf, ae
		}
		cf.balance = &b
	}
	return cf, rejectUnsupported(f, []string{"coupon", "promotion_code", "source", "tax_id_data", "test_clock", "cash_balance"})
}

// applyLocked writes cf to cu.
func (cf customerForm) applyLocked(e *Emulator, cu *customer, f url.Values) {
	if cf.email != nil {
		cu.Email = optString(*cf.email)
	}
	if cf.name != nil {
		cu.Name = optString(*cf.name)
	}
	if cf.description != nil {
		cu.Description = optString(*cf.description)
	}
	if cf.phone != nil {
		cu.Phone = optString(*cf.phone)
	}
	if cf.balance != nil {
		cu.Balance = *cf.balance
	}
	if cf.defaultPM != nil {
		e.setDefaultCardLocked(cu, *cf.defaultPM)
	}
	cu.Metadata = applyMetadata(cu.Metadata, f)
}

func (e *Emulator) createCustomer(c *call) (any, error) {
	cf, ae := customerFormFrom(c.form)
	if ae != nil {
		return nil, ae
	}
	cu := e.blankCustomerLocked()
	cf.applyLocked(e, cu, c.form)
	e.customers.add(cu)
	e.recordLocked("customer.created", cu.render(), c.eventRequest(), nil)
	return cu.render(), nil
}

func (e *Emulator) updateCustomer(c *call) (any, error) {
	cu, ok := e.customers.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("customer", c.r.PathValue("id"))
	}
	cf, ae := customerFormFrom(c.form)
	if ae != nil {
		return nil, ae
	}
	before := snapshot(cu.render())
	cf.applyLocked(e, cu, c.form)
	e.customerChangedLocked(cu, before, c.eventRequest())
	return cu.render(), nil
}

func (e *Emulator) listCustomers(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	var keep func(*customer) bool
	if c.form.Has("email") {
		// Stripe's email filter is case-sensitive.
		email := c.form.Get("email")
		keep = func(cu *customer) bool { return ptrValue(cu.Email) == email }
	}
	items, more, ae := e.customers.page(q, keep)
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/customers", items, more, func(cu *customer) any { return cu.render() }), nil
}

// searchResultJSON is a Stripe search result page.
type searchResultJSON struct {
	Object     string  `json:"object"`
	Data       []any   `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextPage   *string `json:"next_page"`
	TotalCount int     `json:"total_count"`
	URL        string  `json:"url"`
}

func (e *Emulator) searchCustomers(c *call) (any, error) {
	query := c.form.Get("query")
	if query == "" {
		return nil, invalid("query", "parameter_missing", "Missing required param: query.")
	}
	match, ae := parseSearchQuery(query)
	if ae != nil {
		return nil, ae
	}
	limit := 10
	if c.form.Has("limit") {
		n, ae := formInt(c.form, "limit")
		if ae != nil {
			return nil, ae
		}
		if n < 1 || n > 100 {
			return nil, invalid("limit", "parameter_invalid_integer", "This value must be greater than or equal to 1 and less than or equal to 100.")
		}
		limit = int(n)
	}
	offset := 0
	if p := c.form.Get("page"); p != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "page_"))
		if err != nil || n < 0 || !strings.HasPrefix(p, "page_") {
			return nil, invalid("page", "", "Invalid page token.")
		}
		offset = n
	}
	var hits []*customer
	for i := len(e.customers.items) - 1; i >= 0; i-- {
		if cu := e.customers.items[i]; match(cu) {
			hits = append(hits, cu)
		}
	}
	res := searchResultJSON{Object: "search_result", Data: []any{}, TotalCount: len(hits), URL: "/v1/customers/search"}
	for i := offset; i < len(hits) && i < offset+limit; i++ {
		res.Data = append(res.Data, hits[i].render())
	}
	if offset+limit < len(hits) {
		res.HasMore = true
		res.NextPage = optString(fmt.Sprintf("page_%d", offset+limit))
	}
	return res, nil
}

// parseSearchQuery compiles the subset of Stripe's search query language
// the emulator understands: clauses field:'value' (or "value") on email,
// name, phone and metadata['key'], joined by AND or by OR (not both), as
// Stripe requires. Matches are exact and, for email and name, ignore case.
// Unlike Stripe, whose search index lags writes by up to a minute, the
// emulator's is current at once.
func parseSearchQuery(q string) (func(*customer) bool, *apiError) {
	bad := func(format string, args ...any) *apiError {
		return invalid("query", "", "Invalid query: "+format, args...)
	}
	joiner := " AND "
	if strings.Contains(q, " OR ") {
		if strings.Contains(q, " AND ") {
			return nil, bad("AND and OR cannot be combined in one query.")
		}
		joiner = " OR "
	}
	type clause func(*customer) bool
	var clauses []clause
	for _, part := range strings.Split(q, joiner) {
		part = strings.TrimSpace(part)
		field, val, ok := strings.Cut(part, ":")
		if !ok || len(val) < 2 || !(val[0] == '\'' && val[len(val)-1] == '\'' || val[0] == '"' && val[len(val)-1] == '"') {
			return nil, bad("expected field:'value', got %q.", part)
		}
		val = val[1 : len(val)-1]
		switch {
		case field == "email":
			clauses = append(clauses, func(cu *customer) bool { return strings.EqualFold(ptrValue(cu.Email), val) })
		case field == "name":
			clauses = append(clauses, func(cu *customer) bool { return strings.EqualFold(ptrValue(cu.Name), val) })
		case field == "phone":
			clauses = append(clauses, func(cu *customer) bool { p, _ := cu.Phone.(*string); return ptrValue(p) == val })
		case strings.HasPrefix(field, "metadata[") && strings.HasSuffix(field, "]"):
			key := strings.Trim(field[len("metadata["):len(field)-1], `'"`)
			clauses = append(clauses, func(cu *customer) bool { v, ok := cu.Metadata[key]; return ok && v == val })
		default:
			return nil, bad("the emulator searches customers by email, name, phone or metadata, not %q.", field)
		}
	}
	if joiner == " OR " {
		return func(cu *customer) bool {
			for _, c := range clauses {
				if c(cu) {
					return true
				}
			}
			return false
		}, nil
	}
	return func(cu *customer) bool {
		for _, c := range clauses {
			if !c(cu) {
				return false
			}
		}
		return true
	}, nil
}

// CustomerUpdate is a change to a customer made outside the API, as in the
// Dashboard. Nil fields are left alone.
type CustomerUpdate struct {
	Email, Name *string
}

// UpdateCustomer changes a customer's email or name and records
// customer.updated with previous_attributes.
func (e *Emulator) UpdateCustomer(id string, u CustomerUpdate) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	cu, ok := e.customers.get(id)
	if !ok {
		return opError("update customer", missing("customer", id))
	}
	if u.Email != nil && *u.Email != "" && !strings.Contains(*u.Email, "@") {
		return opError("update customer "+id, invalid("email", "email_invalid", "Invalid email address: %s", *u.Email))
	}
	before := snapshot(cu.render())
	if u.Email != nil {
		cu.Email = optString(*u.Email)
	}
	if u.Name != nil {
		cu.Name = optString(*u.Name)
	}
	e.customerChangedLocked(cu, before, eventRequestJSON{})
	return nil
}

// FailPayments makes every charge to the customer's card decline (fail is
// true) or succeed again (false): renewals and retries fail until it is
// cleared, then the next retry recovers the invoice.
func (e *Emulator) FailPayments(customerID string, fail bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	if _, ok := e.customers.get(customerID); !ok {
		return opError("fail payments", missing("customer", customerID))
	}
	if fail {
		e.bill.declining[customerID] = true
	} else {
		delete(e.bill.declining, customerID)
	}
	return nil
}

// AddCard gives a customer a working default card, as a customer adding
// one in the billing portal does, and returns its payment method id.
func (e *Emulator) AddCard(customerID string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	cu, ok := e.customers.get(customerID)
	if !ok {
		return "", opError("add card", missing("customer", customerID))
	}
	return e.addCardLocked(cu), nil
}

// addCardLocked attaches a new working card and makes it the default.
func (e *Emulator) addCardLocked(cu *customer) string {
	pm := e.newIDLocked("pm_")
	before := snapshot(cu.render())
	e.setDefaultCardLocked(cu, pm)
	delete(e.bill.declining, cu.ID)
	e.customerChangedLocked(cu, before, eventRequestJSON{})
	return pm
}

// Customer returns a copy of a customer as stripe-go decodes it.
func (e *Emulator) Customer(id string) (*stripe.Customer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cu, ok := e.customers.get(id)
	if !ok {
		return nil, opError("customer", missing("customer", id))
	}
	return decodeAs[stripe.Customer](cu.render())
}
