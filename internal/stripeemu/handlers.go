// HTTP API endpoints: the routes paymentd calls, their parameter decoding
// and validation. Handlers run with the emulator's mutex held (see api).

package stripeemu

import (
	"net/http"
	"strconv"
	"strings"
)

// routes builds the mux for the API and the hosted checkout page.
func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	h := func(pattern string, fn apiFunc) { mux.Handle(pattern, e.api(fn)) }

	h("POST /v1/products", e.createProduct)
	h("GET /v1/products", e.listProducts)
	h("GET /v1/products/{id}", e.getProduct)
	h("POST /v1/products/{id}", e.updateProduct)
	h("POST /v1/prices", e.createPrice)
	h("GET /v1/prices", e.listPrices)
	h("GET /v1/prices/{id}", e.getPrice)
	h("POST /v1/prices/{id}", e.updatePrice)
	h("GET /v1/customers/{id}", e.getCustomer)
	h("POST /v1/checkout/sessions", e.createSession)
	h("GET /v1/checkout/sessions", e.listSessions)
	h("GET /v1/checkout/sessions/{id}", e.getSession)
	h("GET /v1/checkout/sessions/{id}/line_items", e.listLineItems)
	h("POST /v1/checkout/sessions/{id}/expire", e.expireSession)
	h("GET /v1/charges", e.listCharges)
	h("GET /v1/charges/{id}", e.getCharge)
	h("POST /v1/refunds", e.createRefund)
	h("GET /v1/refunds", e.listRefunds)
	h("GET /v1/refunds/{id}", e.getRefund)
	h("GET /v1/disputes", e.listDisputes)
	h("GET /v1/disputes/{id}", e.getDispute)
	h("GET /v1/events", e.listEvents)
	h("GET /v1/events/{id}", e.getEvent)
	e.promotionRoutes(h)
	e.billingRoutes(h, mux)
	e.intentRoutes(h)
	e.taxRoutes(h)
	e.elementsRoutes(mux)
	h("/v1/", func(c *call) (any, error) {
		return nil, &apiError{status: http.StatusNotFound, Type: "invalid_request_error",
			Msg: "Unrecognized request URL (" + c.r.Method + ": " + c.r.URL.Path + "). The Stripe emulator does not implement this endpoint."}
	})

	mux.HandleFunc("GET /checkout/{id}", e.checkoutPage)
	mux.HandleFunc("POST /checkout/{id}/pay", e.checkoutPay)
	mux.HandleFunc("POST /checkout/{id}/cancel", e.checkoutCancel)
	mux.HandleFunc("GET /checkout/recover/{id}", e.checkoutRecover)
	return mux
}

// required returns a required string parameter.
func required(c *call, name string) (string, *apiError) {
	v := c.form.Get(name)
	if v == "" {
		return "", invalid(name, "parameter_missing", "Missing required param: %s.", name)
	}
	return v, nil
}

// features reads features[i][name] or marketing_features[i][name]; ok is
// false when neither was sent.
func features(c *call) ([]feature, bool) {
	groups := formIndexed(c.form, "features")
	if len(groups) == 0 {
		groups = formIndexed(c.form, "marketing_features")
	}
	sent := c.form.Has("features") || c.form.Has("marketing_features") || len(groups) > 0
	out := []feature{}
	for _, g := range groups {
		if g["name"] != "" {
			out = append(out, feature{Name: g["name"]})
		}
	}
	return out, sent
}

func (e *Emulator) createProduct(c *call) (any, error) {
	name, ae := required(c, "name")
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	id := c.form.Get("id")
	if id == "" {
		id = e.newIDLocked("prod_")
	} else if _, ok := e.products.get(id); ok {
		return nil, invalid("id", "resource_already_exists", "Product already exists.")
	}
	fs, _ := features(c)
	now := e.nowUnix()
	p := &product{productJSON{
		ID: id, Object: "product", Active: !hasActive || active, Created: now, Description: optString(c.form.Get("description")),
		Features: fs, MarketingFeatures: fs, Images: []string{}, Metadata: applyMetadata(nil, c.form), Name: name,
		Type: "service", Updated: now,
	}}
	e.products.add(p)
	return p.render(), nil
}

func (e *Emulator) getProduct(c *call) (any, error) {
	p, ok := e.products.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("product", c.r.PathValue("id"))
	}
	return p.render(), nil
}

