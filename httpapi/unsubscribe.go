// Unsubscribe: every marketing email links to /unsubscribe with the
// address and an HMAC token, and names the same URL in List-Unsubscribe
// for mail clients' one-click button (RFC 8058: a POST with the body
// List-Unsubscribe=One-Click). The token is the whole authorisation, so no
// login is needed and nobody can unsubscribe someone else.
//
// Only a POST changes anything. Mail scanners and link previews fetch
// every link in a message; if GET unsubscribed, they would unsubscribe
// people who never clicked. GET shows a page whose button posts the form.
package httpapi

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/paymentd/paymentd/internal/mail"
)

var unsubscribePageTmpl = template.Must(template.New("unsubscribe").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
button{font:inherit;padding:.5rem 1rem;cursor:pointer}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{- if .Action}}
<form method="post" action="{{.Action}}"><button type="submit">Unsubscribe</button></form>
{{- end}}
</body></html>
`))

// unsubscribePage is what the page shows; Action, when set, is where its
// confirmation form posts.
type unsubscribePage struct{ Title, Message, Action string }

// verifiedUnsubscribe returns the address a request's token was issued
// for, or "" when the token does not verify.
func (a *api) verifiedUnsubscribe(r *http.Request) string {
	email := strings.TrimSpace(r.FormValue("email"))
	if email == "" || !mail.VerifyUnsubscribe([]byte(a.cfg.Email.UnsubscribeSecret), email, r.FormValue("token")) {
		return ""
	}
	return email
}

// writePage writes an unsubscribe page with status.
func writePage(w http.ResponseWriter, status int, p unsubscribePage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = unsubscribePageTmpl.Execute(w, p)
}

var invalidLinkPage = unsubscribePage{Title: "This link is not valid",
	Message: "The unsubscribe link is incomplete or was changed. Please use the link from the email exactly as it arrived."}

// unsubscribePage is GET /unsubscribe: the link a person clicks. It asks
// for confirmation and changes nothing.
func (a *api) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	email := a.verifiedUnsubscribe(r)
	if email == "" {
		writePage(w, http.StatusBadRequest, invalidLinkPage)
		return
	}
	q := url.Values{"email": {email}, "token": {r.FormValue("token")}}
	writePage(w, http.StatusOK, unsubscribePage{Title: "Unsubscribe from marketing email?",
		Message: "Press the button to stop marketing email to " + email + ". " +
			"Receipts and messages about your purchases still arrive.",
		Action: "/unsubscribe?" + q.Encode()})
}

// unsubscribe is POST /unsubscribe: the confirmation page's button, or a
// mail client's one-click unsubscribe (RFC 8058), with the address and
// token in the URL.
func (a *api) unsubscribe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.HTTP.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		writePage(w, http.StatusBadRequest, invalidLinkPage)
		return
	}
	email := a.verifiedUnsubscribe(r)
	if email == "" {
		writePage(w, http.StatusBadRequest, invalidLinkPage)
		return
	}
	if err := a.db.Unsubscribe(r.Context(), email, a.clock.Now()); err != nil {
		a.log.ErrorContext(r.Context(), "unsubscribe", "err", err)
		writePage(w, http.StatusInternalServerError, unsubscribePage{Title: "Something went wrong",
			Message: "We could not record your request. Please try again in a moment."})
		return
	}
	via := "page"
	if r.PostForm.Get("List-Unsubscribe") == "One-Click" {
		via = "one_click"
	}
	a.log.InfoContext(r.Context(), "unsubscribed", "via", via)
	writePage(w, http.StatusOK, unsubscribePage{Title: "You're unsubscribed",
		Message: "You will get no more marketing email from us. Receipts and messages about your purchases still arrive."})
}
