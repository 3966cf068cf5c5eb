package sendgridfake_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/sendgridfake"
)

func TestFakeCountsSendsAndRepeats(t *testing.T) {
	f := sendgridfake.New()
	srv := httptest.NewServer(f)
	defer srv.Close()
	send := func(body string) int {
		res, err := http.Post(srv.URL+"/v3/mail/send", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	msg := func(to, template, key string) string {
		return `{"personalizations":[{"to":[{"email":"` + to + `"}]}],"categories":["` + template +
			`"],"custom_args":{"idempotency_key":"` + key + `"}}`
	}
	for _, c := range []struct {
		body string
		want int
	}{
		{msg("a@example.com", "purchase_confirmation", "k1"), http.StatusAccepted},
		{msg("a@example.com", "purchase_confirmation", "k1"), http.StatusAccepted}, // a retry after a lost answer
		{msg("a@example.com", "admin_purchase", "k2"), http.StatusAccepted},
		{`{"personalizations":[{"to":[{"email":"b@example.com"}]}],"categories":["x"]}`, http.StatusBadRequest},
		{`not json`, http.StatusBadRequest},
	} {
		if got := send(c.body); got != c.want {
			t.Errorf("%s: %d, want %d", c.body, got, c.want)
		}
	}
	if f.Count("a@example.com", "purchase_confirmation") != 2 || f.Count("b@example.com", "x") != 0 ||
		f.Duplicates() != 1 || f.First("a@example.com", "purchase_confirmation").IsZero() ||
		!f.First("a@example.com", "nothing").IsZero() {
		t.Errorf("counts %d/%d, duplicates %d", f.Count("a@example.com", "purchase_confirmation"),
			f.Count("b@example.com", "x"), f.Duplicates())
	}
}
