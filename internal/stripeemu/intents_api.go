// HTTP API of payment intents: create, retrieve (also with a publishable key
// and the client secret, as Stripe.js does), update, confirm, cancel, list
// and search. Handlers run with the emulator's mutex held (see api).

package stripeemu

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// intentRoutes mounts the payment intent endpoints.
func (e *Emulator) intentRoutes(h func(pattern string, fn apiFunc)) {
	h("POST /v1/payment_intents", e.createIntent)
	h("GET /v1/payment_intents", e.listIntents)
	h("GET /v1/payment_intents/search", e.searchIntents)
	h("GET /v1/payment_intents/{id}", e.getIntent)
	h("POST /v1/payment_intents/{id}", e.updateIntent)
	h("POST /v1/payment_intents/{id}/confirm", e.confirmIntent)
	h("POST /v1/payment_intents/{id}/cancel", e.cancelIntent)
}

// unsupportedIntentParams change what a payment is in ways the emulator does
// not model (Connect, saved cards, manual capture); they are refused rather
// than ignored.
var unsupportedIntentParams = []string{"application_fee_amount", "on_behalf_of", "transfer_data", "setup_future_usage",
	"off_session", "payment_method_configuration", "confirmation_token", "error_on_requires_action", "mandate"}

// intentSpecFromForm decodes POST /v1/payment_intents.
func intentSpecFromForm(c *call) (intentSpec, *apiError) {
	f := c.form
	var s intentSpec
	if ae := rejectUnsupported(f, unsupportedIntentParams); ae != nil {
		return s, ae
	}
	if _, ae := required(c, "amount"); ae != nil {
		return s, ae
	}
	var ae *apiError
	if s.amount, ae = formInt(f, "amount"); ae != nil {
		return s, ae
	}
	cur, ae := required(c, "currency")
	if ae != nil {
		return s, ae
	}
	s.currency = strings.ToLower(cur)
	if len(s.currency) != 3 {
		return s, invalid("currency", "", "Invalid currency: %s. Stripe currently supports these currencies: usd, eur, gbp, ... (three-letter ISO codes).", cur)
	}
	if cm := f.Get("capture_method"); cm != "" && cm != "automatic" && cm != "automatic_async" {
		return s, invalid("capture_method", "", "The Stripe emulator supports only capture_method=automatic (got %q).", cm)
	}
	if cm := f.Get("confirmation_method"); cm != "" && cm != "automatic" {
		return s, invalid("confirmation_method", "", "The Stripe emulator supports only confirmation_method=automatic (got %q).", cm)
	}
	s.customer, s.description, s.receiptEmail = f.Get("customer"), f.Get("description"), f.Get("receipt_email")
	s.metadata = formMap(f, "metadata")
	s.types = formList(f, "payment_method_types")
	enabled, hasAPM, ae := formBool(f, "automatic_payment_methods[enabled]")
	if ae != nil {
		return s, ae
	}
	redirects := f.Get("automatic_payment_methods[allow_redirects]")
	switch {
	case hasAPM && len(s.types) > 0:
		return s, invalid("payment_method_types", "", "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.")
	case redirects != "" && !enabled:
		return s, invalid("automatic_payment_methods[allow_redirects]", "", "automatic_payment_methods[allow_redirects] requires automatic_payment_methods[enabled]=true.")
	case redirects != "" && redirects != "always" && redirects != "never":
		return s, invalid("automatic_payment_methods[allow_redirects]", "", "Invalid automatic_payment_methods[allow_redirects]: must be one of always or never")
	}
	// Since 2023-08-16, automatic payment methods are on unless the caller
	// names the types or turns them off.
	s.apm = enabled || (!hasAPM && len(s.types) == 0)
	s.allowRedirects = orDefault(redirects, "always")
	if !s.apm && len(s.types) == 0 {
		s.types = []string{"card"}
	}
	return s, nil
}