func (e *Emulator) updateProduct(c *call) (any, error) {
	p, ok := e.products.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("product", c.r.PathValue("id"))
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	if c.form.Has("name") {
		if c.form.Get("name") == "" {
			return nil, invalid("name", "", "You cannot set name to an empty string.")
		}
		p.Name = c.form.Get("name")
	}
	if c.form.Has("description") {
		p.Description = optString(c.form.Get("description"))
	}
	if hasActive {
		p.Active = active
	}
	if fs, sent := features(c); sent {
		p.Features, p.MarketingFeatures = fs, fs
	}
	p.Metadata = applyMetadata(p.Metadata, c.form)
	p.Updated = e.nowUnix()
	return p.render(), nil
}

func (e *Emulator) listProducts(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	ids := map[string]bool{}
	for _, id := range formList(c.form, "ids") {
		ids[id] = true
	}
	items, more, ae := e.products.page(q, func(p *product) bool {
		return (!hasActive || p.Active == active) && (len(ids) == 0 || ids[p.ID])
	})
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/products", items, more, func(p *product) any { return p.render() }), nil
}

// setLookupKeyLocked gives p the lookup key, moving it from its holder when
// transfer is set.
func (e *Emulator) setLookupKeyLocked(p *price, key string, transfer bool) *apiError {
	if key == p.lookupKey {
		return nil
	}
	if key != "" {
		if holder, ok := e.lookupKeys[key]; ok && holder != p {
			if !transfer {
				return invalid("lookup_key", "", "A price (`%s`) already uses that lookup key.", holder.ID)
			}
			holder.lookupKey = ""
		}
	}
	if p.lookupKey != "" && e.lookupKeys[p.lookupKey] == p {
		delete(e.lookupKeys, p.lookupKey)
	}
	p.lookupKey = key
	if key != "" {
		e.lookupKeys[key] = p
	}
	return nil
}

func (e *Emulator) createPrice(c *call) (any, error) {
	productID := c.form.Get("product")
	if productID == "" {
		name := c.form.Get("product_data[name]")
		if name == "" {
			return nil, invalid("product", "parameter_missing", "Missing required param: product.")
		}
		now := e.nowUnix()
		pr := &product{productJSON{ID: e.newIDLocked("prod_"), Object: "product", Active: true, Created: now, Features: []feature{},
			MarketingFeatures: []feature{}, Images: []string{}, Metadata: formMap(c.form, "product_data[metadata]"), Name: name, Type: "service", Updated: now}}
		e.products.add(pr)
		productID = pr.ID
	} else if _, ok := e.products.get(productID); !ok {
		return nil, invalid("product", "resource_missing", "No such product: '%s'", productID)
	}
	currency, ae := required(c, "currency")
	if ae != nil {
		return nil, ae
	}
	if _, ae := required(c, "unit_amount"); ae != nil {
		return nil, ae
	}
	amount, ae := formInt(c.form, "unit_amount")
	if ae != nil {
		return nil, ae
	}
	if amount < 0 {
		return nil, invalid("unit_amount", "", "This value must be greater than or equal to 0.")
	}
	recurring, ae := recurringFromForm(c.form)
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	transfer, _, ae := formBool(c.form, "transfer_lookup_key")
	if ae != nil {
		return nil, ae
	}
	key := c.form.Get("lookup_key")
	if holder, ok := e.lookupKeys[key]; key != "" && ok && !transfer {
		return nil, invalid("lookup_key", "", "A price (`%s`) already uses that lookup key.", holder.ID)
	}
	p := &price{productID: productID}
	p.priceJSON = priceJSON{
		ID: e.newIDLocked("price_"), Object: "price", Active: !hasActive || active, BillingScheme: "per_unit", Created: e.nowUnix(),
		Currency: strings.ToLower(currency), Metadata: applyMetadata(nil, c.form), Nickname: optString(c.form.Get("nickname")),
		TaxBehavior: orDefault(c.form.Get("tax_behavior"), "unspecified"), Type: "one_time", UnitAmount: amount,
		UnitAmountDecimal: strconv.FormatInt(amount, 10),
	}
	if recurring != nil {
		p.Recurring, p.Type = recurring, "recurring"
	}
	if ae := e.setLookupKeyLocked(p, key, transfer); ae != nil {
		return nil, ae
	}
	e.prices.add(p)
	return e.renderPrice(p, c.expand), nil
}

func (e *Emulator) getPrice(c *call) (any, error) {
	p, ok := e.prices.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("price", c.r.PathValue("id"))
	}
	return e.renderPrice(p, c.expand), nil
}

