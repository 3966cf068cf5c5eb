// The hosted "Elements" page: a stand-in for a storefront's Stripe Elements
// form, so `make run` can pay an embedded cart in a browser without
// Stripe.js or a CDN. GET /elements/{client_secret}?return_url=URL shows the
// amount and a choice of test payment methods; paying confirms the intent
// and, as stripe.confirmPayment does, redirects to return_url with
// payment_intent, payment_intent_client_secret and redirect_status. A
// declined card comes back to the form with the error, the intent ready for
// another try; a card that needs 3-D Secure goes through the challenge
// page, /elements/{client_secret}/3ds, which is also where a server-side
// confirmation's next_action.redirect_to_url points.

package stripeemu

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// elementsRoutes mounts the Elements and challenge pages.
func (e *Emulator) elementsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /elements/{secret}", e.elementsPage)
	mux.HandleFunc("POST /elements/{secret}/confirm", e.elementsConfirm)
	mux.HandleFunc("GET /elements/{secret}/3ds", e.challengePage)
	mux.HandleFunc("POST /elements/{secret}/3ds", e.challengeAnswer)
}

// elementsChoice is one test payment method on the page.
type elementsChoice struct {
	Outcome Outcome
	Label   string
	Checked bool
}

// elementsData feeds elementsTemplate.
type elementsData struct {
	Secret      string
	Amount      string
	Description string
	Status      string
	Open        bool // the buyer may pay: requires_payment_method or requires_confirmation
	Challenge   bool // a 3-D Secure challenge is pending
	Error       string
	Choices     []elementsChoice
	ReturnURL   string // as given, for the form
	DoneURL     string // where a finished payment goes back to
}

const elementsTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Payment (Stripe emulator)</title></head>
<body style="font-family:system-ui,sans-serif;background:#f6f9fc;margin:0;padding:40px 16px;color:#1a1f36">
<div style="max-width:420px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);padding:28px">
<p style="margin:0 0 4px;font-size:12px;color:#697386;text-transform:uppercase;letter-spacing:.05em">Test mode &middot; Stripe Elements (emulated)</p>
{{if .Description}}<p style="margin:8px 0">{{.Description}}</p>{{end}}
<div style="display:flex;justify-content:space-between;font-size:20px;font-weight:700;margin:12px 0"><span>Total</span><span id="amount">{{.Amount}}</span></div>
{{if .Error}}<p id="error" role="alert" style="color:#df1b41;margin:12px 0">{{.Error}}</p>{{end}}
{{if .Open}}
<form method="post" action="/elements/{{.Secret}}/confirm">
<input type="hidden" name="return_url" value="{{.ReturnURL}}">
<fieldset style="border:1px solid #e3e8ee;border-radius:4px;padding:8px 12px"><legend style="font-size:14px">Test payment method</legend>
{{range .Choices}}<label style="display:block;margin:6px 0;font-size:14px"><input type="radio" name="method" value="{{.Outcome}}"{{if .Checked}} checked{{end}}> {{.Label}}</label>
{{end}}</fieldset>
<button type="submit" style="width:100%;margin-top:20px;padding:12px;border:0;border-radius:4px;background:#635bff;color:#fff;font-size:16px;font-weight:600;cursor:pointer">Pay {{.Amount}}</button>
</form>
{{else if .Challenge}}<p><a id="challenge" href="/elements/{{.Secret}}/3ds">Complete 3-D Secure authentication</a></p>
{{else}}<p id="status" style="margin-top:20px">This payment is <strong>{{.Status}}</strong>.</p>
{{if .DoneURL}}<p><a href="{{.DoneURL}}">Return to the merchant</a></p>{{end}}
{{end}}
</div></body></html>`

const challengeTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3-D Secure (Stripe emulator)</title></head>
<body style="font-family:system-ui,sans-serif;background:#f6f9fc;margin:0;padding:40px 16px;color:#1a1f36">
<div style="max-width:420px;margin:0 auto;background:#fff;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);padding:28px">
<p style="margin:0 0 4px;font-size:12px;color:#697386;text-transform:uppercase;letter-spacing:.05em">Test mode &middot; 3-D Secure challenge (emulated)</p>
{{if .Challenge}}<p>Your bank asks you to confirm a payment of <strong id="amount">{{.Amount}}</strong>.</p>
<form method="post" action="/elements/{{.Secret}}/3ds" style="display:flex;gap:8px">
<button name="action" value="approve" type="submit" style="flex:1;padding:12px;border:0;border-radius:4px;background:#635bff;color:#fff;font-size:16px;cursor:pointer">Complete authentication</button>
<button name="action" value="fail" type="submit" style="flex:1;padding:12px;border:1px solid #cfd7df;border-radius:4px;background:#fff;font-size:16px;cursor:pointer">Fail authentication</button>
</form>
{{else}}<p id="status">No authentication is pending for this payment ({{.Status}}).</p>{{end}}
</div></body></html>`