func (e *Emulator) createIntent(c *call) (any, error) {
	spec, ae := intentSpecFromForm(c)
	if ae != nil {
		return nil, ae
	}
	confirm, _, ae := formBool(c.form, "confirm")
	if ae != nil {
		return nil, ae
	}
	var m testMethod
	var given bool
	if confirm || c.form.Has("payment_method") || hasPrefix(c.form, "payment_method_data") {
		if m, given, ae = methodFromForm(c.form, spec.currency, nil); ae != nil {
			return nil, ae
		}
	}
	if confirm && !given {
		return nil, invalid("payment_method", "parameter_missing", "You must provide a payment_method (or payment_method_data) to confirm a PaymentIntent at creation.")
	}
	if confirm {
		if ae := checkConfirmReturnURL(c.form, spec.apm && spec.allowRedirects == "always"); ae != nil {
			return nil, ae
		}
	}
	pi, ae := e.createIntentLocked(spec, c.eventRequest())
	if ae != nil {
		return nil, ae
	}
	if !given {
		return e.renderIntent(pi, c.expand), nil
	}
	pmID := e.newIDLocked("pm_")
	if !confirm {
		e.attachLocked(pi, m, pmID)
		return e.renderIntent(pi, c.expand), nil
	}
	if ae := e.confirmLocked(pi, m, pmID, c.form.Get("return_url"), c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderIntent(pi, c.expand), nil
}

// attachLocked gives pi a payment method to confirm later:
// requires_confirmation.
func (e *Emulator) attachLocked(pi *paymentIntent, m testMethod, pmID string) {
	pi.flow.method = &m
	pi.PaymentMethod = &pmID
	pi.Status = "requires_confirmation"
}

// hasPrefix reports whether any parameter is name or name[...].
func hasPrefix(f url.Values, name string) bool {
	for k := range f {
		if k == name || strings.HasPrefix(k, name+"[") {
			return true
		}
	}
	return false
}

// methodFromForm reads the payment method of a create, update or confirm:
// a test payment method id (payment_method=pm_card_visa), the one already
// attached (attached, with its id), or bank details in payment_method_data.
// given is false when the request names none.
func methodFromForm(f url.Values, currency string, pi *paymentIntent) (m testMethod, given bool, ae *apiError) {
	id := f.Get("payment_method")
	data := hasPrefix(f, "payment_method_data")
	switch {
	case id != "" && data:
		return m, false, invalid("payment_method_data", "", "You may only specify one of these parameters: payment_method, payment_method_data.")
	case id != "":
		if pi != nil && pi.flow != nil && pi.flow.method != nil && id == ptrValue(pi.PaymentMethod) {
			return *pi.flow.method, true, nil
		}
		tm, ok := testCards[id]
		if !ok {
			return m, false, invalid("payment_method", "resource_missing",
				"No such PaymentMethod: '%s'. The emulator knows Stripe's test payment methods pm_card_visa, pm_card_chargeDeclined, pm_card_chargeDeclinedInsufficientFunds and pm_card_threeDSecure2Required.", id)
		}
		return tm, true, nil
	case !data:
		return m, false, nil
	}
	typ := f.Get("payment_method_data[type]")
	name := f.Get("payment_method_data[billing_details][name]")
	switch typ {
	case "":
		return m, false, invalid("payment_method_data[type]", "parameter_missing", "Missing required param: payment_method_data[type].")
	case "card":
		return m, false, invalid("payment_method_data[card][number]", "",
			"Sending credit card numbers directly to the Stripe API is generally unsafe. The emulator takes test payment methods such as payment_method=pm_card_visa.")
	case "sepa_debit":
		iban := strings.ToUpper(strings.ReplaceAll(f.Get("payment_method_data[sepa_debit][iban]"), " ", ""))
		if name == "" || f.Get("payment_method_data[billing_details][email]") == "" {
			return m, false, invalid("payment_method_data[billing_details]", "parameter_missing",
				"SEPA Direct Debit requires payment_method_data[billing_details][name] and [email].")
		}
		tm, ok := testBankAccounts["sepa_debit:"+iban]
		if !ok {
			return m, false, invalid("payment_method_data[sepa_debit][iban]", "invalid_bank_account_iban",
				"The emulator knows the test IBANs DE89370400440532013000 (settles) and DE62370400440532013001 (fails), not %q.", iban)
		}
		m = tm
	case "us_bank_account":
		acct := f.Get("payment_method_data[us_bank_account][account_number]")
		tm, ok := testBankAccounts["us_bank_account:"+acct]
		if name == "" {
			return m, false, invalid("payment_method_data[billing_details][name]", "parameter_missing", "ACH Direct Debit requires payment_method_data[billing_details][name].")
		}
		if !ok || f.Get("payment_method_data[us_bank_account][routing_number]") != testRoutingNumber {
			return m, false, invalid("payment_method_data[us_bank_account][account_number]", "",
				"The emulator knows the test routing number 110000000 with accounts 000123456789 (settles) and 000111111113 (fails).")
		}
		m = tm
	default:
		return m, false, invalid("payment_method_data[type]", "", "The emulator supports payment_method_data of type sepa_debit and us_bank_account, not %q.", typ)
	}
	if m.typ != bankDebitType(currency) {
		return m, false, invalid("payment_method_data[type]", "payment_intent_invalid_parameter", "The payment method type %s is invalid for currency %s.", m.typ, currency)
	}
	if f.Get("mandate_data[customer_acceptance][type]") == "" {
		return m, false, invalid("mandate_data", "parameter_missing", "A mandate is required to confirm a %s payment: pass mandate_data[customer_acceptance].", m.typ)
	}
	return m, true, nil
}

// checkConfirmReturnURL applies Stripe's rule that a confirmation of an
// intent open to redirect-based methods names where to come back to, and
// that a return_url is a URL.
func checkConfirmReturnURL(f url.Values, redirects bool) *apiError {
	u := f.Get("return_url")
	if u != "" {
		return checkReturnURL("return_url", u)
	}
	if redirects {
		return invalid("return_url", "", "A `return_url` must be specified because this Payment Intent is configured to automatically accept the payment methods enabled in the Dashboard, "+
			"some of which may require a full page redirect to succeed. If you do not want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` "+
			"and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.")
	}
	return nil
}

// pathIntent returns the payment intent named in the path.
func (e *Emulator) pathIntent(c *call) (*paymentIntent, *apiError) {
	pi, ok := e.intents.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("payment_intent", c.r.PathValue("id"))
	}
	return pi, nil
}