func (e *Emulator) updatePrice(c *call) (any, error) {
	p, ok := e.prices.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("price", c.r.PathValue("id"))
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	transfer, _, ae := formBool(c.form, "transfer_lookup_key")
	if ae != nil {
		return nil, ae
	}
	if c.form.Has("lookup_key") {
		if ae := e.setLookupKeyLocked(p, c.form.Get("lookup_key"), transfer); ae != nil {
			return nil, ae
		}
	}
	if hasActive {
		p.Active = active
	}
	if c.form.Has("nickname") {
		p.Nickname = optString(c.form.Get("nickname"))
	}
	p.Metadata = applyMetadata(p.Metadata, c.form)
	return e.renderPrice(p, c.expand), nil
}

func (e *Emulator) listPrices(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	productID, currency, typ := c.form.Get("product"), strings.ToLower(c.form.Get("currency")), c.form.Get("type")
	keep := func(p *price) bool {
		return (!hasActive || p.Active == active) && (productID == "" || p.productID == productID) &&
			(currency == "" || p.Currency == currency) && (typ == "" || p.Type == typ)
	}
	var items []*price
	var more bool
	if keys := formList(c.form, "lookup_keys"); len(keys) > 0 {
		if len(keys) > 10 {
			return nil, invalid("lookup_keys", "", "You may pass at most 10 lookup keys.")
		}
		var cands []*price
		seen := map[*price]bool{}
		for _, k := range keys {
			if p, ok := e.lookupKeys[k]; ok && !seen[p] {
				seen[p] = true
				cands = append(cands, p)
			}
		}
		items, more, ae = e.prices.pageOf(sortedSubset(cands), q, keep)
	} else {
		items, more, ae = e.prices.page(q, keep)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/prices", items, more, func(p *price) any { return e.renderPrice(p, x) }), nil
}

func (e *Emulator) getCustomer(c *call) (any, error) {
	cu, ok := e.customers.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("customer", c.r.PathValue("id"))
	}
	return cu.render(), nil
}

// sessionSpecFromForm decodes and validates POST /v1/checkout/sessions.
func sessionSpecFromForm(c *call) (sessionSpec, *apiError) {
	f := c.form
	var spec sessionSpec
	mode, ae := required(c, "mode")
	if ae != nil {
		return spec, ae
	}
	if mode != "payment" && mode != "subscription" {
		return spec, invalid("mode", "", "The Stripe emulator supports only mode=payment and mode=subscription (got %q).", mode)
	}
	if ae := billingSpecFromForm(f, mode, &spec); ae != nil {
		return spec, ae
	}
	if ae := taxCheckoutSpec(c, &spec); ae != nil {
		return spec, ae
	}
	for i, g := range formIndexed(f, "line_items") {
		if g["price"] == "" {
			return spec, invalid("line_items["+strconv.Itoa(i)+"][price]", "parameter_missing", "Missing required param: line_items[%d][price] (price_data is not supported by the emulator).", i)
		}
		qs, ok := g["quantity"]
		if !ok {
			return spec, invalid("line_items["+strconv.Itoa(i)+"][quantity]", "parameter_missing", "Quantity is required. Add `quantity` to `line_items[%d]`", i)
		}
		n, err := strconv.ParseInt(qs, 10, 64)
		if err != nil {
			return spec, invalid("line_items["+strconv.Itoa(i)+"][quantity]", "parameter_invalid_integer", "Invalid integer: %s", qs)
		}
		spec.items = append(spec.items, specItem{price: g["price"], quantity: n})
	}
	discounts := formIndexed(f, "discounts")
	if len(discounts) > 1 {
		return spec, invalid("discounts", "", "You may only specify one discount.")
	}
	if len(discounts) == 1 {
		spec.coupon, spec.promotionCode = discounts[0]["coupon"], discounts[0]["promotion_code"]
		switch {
		case spec.coupon != "" && spec.promotionCode != "":
			return spec, invalid("discounts[0]", "", "You may only specify one of these parameters: coupon, promotion_code.")
		case spec.coupon == "" && spec.promotionCode == "":
			return spec, invalid("discounts[0][coupon]", "parameter_missing", "Missing required param: discounts[0][coupon].")
		}
	}
	allow, hasAllow, ae := formBool(f, "allow_promotion_codes")
	if ae != nil {
		return spec, ae
	}
	if hasAllow {
		spec.allowPromo = &allow
	}
	if allow && (spec.coupon != "" || spec.promotionCode != "") {
		return spec, invalid("allow_promotion_codes", "", "You may only specify one of these parameters: allow_promotion_codes, discounts.")
	}
	spec.consentPromotions = f.Get("consent_collection[promotions]")
	if p := spec.consentPromotions; p != "" && p != "auto" && p != "none" {
		return spec, invalid("consent_collection[promotions]", "", "Invalid consent_collection[promotions]: must be one of auto or none")
	}
	spec.consentTOS = f.Get("consent_collection[terms_of_service]")
	if spec.recovery, _, ae = formBool(f, "after_expiration[recovery][enabled]"); ae != nil {
		return spec, ae
	}
	if spec.recoveryPromo, _, ae = formBool(f, "after_expiration[recovery][allow_promotion_codes]"); ae != nil {
		return spec, ae
	}
	if f.Has("expires_at") {
		if spec.expiresAt, ae = formInt(f, "expires_at"); ae != nil {
			return spec, ae
		}
	}
	spec.successURL = f.Get("success_url")
	spec.cancelURL = f.Get("cancel_url")
	spec.customerEmail = f.Get("customer_email")
	spec.clientRef = f.Get("client_reference_id")
	spec.metadata = applyMetadata(nil, f)
	spec.intentMetadata = formMap(f, "payment_intent_data[metadata]")
	spec.intentDescription = f.Get("payment_intent_data[description]")
	return spec, nil
}

