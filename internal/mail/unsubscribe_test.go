package mail_test

import (
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

func TestUnsubscribeToken(t *testing.T) {
	tok := mail.UnsubscribeToken(testSecret, "Ada@Example.com")
	if tok != mail.UnsubscribeToken(testSecret, " ada@example.com ") {
		t.Error("token depends on case or surrounding space")
	}
	if strings.ContainsAny(tok, "+/=") || len(tok) != 43 {
		t.Errorf("token %q is not unpadded base64url of 32 bytes", tok)
	}
	if !mail.VerifyUnsubscribe(testSecret, "ada@example.com", tok) {
		t.Error("valid token rejected")
	}
	for _, tt := range []struct {
		name   string
		secret []byte
		email  string
		token  string
	}{
		{"other email", testSecret, "eve@example.com", tok},
		{"other secret", []byte("other"), "ada@example.com", tok},
		{"empty secret", nil, "ada@example.com", mail.UnsubscribeToken(nil, "ada@example.com")},
		{"empty token", testSecret, "ada@example.com", ""},
		{"truncated token", testSecret, "ada@example.com", tok[:20]},
	} {
		if mail.VerifyUnsubscribe(tt.secret, tt.email, tt.token) {
			t.Errorf("%s: token accepted", tt.name)
		}
	}
}
