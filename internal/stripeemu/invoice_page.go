// The hosted invoice page that hosted_invoice_url points at: the invoice's
// lines and amount, and a Pay button that charges the customer's card now
// (optionally after giving them a working card), the way a customer
// recovers a failed renewal from the payment_failed email.

package stripeemu

import (
	"net/http"
)

// invoicePageLine is one line on the page.
type invoicePageLine struct {
	Description, Amount, Period string
}

// invoicePageData feeds invoicePageTemplate.
type invoicePageData struct {
	ID, Number, Status, Amount, Due, Email string
	Payable                                bool
	Lines                                  []invoicePageLine
}

const invoicePageTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Invoice {{.Number}} (Stripe emulator)</title></head>
<body style="font-family:system-ui,sans-serif;background:#f6f9fc;margin:0;padding:40px 16px;color:#1a1f36">
<div style="max-width:480px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);padding:28px">
<p style="margin:0 0 4px;font-size:12px;color:#697386;text-transform:uppercase;letter-spacing:.05em">Test mode &middot; Stripe emulator</p>
<h1 style="font-size:20px">Invoice {{.Number}}</h1>
<p style="color:#697386">{{.Email}} &middot; status <strong id="status">{{.Status}}</strong></p>
{{range .Lines}}<div style="display:flex;justify-content:space-between;margin:8px 0;font-size:14px"><span>{{.Description}}<br><small style="color:#697386">{{.Period}}</small></span><span>{{.Amount}}</span></div>
{{end}}<div style="display:flex;justify-content:space-between;border-top:1px solid #e3e8ee;margin-top:12px;padding-top:12px;font-weight:700"><span>Amount due</span><span id="due">{{.Due}}</span></div>
{{if .Payable}}<form method="post" action="/invoice/{{.ID}}/pay" style="margin-top:20px">
<label style="display:block;font-size:14px"><input type="checkbox" name="new_card" value="1"> Pay with a new, working card</label>
<button type="submit" style="width:100%;margin-top:12px;padding:12px;border:0;border-radius:4px;background:#635bff;color:#fff;font-size:16px;font-weight:600;cursor:pointer">Pay {{.Due}}</button>
</form>{{end}}
</div></body></html>`

// invoicePage serves hosted_invoice_url.
func (e *Emulator) invoicePage(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	inv, ok := e.bill.invoices.get(r.PathValue("id"))
	ok = ok && inv.status != invDraft
	var d invoicePageData
	if ok {
		d = invoicePageData{ID: inv.id, Number: orDefault(inv.number, "draft"), Status: string(inv.status), Email: inv.customerEmail,
			Due:     formatAmount(inv.amountDue-inv.amountPaid, inv.currency),
			Payable: inv.status == invOpen || inv.status == invUncollectible}
		for _, l := range inv.lines {
			d.Lines = append(d.Lines, invoicePageLine{Description: l.description, Amount: formatAmount(l.amount, inv.currency),
				Period: formatDate(l.periodStart) + " – " + formatDate(l.periodEnd)})
		}
	}
	e.mu.Unlock()
	if !ok {
		http.Error(w, "no such invoice", http.StatusNotFound)
		return
	}
	renderPage(w, e, "invoice", invoicePageTemplate, d)
}

// invoicePagePay pays the invoice from its page and shows it again; a
// declined card is a 402 page.
func (e *Emulator) invoicePagePay(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	e.mu.Lock()
	inv, ok := e.bill.invoices.get(id)
	ok = ok && inv.status != invDraft
	var ae *apiError
	if ok {
		if r.PostForm.Get("new_card") != "" {
			if cu, found := e.customers.get(inv.customerID); found {
				e.addCardLocked(cu)
			}
		}
		ae = e.payInvoiceLocked(inv, false, eventRequestJSON{})
	}
	e.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, "no such invoice", http.StatusNotFound)
	case ae != nil && ae.status == http.StatusPaymentRequired:
		http.Error(w, ae.Msg, http.StatusPaymentRequired)
	case ae != nil:
		http.Error(w, ae.Msg, http.StatusConflict)
	default:
		http.Redirect(w, r, "/invoice/"+id, http.StatusSeeOther)
	}
}