func (e *Emulator) createSession(c *call) (any, error) {
	spec, ae := sessionSpecFromForm(c)
	if ae != nil {
		return nil, ae
	}
	s, ae := e.createSessionLocked(spec)
	if ae != nil {
		return nil, ae
	}
	return e.renderSession(s, c.expand), nil
}

// pathSession returns the session named in the path.
func (e *Emulator) pathSession(c *call) (*session, *apiError) {
	s, ok := e.sessions.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("checkout.session", c.r.PathValue("id"))
	}
	return s, nil
}

func (e *Emulator) getSession(c *call) (any, error) {
	s, ae := e.pathSession(c)
	if ae != nil {
		return nil, ae
	}
	return e.renderSession(s, c.expand), nil
}

func (e *Emulator) expireSession(c *call) (any, error) {
	s, ae := e.pathSession(c)
	if ae != nil {
		return nil, ae
	}
	if ae := e.expireLocked(s, c.eventRequest()); ae != nil {
		return nil, ae
	}
	return e.renderSession(s, c.expand), nil
}

func (e *Emulator) listLineItems(c *call) (any, error) {
	s, ae := e.pathSession(c)
	if ae != nil {
		return nil, ae
	}
	return e.pageLineItems(c, s)
}

func (e *Emulator) listSessions(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	status, cust, link := c.form.Get("status"), c.form.Get("customer"), c.form.Get("payment_link")
	keep := func(s *session) bool {
		return (status == "" || s.Status == status) && (cust == "" || s.customerID == cust) &&
			(link == "" || ptrValue(s.PaymentLink) == link)
	}
	var items []*session
	var more bool
	if pi := c.form.Get("payment_intent"); pi != "" {
		var cands []*session
		if s, ok := e.sessionByIntent[pi]; ok {
			cands = append(cands, s)
		}
		items, more, ae = e.sessions.pageOf(cands, q, keep)
	} else {
		items, more, ae = e.sessions.page(q, keep)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/checkout/sessions", items, more, func(s *session) any { return e.renderSession(s, x) }), nil
}

func (e *Emulator) getCharge(c *call) (any, error) {
	ch, ok := e.charges.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("charge", c.r.PathValue("id"))
	}
	return e.renderCharge(ch, c.expand), nil
}

func (e *Emulator) listCharges(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	cust := c.form.Get("customer")
	keep := func(ch *charge) bool { return cust == "" || ch.customerID == cust }
	var items []*charge
	var more bool
	if pi := c.form.Get("payment_intent"); pi != "" {
		items, more, ae = e.charges.pageOf(sortedSubset(e.chargesByIntent[pi]), q, keep)
	} else {
		items, more, ae = e.charges.page(q, keep)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/charges", items, more, func(ch *charge) any { return e.renderCharge(ch, x) }), nil
}

func (e *Emulator) createRefund(c *call) (any, error) {
	piID, chID := c.form.Get("payment_intent"), c.form.Get("charge")
	var ch *charge
	switch {
	case piID == "" && chID == "":
		return nil, invalid("payment_intent", "parameter_missing", "One of the following params should be provided for this request: payment_intent or charge.")
	case chID != "":
		var ok bool
		if ch, ok = e.charges.get(chID); !ok {
			return nil, invalid("charge", "resource_missing", "No such charge: '%s'", chID)
		}
		if piID != "" && ch.intentID != piID {
			return nil, invalid("charge", "", "The charge %s does not belong to PaymentIntent %s.", chID, piID)
		}
	default:
		pi, ok := e.intents.get(piID)
		if !ok {
			return nil, invalid("payment_intent", "resource_missing", "No such payment_intent: '%s'", piID)
		}
		var ae *apiError
		if ch, ae = e.refundableChargeLocked(pi, "payment_intent"); ae != nil {
			return nil, ae
		}
	}
	var amount int64
	if c.form.Has("amount") {
		var ae *apiError
		if amount, ae = formInt(c.form, "amount"); ae != nil {
			return nil, ae
		}
		if amount <= 0 {
			return nil, invalid("amount", "parameter_invalid_integer", "Invalid positive integer")
		}
	}
	reason := c.form.Get("reason")
	switch reason {
	case "", "duplicate", "fraudulent", "requested_by_customer":
	default:
		return nil, invalid("reason", "", "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer")
	}
	r, ae := e.refundLocked(ch, amount, reason, formMap(c.form, "metadata"), c.eventRequest())
	if ae != nil {
		return nil, ae
	}
	return e.renderRefund(r, c.expand), nil
}

func (e *Emulator) getRefund(c *call) (any, error) {
	r, ok := e.refunds.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("refund", c.r.PathValue("id"))
	}
	return e.renderRefund(r, c.expand), nil
}