// intentBySecretLocked returns the API payment intent with client secret s.
func (e *Emulator) intentBySecretLocked(s string) (*paymentIntent, bool) {
	pi, ok := e.pay.bySecret[s]
	return pi, ok
}

// pageReturnURL reads an optional return_url for the page: empty, or an
// absolute http(s) URL.
func pageReturnURL(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	return v, checkReturnURL("return_url", v) == nil
}

// elementsDataLocked describes pi for the page.
func (e *Emulator) elementsDataLocked(pi *paymentIntent, returnURL string) elementsData {
	d := elementsData{Secret: pi.ClientSecret, Amount: formatAmount(pi.Amount, pi.Currency), Description: ptrValue(pi.Description),
		Status: strings.ReplaceAll(pi.Status, "_", " "), ReturnURL: returnURL,
		Open:      pi.Status == "requires_payment_method" || pi.Status == "requires_confirmation",
		Challenge: pi.Status == "requires_action"}
	if le := pi.LastPaymentError; le != nil && d.Open {
		d.Error = le.Message
	}
	d.Choices = []elementsChoice{
		{OutcomeSucceeds, "Visa 4242 4242 4242 4242: succeeds", true},
		{OutcomeDeclined, "Visa 4000 0000 0000 0002: declined (generic_decline)", false},
		{OutcomeInsufficientFunds, "Visa 4000 0000 0000 9995: declined (insufficient_funds)", false},
		{OutcomeRequires3DS, "Visa 4000 0000 0000 3220: 3-D Secure required", false},
	}
	switch bankDebitType(pi.Currency) {
	case "sepa_debit":
		d.Choices = append(d.Choices, elementsChoice{OutcomeAsyncSucceeds, "SEPA Direct Debit DE89 3704 0044 0532 0130 00: settles later", false},
			elementsChoice{OutcomeAsyncFails, "SEPA Direct Debit DE62 3704 0044 0532 0130 01: fails later", false})
	case "us_bank_account":
		d.Choices = append(d.Choices, elementsChoice{OutcomeAsyncSucceeds, "ACH debit, account 000123456789: settles later", false},
			elementsChoice{OutcomeAsyncFails, "ACH debit, account 000111111113: fails later", false})
	}
	if returnURL != "" && !d.Open && !d.Challenge {
		d.DoneURL, _ = redirectAfter(returnURL, pi)
	}
	return d
}

// render executes a page template.
func (e *Emulator) render(w http.ResponseWriter, status int, name, text string, data any) {
	t, err := template.New(name).Parse(text)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		e.log.Warn("stripeemu: render page", "page", name, "err", err)
	}
}

