// Hosted checkout page: the minimal stand-in for checkout.stripe.com that a
// session's url points at, so `make run` can be clicked through in a
// browser. Pay completes the session and redirects to success_url; Cancel
// redirects to cancel_url.

package stripeemu

import (
	"html/template"
	"net/http"
	"strings"
)

// pageLine is one line item on the page.
type pageLine struct {
	Name     string
	Quantity int64
	Amount   string
}

// pageData feeds checkoutTemplate.
type pageData struct {
	ID          string
	Open        bool
	Status      string
	Lines       []pageLine
	Subtotal    string
	Discount    string
	Tax         string // automatic tax, when any
	TaxIncluded bool   // the tax is inside the prices, not added
	Total       string
	Email       string
	AskConsent  bool
	ReturnURL   string
	ReturnLabel string
	// Subscription mode: what is billed after today, and the card options.
	Recurring string
	Trial     string
	SkipCard  bool
}

// checkoutTemplate renders the hosted page. It is parsed per request: the
// page is a dev tool, and this keeps package state immutable.
const checkoutTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout (Stripe emulator)</title></head>
<body style="font-family:system-ui,sans-serif;background:#f6f9fc;margin:0;padding:40px 16px;color:#1a1f36">
<div style="max-width:420px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);padding:28px">
<p style="margin:0 0 4px;font-size:12px;color:#697386;text-transform:uppercase;letter-spacing:.05em">Test mode &middot; Stripe emulator</p>
{{range .Lines}}<div style="display:flex;justify-content:space-between;margin:12px 0"><span style="font-weight:600">{{.Name}}{{if gt .Quantity 1}} &times; {{.Quantity}}{{end}}</span><span>{{.Amount}}</span></div>
{{end}}{{if .Discount}}<div style="display:flex;justify-content:space-between;color:#697386"><span>Discount</span><span>&minus;{{.Discount}}</span></div>
{{end}}{{if .Tax}}<div style="display:flex;justify-content:space-between;color:#697386"><span>{{if .TaxIncluded}}Includes tax{{else}}Tax{{end}}</span><span id="tax">{{.Tax}}</span></div>
{{end}}<div style="display:flex;justify-content:space-between;border-top:1px solid #e3e8ee;margin-top:12px;padding-top:12px;font-size:20px;font-weight:700"><span>Total</span><span id="total">{{.Total}}</span></div>
{{if .Trial}}<p id="trial" style="margin:8px 0 0;color:#697386">{{.Trial}}</p>{{end}}{{if .Recurring}}<p id="recurring" style="margin:8px 0 0;color:#697386">{{.Recurring}}</p>{{end}}
{{if .Open}}
<form method="post" action="/checkout/{{.ID}}/pay" style="margin-top:20px">
<label style="display:block;font-size:14px;margin-bottom:4px" for="email">Email</label>
<input id="email" name="email" type="email" value="{{.Email}}" required style="width:100%;box-sizing:border-box;padding:8px;border:1px solid #cfd7df;border-radius:4px;font-size:15px">
<label style="display:block;font-size:14px;margin:12px 0 4px" for="name">Name</label>
<input id="name" name="name" type="text" style="width:100%;box-sizing:border-box;padding:8px;border:1px solid #cfd7df;border-radius:4px;font-size:15px">
{{if .AskConsent}}<label style="display:block;font-size:14px;margin-top:12px"><input type="checkbox" name="promotions" value="opt_in"> Send me promotional emails</label>{{end}}
{{if .Recurring}}<label style="display:block;font-size:14px;margin-top:12px"><input type="checkbox" name="decline" value="1"> Use a card that declines (4000 0000 0000 0002)</label>
{{if .SkipCard}}<label style="display:block;font-size:14px;margin-top:12px"><input type="checkbox" name="nocard" value="1"> Start the trial without a card</label>{{end}}
{{else}}<label style="display:block;font-size:14px;margin-top:12px"><input type="checkbox" name="async" value="1"> Async payment (settles later)</label>{{end}}
<button type="submit" style="width:100%;margin-top:20px;padding:12px;border:0;border-radius:4px;background:#635bff;color:#fff;font-size:16px;font-weight:600;cursor:pointer">Pay {{.Total}}</button>
</form>
<form method="post" action="/checkout/{{.ID}}/cancel"><button type="submit" style="width:100%;margin-top:8px;padding:10px;border:1px solid #cfd7df;border-radius:4px;background:#fff;color:#1a1f36;font-size:15px;cursor:pointer">Cancel</button></form>
{{else}}
<p style="margin-top:20px">This checkout session is <strong>{{.Status}}</strong>.</p>
{{if .ReturnURL}}<p><a href="{{.ReturnURL}}">{{.ReturnLabel}}</a></p>{{end}}
{{end}}
</div></body></html>`

// checkoutPage shows the payment form of a session.
func (e *Emulator) checkoutPage(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	s, ok := e.sessions.get(r.PathValue("id"))
	if !ok {
		e.mu.Unlock()
		http.Error(w, "no such checkout session", http.StatusNotFound)
		return
	}
	d := pageData{ID: s.ID, Open: s.Status == "open", Status: s.Status, Email: ptrValue(s.CustomerEmail),
		Total: formatAmount(s.AmountTotal, s.Currency), AskConsent: s.ConsentCollection != nil && s.ConsentCollection.Promotions == "auto"}
	if s.TotalDetails.AmountDiscount > 0 {
		d.Discount = formatAmount(s.TotalDetails.AmountDiscount, s.Currency)
	}
	if s.TotalDetails.AmountTax > 0 {
		d.Tax = formatAmount(s.TotalDetails.AmountTax, s.Currency)
		d.TaxIncluded = s.AmountTotal == s.AmountSubtotal-s.TotalDetails.AmountDiscount
	}
	for _, li := range s.lineItems {
		d.Lines = append(d.Lines, pageLine{Name: li.description, Quantity: li.quantity, Amount: formatAmount(li.amountSubtotal, s.Currency)})
	}
	if s.Status == "complete" && s.SuccessURL != nil {
		d.ReturnURL, d.ReturnLabel = successURL(*s.SuccessURL, s.ID), "Return to the merchant"
	}
	if s.Mode == "subscription" {
		d.Recurring, d.Trial, d.SkipCard = e.subscriptionPageTermsLocked(s)
	}
	e.mu.Unlock()

	t, err := template.New("checkout").Parse(checkoutTemplate)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.Execute(w, d); err != nil {
		e.log.Warn("stripeemu: render checkout page", "err", err)
	}
}

// checkoutPay completes the session from the form and redirects to the
// success URL.
func (e *Emulator) checkoutPay(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	p := Pay{Email: strings.TrimSpace(r.PostForm.Get("email")), Name: strings.TrimSpace(r.PostForm.Get("name")), Async: r.PostForm.Get("async") != "",
		Decline: r.PostForm.Get("decline") != "", NoPaymentMethod: r.PostForm.Get("nocard") != ""}
	e.mu.Lock()
	s, ok := e.sessions.get(id)
	if !ok {
		e.mu.Unlock()
		http.Error(w, "no such checkout session", http.StatusNotFound)
		return
	}
	if s.ConsentCollection != nil && s.ConsentCollection.Promotions == "auto" {
		p.ConsentPromotions = "opt_out"
		if r.PostForm.Get("promotions") == "opt_in" {
			p.ConsentPromotions = "opt_in"
		}
	}
	ae := e.payLocked(s, p)
	target := "/checkout/" + id
	if ae == nil && s.SuccessURL != nil {
		target = successURL(*s.SuccessURL, id)
	}
	e.mu.Unlock()
	if ae != nil {
		status := http.StatusConflict
		if ae.status == http.StatusPaymentRequired {
			status = ae.status // a declined card; the session stays open for another try
		}
		http.Error(w, ae.Msg, status)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// checkoutCancel sends the customer back to the cancel URL, leaving the
// session open, as Stripe's back link does.
func (e *Emulator) checkoutCancel(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	s, ok := e.sessions.get(r.PathValue("id"))
	target := ""
	if ok && s.CancelURL != nil {
		target = *s.CancelURL
	}
	e.mu.Unlock()
	if !ok {
		http.Error(w, "no such checkout session", http.StatusNotFound)
		return
	}
	if target == "" {
		target = "/checkout/" + s.ID
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// checkoutRecover opens (creating on first use) the session recovered from
// an expired one, the target of after_expiration.recovery.url.
func (e *Emulator) checkoutRecover(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	old, ok := e.sessions.get(r.PathValue("id"))
	if !ok {
		e.mu.Unlock()
		http.Error(w, "no such checkout session", http.StatusNotFound)
		return
	}
	s, ae := e.recoverLocked(old)
	e.mu.Unlock()
	if ae != nil {
		http.Error(w, ae.Msg, http.StatusGone)
		return
	}
	http.Redirect(w, r, "/checkout/"+s.ID, http.StatusSeeOther)
}

// successURL fills Stripe's {CHECKOUT_SESSION_ID} template variable.
func successURL(u, id string) string {
	return strings.ReplaceAll(u, "{CHECKOUT_SESSION_ID}", id)
}
