// Unsubscribe: every marketing email links to /unsubscribe with the
// address and an HMAC token, and names the same URL in List-Unsubscribe
// for mail clients' one-click button (RFC 8058: a POST with the body
// List-Unsubscribe=One-Click). The token is the whole authorisation, so no
// login is needed and nobody can unsubscribe someone else.
package httpapi

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/paymentd/paymentd/internal/mail"
)

var unsubscribePageTmpl = template.Must(template.New("unsubscribe").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

type unsubscribePage struct{ Title, Message string }

// verifiedUnsubscribe returns the address a request's token was issued
// for, or "" when the token does not verify.
func (a *api) verifiedUnsubscribe(r *http.Request) string {
	email := strings.TrimSpace(r.FormValue("email"))
	if email == "" || !mail.VerifyUnsubscribe([]byte(a.cfg.Email.UnsubscribeSecret), email, r.FormValue("token")) {
		return ""
	}
	return email
}

// unsubscribePage is GET /unsubscribe: the link a person clicks.
func (a *api) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	email := a.verifiedUnsubscribe(r)
	if email == "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = unsubscribePageTmpl.Execute(w, unsubscribePage{Title: "This link is not valid",
			Message: "The unsubscribe link is incomplete or was changed. Please use the link from the email exactly as it arrived."})
		return
	}
	if err := a.db.Unsubscribe(r.Context(), email, a.clock.Now()); err != nil {
		a.log.ErrorContext(r.Context(), "unsubscribe", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		_ = unsubscribePageTmpl.Execute(w, unsubscribePage{Title: "Something went wrong",
			Message: "We could not record your request. Please try the link again in a moment."})
		return
	}
	a.log.InfoContext(r.Context(), "unsubscribed", "via", "link")
	_ = unsubscribePageTmpl.Execute(w, unsubscribePage{Title: "You're unsubscribed",
		Message: "You will get no more marketing email from us. Receipts and messages about your purchases still arrive."})
}

// unsubscribeOneClick is POST /unsubscribe: a mail client's one-click
// unsubscribe (RFC 8058), with the address and token in the URL.
func (a *api) unsubscribeOneClick(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.HTTP.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return Errorf(http.StatusBadRequest, "invalid_form", "the request body is not a form")
	}
	email := a.verifiedUnsubscribe(r)
	if email == "" {
		return Errorf(http.StatusBadRequest, "invalid_token", "the unsubscribe link is not valid")
	}
	if err := a.db.Unsubscribe(r.Context(), email, a.clock.Now()); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "unsubscribed", "via", "one_click")
	writeJSON(w, http.StatusOK, map[string]bool{"unsubscribed": true})
	return nil
}