// elementsPage shows the payment form of the intent named by its secret.
func (e *Emulator) elementsPage(w http.ResponseWriter, r *http.Request) {
	ret, ok := pageReturnURL(r.URL.Query().Get("return_url"))
	if !ok {
		http.Error(w, "return_url must be an absolute http(s) URL", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	pi, found := e.intentBySecretLocked(r.PathValue("secret"))
	var d elementsData
	if found {
		d = e.elementsDataLocked(pi, ret)
	}
	e.mu.Unlock()
	if !found {
		http.Error(w, "no such payment intent", http.StatusNotFound)
		return
	}
	e.render(w, http.StatusOK, "elements", elementsTemplate, d)
}

// elementsConfirm confirms the intent with the chosen test payment method
// and sends the buyer where Stripe.js would: the challenge, back to the form
// after a decline, or to return_url.
func (e *Emulator) elementsConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ret, ok := pageReturnURL(r.PostForm.Get("return_url"))
	if !ok {
		http.Error(w, "return_url must be an absolute http(s) URL", http.StatusBadRequest)
		return
	}
	secret := r.PathValue("secret")
	e.mu.Lock()
	pi, found := e.intentBySecretLocked(secret)
	if !found {
		e.mu.Unlock()
		http.Error(w, "no such payment intent", http.StatusNotFound)
		return
	}
	m, ae := methodFor(Outcome(r.PostForm.Get("method")), pi.Currency)
	if ae == nil {
		reqID := e.newIDLocked("req_")
		ae = e.confirmLocked(pi, m, e.newIDLocked("pm_"), ret, eventRequestJSON{ID: &reqID})
	}
	pi.flow.viaPage = true
	status := pi.Status
	target, _ := redirectAfter(ret, pi)
	e.mu.Unlock()
	switch {
	case ae != nil && ae.status == http.StatusPaymentRequired:
		http.Redirect(w, r, pageURL(secret, ret), http.StatusSeeOther) // the form shows the decline
	case ae != nil:
		http.Error(w, ae.Msg, http.StatusConflict)
	case status == "requires_action":
		http.Redirect(w, r, "/elements/"+secret+"/3ds", http.StatusSeeOther)
	case ret == "":
		http.Redirect(w, r, pageURL(secret, ""), http.StatusSeeOther)
	default:
		http.Redirect(w, r, target, http.StatusSeeOther)
	}
}

// pageURL is the Elements page of secret, keeping return_url.
func pageURL(secret, returnURL string) string {
	u := "/elements/" + secret
	if returnURL != "" {
		u += "?return_url=" + url.QueryEscape(returnURL)
	}
	return u
}

// challengePage shows the 3-D Secure challenge of an intent.
func (e *Emulator) challengePage(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	pi, found := e.intentBySecretLocked(r.PathValue("secret"))
	var d elementsData
	if found {
		d = e.elementsDataLocked(pi, "")
	}
	e.mu.Unlock()
	if !found {
		http.Error(w, "no such payment intent", http.StatusNotFound)
		return
	}
	e.render(w, http.StatusOK, "challenge", challengeTemplate, d)
}

// challengeAnswer approves or fails the challenge. Success goes to the
// confirmation's return_url; a failure goes back to the Elements form when
// the buyer came from it (Stripe.js shows the error there), else to
// return_url with redirect_status=failed, as a redirect-based confirmation
// does.
func (e *Emulator) challengeAnswer(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	action := r.PostForm.Get("action")
	if action != "approve" && action != "fail" {
		http.Error(w, "action must be approve or fail", http.StatusBadRequest)
		return
	}
	secret := r.PathValue("secret")
	e.mu.Lock()
	pi, found := e.intentBySecretLocked(secret)
	if !found {
		e.mu.Unlock()
		http.Error(w, "no such payment intent", http.StatusNotFound)
		return
	}
	reqID := e.newIDLocked("req_")
	ae := e.authenticateLocked(pi, action == "approve", eventRequestJSON{ID: &reqID})
	ret, viaPage, status := pi.flow.returnURL, pi.flow.viaPage, pi.Status
	target, _ := redirectAfter(ret, pi)
	e.mu.Unlock()
	switch {
	case ae != nil:
		http.Error(w, ae.Msg, http.StatusConflict)
	case ret == "" || (viaPage && status != "succeeded"):
		http.Redirect(w, r, pageURL(secret, ret), http.StatusSeeOther)
	default:
		http.Redirect(w, r, target, http.StatusSeeOther)
	}
}