// chargeIDsFilter resolves the charge and payment_intent filters of a list
// to the charges they select; all is true when neither is set.
func (e *Emulator) chargeIDsFilter(c *call) (ids []string, all bool) {
	chID, piID := c.form.Get("charge"), c.form.Get("payment_intent")
	if chID == "" && piID == "" {
		return nil, true
	}
	if chID != "" {
		if ch, ok := e.charges.get(chID); ok && (piID == "" || ch.intentID == piID) {
			return []string{chID}, false
		}
		return nil, false
	}
	for _, ch := range e.chargesByIntent[piID] {
		ids = append(ids, ch.ID)
	}
	return ids, false
}

func (e *Emulator) listRefunds(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	var items []*refund
	var more bool
	if ids, all := e.chargeIDsFilter(c); all {
		items, more, ae = e.refunds.page(q, nil)
	} else {
		var cands []*refund
		for _, id := range ids {
			cands = append(cands, e.refundsByCharge[id]...)
		}
		items, more, ae = e.refunds.pageOf(sortedSubset(cands), q, nil)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/refunds", items, more, func(r *refund) any { return e.renderRefund(r, x) }), nil
}

func (e *Emulator) getDispute(c *call) (any, error) {
	d, ok := e.disputes.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("dispute", c.r.PathValue("id"))
	}
	return e.renderDispute(d, c.expand), nil
}

func (e *Emulator) listDisputes(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	var items []*dispute
	var more bool
	if ids, all := e.chargeIDsFilter(c); all {
		items, more, ae = e.disputes.page(q, nil)
	} else {
		var cands []*dispute
		for _, id := range ids {
			cands = append(cands, e.disputesByCharge[id]...)
		}
		items, more, ae = e.disputes.pageOf(sortedSubset(cands), q, nil)
	}
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/disputes", items, more, func(d *dispute) any { return e.renderDispute(d, x) }), nil
}

func (e *Emulator) getEvent(c *call) (any, error) {
	ev, ok := e.events.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("event", c.r.PathValue("id"))
	}
	return ev.raw, nil
}

// typeMatcher matches an event type against type= (which may end in a *
// wildcard) or types[].
type typeMatcher struct {
	exact  map[string]bool
	prefix string
	any    bool
}

func (m typeMatcher) match(t string) bool {
	switch {
	case m.any:
		return true
	case m.prefix != "":
		return strings.HasPrefix(t, m.prefix)
	}
	return m.exact[t]
}

func (e *Emulator) listEvents(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	types := formList(c.form, "types")
	typ := c.form.Get("type")
	m := typeMatcher{exact: map[string]bool{}}
	switch {
	case typ != "" && len(types) > 0:
		return nil, invalid("types", "", "You may only specify one of these parameters: type, types.")
	case len(types) > 20:
		return nil, invalid("types", "", "You may pass at most 20 types.")
	case len(types) > 0:
		for _, t := range types {
			m.exact[t] = true
		}
	case strings.HasSuffix(typ, "*"):
		m.prefix = strings.TrimSuffix(typ, "*")
		m.any = m.prefix == ""
	case typ != "":
		m.exact[typ] = true
	default:
		m.any = true
	}
	var keep func(*event) bool
	if !m.any {
		keep = func(ev *event) bool { return m.match(ev.Type) }
	}
	items, more, ae := e.events.page(q, keep)
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/events", items, more, func(ev *event) any { return ev.raw }), nil
}
