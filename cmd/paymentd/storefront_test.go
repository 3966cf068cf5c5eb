package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/pgtest"
)

// The storefront lists the outbox newest first, with decoded subjects,
// serves each email sandboxed, and nothing outside the outbox.
func TestStorefrontPageAndOutbox(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("../../config.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	outbox := mail.NewOutbox(dir, func() time.Time { return now })
	for i, subject := range []string{"Your receipt from Acme – thank you", "Your access is ready"} {
		now = now.Add(time.Minute)
		m := mail.Message{From: "hello@acme.test", To: "buyer@example.com", Subject: subject, HTML: "<p>" + subject + "</p>",
			Text: subject, Category: []string{"purchase_confirmation", "access_granted"}[i]}
		if err := outbox.Send(context.Background(), m, "key-"+subject); err != nil {
			t.Fatal(err)
		}
	}
	front, err := newStorefront(cfg, "the-dev-token", dir)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(pgtest.New(t), clock.Real{}, newLogger(cfg.Log, &syncBuffer{}), nil)
	front.mount(api)
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	code, page := get(t, srv.URL+"/")
	if code != http.StatusOK || !strings.Contains(page, `const token = "the-dev-token";`) ||
		!strings.Contains(page, `data-product="pro_one_time"`) || !strings.Contains(page, "Acme Pro · $199.00") {
		t.Fatalf("storefront = %d\n%s", code, page)
	}
	// A subscription product: its prices to choose from, its trial, a
	// Subscribe button; and the lists and the portal link.
	for _, want := range []string{`data-product="pro_subscription"`, `<option value="pro_monthly">$29.00 / month</option>`,
		`<option value="pro_yearly">$290.00 / year</option>`, "14-day free trial", "Subscribe to Acme Pro Cloud",
		`id="subscriptions"`, `id="credits"`, `id="portal"`, `api("/api/billing/portal"`, `api("/api/subscriptions")`,
		`api("/api/credits?limit=5")`} {
		if !strings.Contains(page, want) {
			t.Errorf("the storefront lacks %q", want)
		}
	}
	if strings.Contains(page, "Acme Pro Cloud · ") {
		t.Error("a subscription product shows a one-time price")
	}
	code, body := get(t, srv.URL+"/dev/outbox")
	var list struct{ Emails []outboxEmail }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Emails) != 2 {
		t.Fatalf("outbox = %d %s", code, body)
	}
	first := list.Emails[0]
	if first.Subject != "Your access is ready" || first.Template != "access_granted" || first.To != "buyer@example.com" ||
		list.Emails[1].Subject != "Your receipt from Acme – thank you" {
		t.Errorf("outbox list = %+v", list.Emails)
	}
	resp, err := http.Get(srv.URL + first.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox;") {
		t.Errorf("email %s = %d, CSP %q", first.URL, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, bad := range []string{"/dev/outbox/..%2F..%2Fconfig.yaml", "/dev/outbox/x.html",
		"/dev/outbox/" + strings.TrimSuffix(first.Name, "") + ".eml"} {
		if code, _ := get(t, srv.URL+bad); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", bad, code)
		}
	}
}