// publishableRetrieve reports whether r is the one request a publishable
// key may make of the emulator: retrieving a payment intent with its client
// secret, as Stripe.js does.
func publishableRetrieve(r *http.Request) bool {
	key := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	return strings.HasPrefix(key, "pk_") && r.Method == http.MethodGet && r.Form.Get("client_secret") != "" &&
		intentPath.MatchString(r.URL.Path)
}

var intentPath = regexp.MustCompile(`^/v1/payment_intents/pi_[0-9A-Za-z]+$`)

// publishableFields are the fields a publishable key sees of a payment
// intent; the rest (customer, metadata, charges) stay server-side.
var publishableFields = []string{"id", "object", "amount", "amount_details", "automatic_payment_methods", "canceled_at", "cancellation_reason",
	"capture_method", "client_secret", "confirmation_method", "created", "currency", "description", "last_payment_error", "livemode",
	"next_action", "payment_method", "payment_method_types", "processing", "receipt_email", "setup_future_usage", "shipping", "status"}

func (e *Emulator) getIntent(c *call) (any, error) {
	pi, ae := e.pathIntent(c)
	if ae != nil {
		return nil, ae
	}
	if cs := c.form.Get("client_secret"); cs != "" && cs != pi.ClientSecret {
		return nil, invalid("client_secret", "", "The client_secret provided does not match the client_secret associated with the PaymentIntent.")
	}
	if !publishableRetrieve(c.r) {
		return e.renderIntent(pi, c.expand), nil
	}
	var full map[string]any
	_ = json.Unmarshal(mustJSON(e.renderIntent(pi, nil)), &full) // our own encoding: cannot fail
	out := make(map[string]any, len(publishableFields))
	for _, k := range publishableFields {
		out[k] = full[k]
	}
	return out, nil
}

// amountStatuses are the statuses in which an intent's amount, currency and
// customer may change.
var amountStatuses = []string{"requires_payment_method", "requires_confirmation"}

func (e *Emulator) updateIntent(c *call) (any, error) {
	pi, ae := e.pathIntent(c)
	if ae != nil {
		return nil, ae
	}
	f := c.form
	if ae := rejectUnsupported(f, append(unsupportedIntentParams, "capture_method", "payment_method_types", "automatic_payment_methods")); ae != nil {
		return nil, ae
	}
	if pi.Status == "canceled" {
		return nil, unexpectedState("You cannot update this PaymentIntent because it has a status of canceled.")
	}
	amount, currency := pi.Amount, pi.Currency
	for _, p := range []string{"amount", "currency", "customer", "payment_method", "payment_method_data"} {
		if hasPrefix(f, p) && !slices.Contains(amountStatuses, pi.Status) {
			return nil, unexpectedState("This PaymentIntent's %s could not be updated because it has a status of %s. You may only update the %s of a PaymentIntent with one of the following statuses: %s.",
				p, pi.Status, p, strings.Join(amountStatuses, ", "))
		}
	}
	if f.Has("amount") {
		if amount, ae = formInt(f, "amount"); ae != nil {
			return nil, ae
		}
	}
	if f.Has("currency") {
		currency = strings.ToLower(f.Get("currency"))
	}
	if ae := checkAmount("amount", amount, currency); ae != nil {
		return nil, ae
	}
	cust := pi.customerID
	if f.Has("customer") {
		if cust = f.Get("customer"); cust != "" {
			if _, ok := e.customers.get(cust); !ok {
				return nil, invalid("customer", "resource_missing", "No such customer: '%s'", cust)
			}
		}
	}
	m, given, ae := methodFromForm(f, currency, pi)
	if ae != nil {
		return nil, ae
	}
	pi.Amount, pi.Currency, pi.customerID = amount, currency, cust
	if f.Has("description") {
		pi.Description = optString(f.Get("description"))
	}
	if f.Has("receipt_email") {
		pi.ReceiptEmail = optString(f.Get("receipt_email"))
	}
	pi.Metadata = applyMetadata(pi.Metadata, f)
	if given && pi.flow != nil {
		e.attachLocked(pi, m, e.newIDLocked("pm_"))
	}
	return e.renderIntent(pi, c.expand), nil
}

