package httpapi_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

func unsubscribeQuery(email, token string) string {
	q := url.Values{}
	q.Set("email", email)
	q.Set("token", token)
	return "/unsubscribe?" + q.Encode()
}

func TestUnsubscribeLink(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := []byte(h.cfg.Email.UnsubscribeSecret)
	email := "Ada@Example.com"

	r := h.do("GET", unsubscribeQuery(email, mail.UnsubscribeToken(secret, "someone-else@example.com")), "", nil)
	if r.status != http.StatusBadRequest {
		t.Errorf("a token for another address = %d; want 400", r.status)
	}
	r = h.do("GET", unsubscribeQuery(email, ""), "", nil)
	if r.status != http.StatusBadRequest {
		t.Errorf("no token = %d; want 400", r.status)
	}
	if yes, err := h.db.IsUnsubscribed(t.Context(), email); err != nil || yes {
		t.Fatalf("bad links unsubscribed the address (%v, %v)", yes, err)
	}

	r = h.do("GET", unsubscribeQuery(email, mail.UnsubscribeToken(secret, email)), "", nil)
	page := html.UnescapeString(string(r.body))
	if r.status != http.StatusOK || !strings.Contains(page, "You're unsubscribed") ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("good link = %d %s %q", r.status, r.header.Get("Content-Type"), page)
	}
	if yes, err := h.db.IsUnsubscribed(t.Context(), "ada@example.com"); err != nil || !yes {
		t.Errorf("after a good link IsUnsubscribed = %v, %v", yes, err)
	}
}

func TestUnsubscribeOneClick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := []byte(h.cfg.Email.UnsubscribeSecret)
	email := "grace@example.com"
	oneClick := "List-Unsubscribe=One-Click"

	r := h.do("POST", unsubscribeQuery(email, "forged"), "", oneClick, "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusBadRequest || r.errorCode() != "invalid_token" {
		t.Errorf("one-click with a bad token = %d %s", r.status, r.body)
	}
	if yes, _ := h.db.IsUnsubscribed(t.Context(), email); yes {
		t.Fatal("a bad token unsubscribed the address")
	}
	r = h.do("POST", unsubscribeQuery(email, mail.UnsubscribeToken(secret, email)), "", oneClick,
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Errorf("one-click = %d %s", r.status, r.body)
	}
	if yes, err := h.db.IsUnsubscribed(t.Context(), email); err != nil || !yes {
		t.Errorf("after one-click IsUnsubscribed = %v, %v", yes, err)
	}
}
