// The billing portal: POST /v1/billing_portal/sessions returns a session
// whose url is a page the emulator serves, where the customer sees their
// subscriptions and invoices and can cancel at period end, undo that, and
// switch between the prices of the same product, then go back to
// return_url. For development the page also sets how the customer's card
// behaves (working, declining), which real Stripe leaves to test cards.

package stripeemu

import (
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// portalSession is a stored billing portal session.
type portalSession struct {
	id         string
	created    int64
	customerID string
	returnURL  string
	locale     string
}

func (p *portalSession) sortKey() (int64, string) { return p.created, p.id }

// portalSessionJSON is a Stripe billing_portal.session.
type portalSessionJSON struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Configuration string  `json:"configuration"`
	Created       int64   `json:"created"`
	Customer      string  `json:"customer"`
	Flow          any     `json:"flow"`
	Livemode      bool    `json:"livemode"`
	Locale        *string `json:"locale"`
	OnBehalfOf    any     `json:"on_behalf_of"`
	ReturnURL     *string `json:"return_url"`
	URL           string  `json:"url"`
}

// portalURL is where the emulator serves a portal session.
func (e *Emulator) portalURL(id string) string { return e.baseURL + "/billing/p/session/" + id }

func (e *Emulator) renderPortal(p *portalSession) portalSessionJSON {
	return portalSessionJSON{ID: p.id, Object: "billing_portal.session", Configuration: e.portalConfigLocked(), Created: p.created,
		Customer: p.customerID, Locale: optString(p.locale), ReturnURL: optString(p.returnURL), URL: e.portalURL(p.id)}
}

// portalConfigLocked is the id of the account's default portal
// configuration.
func (e *Emulator) portalConfigLocked() string {
	if e.bill.portalConfig == "" {
		e.bill.portalConfig = e.newIDLocked("bpc_")
	}
	return e.bill.portalConfig
}

func (e *Emulator) createPortalSession(c *call) (any, error) {
	cust, ae := required(c, "customer")
	if ae != nil {
		return nil, ae
	}
	if _, ok := e.customers.get(cust); !ok {
		return nil, invalid("customer", "resource_missing", "No such customer: '%s'", cust)
	}
	if ae := rejectUnsupported(c.form, []string{"flow_data", "on_behalf_of"}); ae != nil {
		return nil, ae
	}
	if cfg := c.form.Get("configuration"); cfg != "" && cfg != e.portalConfigLocked() {
		return nil, invalid("configuration", "resource_missing", "No such configuration: '%s'", cfg)
	}
	ret := c.form.Get("return_url")
	if ret != "" {
		if u, err := url.Parse(ret); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, invalid("return_url", "url_invalid", "Not a valid URL")
		}
	}
	p := &portalSession{id: e.newIDLocked("bps_"), created: e.nowUnix(), customerID: cust, returnURL: ret, locale: c.form.Get("locale")}
	e.bill.portals.add(p)
	return e.renderPortal(p), nil
}

// portalSub is one subscription on the portal page.
type portalSub struct {
	ID, Plan, Status, PeriodEnd, TrialEnd, CancelsOn string
	Canceling, Switchable                            bool
	Options                                          []portalOption
}

// portalOption is a price the customer may switch to.
type portalOption struct {
	ID, Label string
}

// portalInvoice is one invoice on the portal page.
type portalInvoice struct {
	Number, Date, Amount, Status, URL string
}

// portalData feeds portalTemplate.
type portalData struct {
	ID, Email, Card, ReturnURL string
	HasCard                    bool
	Subs                       []portalSub
	Invoices                   []portalInvoice
}

const portalTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Billing (Stripe emulator)</title></head>
<body style="font-family:system-ui,sans-serif;background:#f6f9fc;margin:0;padding:40px 16px;color:#1a1f36">
<div style="max-width:560px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);padding:28px">
<p style="margin:0 0 4px;font-size:12px;color:#697386;text-transform:uppercase;letter-spacing:.05em">Test mode &middot; Stripe emulator billing portal</p>
<p style="margin:0 0 16px">{{.Email}}</p>
{{if .ReturnURL}}<p><a id="return" href="{{.ReturnURL}}">&larr; Return to the merchant</a></p>{{end}}
<h2 style="font-size:16px">Subscriptions</h2>
{{range .Subs}}<div class="sub" id="{{.ID}}" style="border:1px solid #e3e8ee;border-radius:6px;padding:12px;margin-bottom:12px">
<div style="font-weight:600">{{.Plan}}</div>
<div style="color:#697386;font-size:14px">Status: <span class="status">{{.Status}}</span>{{if .TrialEnd}} &middot; trial ends {{.TrialEnd}}{{end}}</div>
{{if .Canceling}}<div style="font-size:14px">Cancels on {{.CancelsOn}}</div>
<form method="post" action="/billing/p/session/{{$.ID}}/renew"><input type="hidden" name="subscription" value="{{.ID}}"><button type="submit">Renew subscription</button></form>
{{else}}<div style="font-size:14px">Renews on {{.PeriodEnd}}</div>
<form method="post" action="/billing/p/session/{{$.ID}}/cancel"><input type="hidden" name="subscription" value="{{.ID}}"><button type="submit">Cancel subscription</button></form>{{end}}
{{if .Switchable}}<form method="post" action="/billing/p/session/{{$.ID}}/switch"><input type="hidden" name="subscription" value="{{.ID}}">
<select name="price">{{range .Options}}<option value="{{.ID}}">{{.Label}}</option>{{end}}</select> <button type="submit">Update plan</button></form>{{end}}
</div>
{{else}}<p>No active subscriptions.</p>
{{end}}
<h2 style="font-size:16px">Payment method</h2>
<p>Card: <strong id="card">{{.Card}}</strong></p>
<form method="post" action="/billing/p/session/{{.ID}}/card" style="display:inline">
<button type="submit" name="card" value="working">{{if .HasCard}}Use a working card{{else}}Add a card{{end}}</button>
{{if .HasCard}}<button type="submit" name="card" value="declining">Make the card decline (emulator)</button>{{end}}
</form>
<h2 style="font-size:16px">Invoices</h2>
{{range .Invoices}}<div style="display:flex;justify-content:space-between;font-size:14px;margin:4px 0"><span>{{.Date}} &middot; {{.Number}}</span><span>{{.Amount}} &middot; {{.Status}}{{if .URL}} &middot; <a href="{{.URL}}">view</a>{{end}}</span></div>
{{else}}<p>No invoices.</p>
{{end}}
</div></body></html>`

// portalDataLocked gathers what the portal page shows.
func (e *Emulator) portalDataLocked(p *portalSession) portalData {
	d := portalData{ID: p.id, ReturnURL: p.returnURL, Card: "none"}
	if cu, ok := e.customers.get(p.customerID); ok {
		d.Email = ptrValue(cu.Email)
	}
	if pm, ok := e.cardLocked(p.customerID); pm != "" {
		d.HasCard, d.Card = true, "working"
		if !ok {
			d.Card = "declining"
		}
	}
	for _, s := range e.bill.subsByCustomer[p.customerID] {
		if !s.live() {
			continue
		}
		ps := portalSub{ID: s.id, Status: string(s.status), PeriodEnd: formatDate(s.periodEnd), Canceling: s.cancelAtPeriodEnd,
			CancelsOn: formatDate(s.cancelAt)}
		if s.trialEnd != 0 && s.status == subTrialing {
			ps.TrialEnd = formatDate(s.trialEnd)
		}
		if len(s.items) > 0 {
			it := s.items[0]
			ps.Plan = e.priceLabel(it.priceID)
			if it.quantity > 1 {
				ps.Plan += " × " + itoa(it.quantity)
			}
			ps.Options = e.switchOptionsLocked(it.priceID)
			ps.Switchable = len(ps.Options) > 0 && len(s.items) == 1 && s.status != subIncomplete
		}
		d.Subs = append(d.Subs, ps)
	}
	invs := sortedSubset(e.bill.invoicesByCustomer[p.customerID])
	for i := len(invs) - 1; i >= 0 && len(d.Invoices) < 10; i-- {
		inv := invs[i]
		pi := portalInvoice{Number: orDefault(inv.number, "draft"), Date: formatDate(inv.created), Amount: formatAmount(inv.amountDue, inv.currency),
			Status: string(inv.status)}
		if inv.status != invDraft {
			pi.URL = "/invoice/" + inv.id
		}
		d.Invoices = append(d.Invoices, pi)
	}
	return d
}

// priceLabel describes a price, e.g. "Pro · €29.00 / month".
func (e *Emulator) priceLabel(priceID string) string {
	return e.productName(priceID) + " · " + e.unitPrice(priceID) + " / " + e.intervalLabel(priceID)
}

// switchOptionsLocked lists the other active recurring prices of the same
// product and currency, the choices the default portal configuration
// offers.
func (e *Emulator) switchOptionsLocked(priceID string) []portalOption {
	cur, ok := e.prices.get(priceID)
	if !ok {
		return nil
	}
	var out []portalOption
	for _, p := range e.prices.items {
		if p.ID != cur.ID && p.Active && p.productID == cur.productID && p.Currency == cur.Currency && recurringOf(p) != nil {
			out = append(out, portalOption{ID: p.ID, Label: e.priceLabel(p.ID)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// portalPage serves a portal session's page.
func (e *Emulator) portalPage(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	p, ok := e.bill.portals.get(r.PathValue("id"))
	var d portalData
	if ok {
		d = e.portalDataLocked(p)
	}
	e.mu.Unlock()
	if !ok {
		http.Error(w, "no such billing portal session", http.StatusNotFound)
		return
	}
	renderPage(w, e, "portal", portalTemplate, d)
}

// portalAction applies a button of the portal page and shows the page
// again.
func (e *Emulator) portalAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	e.mu.Lock()
	status, msg := e.portalActionLocked(id, r.PathValue("action"), r.PostForm)
	e.mu.Unlock()
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	http.Redirect(w, r, "/billing/p/session/"+id, http.StatusSeeOther)
}

// portalActionLocked applies one portal action; a non-zero status is an
// error to show.
func (e *Emulator) portalActionLocked(id, action string, form url.Values) (int, string) {
	p, ok := e.bill.portals.get(id)
	if !ok {
		return http.StatusNotFound, "no such billing portal session"
	}
	cu, ok := e.customers.get(p.customerID)
	if !ok {
		return http.StatusNotFound, "no such customer"
	}
	if action == "card" {
		switch form.Get("card") {
		case "working":
			e.addCardLocked(cu)
		case "declining":
			if e.bill.cards[cu.ID] == "" {
				return http.StatusConflict, "the customer has no card"
			}
			e.bill.declining[cu.ID] = true
		default:
			return http.StatusBadRequest, "card must be working or declining"
		}
		return 0, ""
	}
	s, ok := e.bill.subs.get(form.Get("subscription"))
	if !ok || s.customerID != cu.ID {
		return http.StatusNotFound, "no such subscription for this customer"
	}
	var u subUpdate
	yes, no := true, false
	switch action {
	case "cancel":
		u.cancelAtPeriodEnd = &yes
	case "renew":
		u.cancelAtPeriodEnd = &no
	case "switch":
		price := form.Get("price")
		allowed := false
		if len(s.items) == 1 {
			for _, o := range e.switchOptionsLocked(s.items[0].priceID) {
				allowed = allowed || o.ID == price
			}
		}
		if !allowed {
			return http.StatusBadRequest, "that price is not offered for this subscription"
		}
		u.items = []itemChange{{id: s.items[0].id, price: price}}
		u.proration = "create_prorations"
	default:
		return http.StatusNotFound, "unknown portal action " + strings.TrimSpace(action)
	}
	if ae := e.updateSubscriptionLocked(s, u, eventRequestJSON{}); ae != nil {
		return http.StatusConflict, ae.Msg
	}
	return 0, ""
}

// renderPage parses and executes a dev page template. Pages are parsed per
// request: they are dev tools, and this keeps package state immutable.
func renderPage(w http.ResponseWriter, e *Emulator, name, text string, data any) {
	t, err := template.New(name).Parse(text)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.Execute(w, data); err != nil {
		e.log.Warn("stripeemu: render page", "page", name, "err", err)
	}
}
