package httpapi_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
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

// formActionRE finds the action of the confirmation page's form.
var formActionRE = regexp.MustCompile(`<form method="post" action="([^"]+)">`)

func TestUnsubscribeLinkAsksAndOnlyPostChangesAnything(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := []byte(h.cfg.Email.UnsubscribeSecret)
	email := "Ada@Example.com"

	for _, c := range []struct{ name, token string }{
		{"a token for another address", mail.UnsubscribeToken(secret, "someone-else@example.com")},
		{"no token", ""},
	} {
		for _, method := range []string{"GET", "POST"} {
			r := h.do(method, unsubscribeQuery(email, c.token), "", nil)
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "This link is not valid") {
				t.Errorf("%s %s = %d %s; want 400 and the invalid-link page", method, c.name, r.status, r.body)
			}
		}
	}

	// A mail scanner, a link preview or a person opens the link: a page
	// asks for confirmation, and nothing changes.
	link := unsubscribeQuery(email, mail.UnsubscribeToken(secret, email))
	for range 2 {
		r := h.do("GET", link, "", nil)
		page := html.UnescapeString(string(r.body))
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page, "Unsubscribe from marketing email?") || !strings.Contains(page, email) {
			t.Fatalf("GET of a good link = %d %s %q", r.status, r.header.Get("Content-Type"), page)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("page headers %v", r.header)
		}
	}
	if yes, err := h.db.IsUnsubscribed(t.Context(), email); err != nil || yes {
		t.Fatalf("GET unsubscribed the address (%v, %v)", yes, err)
	}

	// Pressing the page's button posts its form.
	r := h.do("GET", link, "", nil)
	m := formActionRE.FindStringSubmatch(string(r.body))
	if m == nil {
		t.Fatalf("the page has no form posting to /unsubscribe: %s", r.body)
	}
	action := html.UnescapeString(m[1])
	if !strings.HasPrefix(action, "/unsubscribe?") {
		t.Fatalf("form action %q", action)
	}
	r = h.do("POST", action, "", "", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK || !strings.Contains(html.UnescapeString(string(r.body)), "You're unsubscribed") {
		t.Errorf("posting the page's form = %d %s", r.status, r.body)
	}
	if yes, err := h.db.IsUnsubscribed(t.Context(), "ada@example.com"); err != nil || !yes {
		t.Errorf("after posting the form IsUnsubscribed = %v, %v", yes, err)
	}
}

func TestUnsubscribeOneClick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := []byte(h.cfg.Email.UnsubscribeSecret)
	email := "grace@example.com"
	oneClick := "List-Unsubscribe=One-Click"

	r := h.do("POST", unsubscribeQuery(email, "forged"), "", oneClick, "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusBadRequest {
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