func (e *Emulator) confirmIntent(c *call) (any, error) {
	pi, ae := e.pathIntent(c)
	if ae != nil {
		return nil, ae
	}
	if ae := rejectUnsupported(c.form, unsupportedIntentParams); ae != nil {
		return nil, ae
	}
	m, given, ae := methodFromForm(c.form, pi.Currency, pi)
	if ae != nil {
		return nil, ae
	}
	pmID := e.newIDLocked("pm_")
	if !given {
		if pi.flow == nil || pi.flow.method == nil {
			return nil, invalid("payment_method", "payment_intent_unexpected_state",
				"You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.")
		}
		m, pmID = *pi.flow.method, ptrValue(pi.PaymentMethod)
	} else if pi.flow != nil && pi.flow.method != nil && c.form.Get("payment_method") == ptrValue(pi.PaymentMethod) {
		pmID = ptrValue(pi.PaymentMethod)
	}
	if pi.flow != nil {
		redirects := pi.flow.apm && pi.flow.allowRedirects == "always"
		if ae := checkConfirmReturnURL(c.form, redirects); ae != nil {
			return nil, ae
		}
	}
	if c.form.Has("receipt_email") {
		pi.ReceiptEmail = optString(c.form.Get("receipt_email"))
	}
	if ae := e.confirmLocked(pi, m, pmID, c.form.Get("return_url"), c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderIntent(pi, c.expand), nil
}

func (e *Emulator) cancelIntent(c *call) (any, error) {
	pi, ae := e.pathIntent(c)
	if ae != nil {
		return nil, ae
	}
	if ae := e.cancelLocked(pi, c.form.Get("cancellation_reason"), c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderIntent(pi, c.expand), nil
}

func (e *Emulator) listIntents(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	cust := c.form.Get("customer")
	var keep func(*paymentIntent) bool
	if cust != "" {
		keep = func(pi *paymentIntent) bool { return pi.customerID == cust }
	}
	items, more, ae := e.intents.page(q, keep)
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/payment_intents", items, more, func(pi *paymentIntent) any { return e.renderIntent(pi, x) }), nil
}

// intentSearchFields are the fields GET /v1/payment_intents/search matches
// exactly; metadata['key'] is matched too.
var intentSearchFields = map[string]func(*paymentIntent) string{
	"status":   func(pi *paymentIntent) string { return pi.Status },
	"currency": func(pi *paymentIntent) string { return pi.Currency },
	"customer": func(pi *paymentIntent) string { return pi.customerID },
	"amount":   func(pi *paymentIntent) string { return itoa(pi.Amount) },
}

func (e *Emulator) searchIntents(c *call) (any, error) {
	query := c.form.Get("query")
	if query == "" {
		return nil, invalid("query", "parameter_missing", "Missing required param: query.")
	}
	match, ae := compileSearch(query, intentSearchFields, func(pi *paymentIntent) map[string]string { return pi.Metadata })
	if ae != nil {
		return nil, ae
	}
	limit, offset, ae := searchPage(c.form)
	if ae != nil {
		return nil, ae
	}
	var hits []*paymentIntent
	for i := len(e.intents.items) - 1; i >= 0; i-- {
		if pi := e.intents.items[i]; match(pi) {
			hits = append(hits, pi)
		}
	}
	x := c.expand.sub("data")
	return searchResult("/v1/payment_intents/search", hits, limit, offset, func(pi *paymentIntent) any { return e.renderIntent(pi, x) }), nil
}
