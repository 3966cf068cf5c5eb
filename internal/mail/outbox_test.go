package mail_test

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/mail"
)

func TestOutboxWritesEMLAndHTML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox") // created by Send
	now := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	ob := mail.NewOutbox(dir, func() time.Time { return now })
	m := render(t, mail.FollowupOnboarding)

	if err := ob.Send(context.Background(), m, "purchase-1/followup_onboarding"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	emls, err := ob.List()
	if err != nil || len(emls) != 1 {
		t.Fatalf("List = %v, %v", emls, err)
	}
	base := strings.TrimSuffix(filepath.Base(emls[0]), ".eml")
	if !strings.HasPrefix(base, "20250314T092653.000000000Z-followup_onboarding-") {
		t.Errorf("file name %q", base)
	}

	html, err := os.ReadFile(filepath.Join(dir, base+".html"))
	if err != nil || string(html) != m.HTML {
		t.Errorf(".html file missing or differs: %v", err)
	}

	raw, err := os.ReadFile(emls[0])
	if err != nil {
		t.Fatal(err)
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse .eml: %v", err)
	}
	h := msg.Header
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(h.Get("Subject"))
	for k, want := range map[string]string{
		"From":                       `"Sam at Acme" <hello@acme.test>`,
		"To":                         "ada@example.com",
		"Reply-To":                   "support@acme.test",
		"List-Unsubscribe":           m.Headers["List-Unsubscribe"],
		"List-Unsubscribe-Post":      "List-Unsubscribe=One-Click",
		"Mime-Version":               "1.0",
		"X-Paymentd-Template":        mail.FollowupOnboarding,
		"X-Paymentd-Idempotency-Key": "purchase-1/followup_onboarding",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if subject != m.Subject {
		t.Errorf("Subject = %q, want %q", subject, m.Subject)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date = %v, %v", d, err)
	}

	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q", h.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	var bodies []string
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, p.Header.Get("Content-Type"))
		bodies = append(bodies, strings.ReplaceAll(string(b), "\r\n", "\n"))
	}
	if len(parts) != 2 || !strings.HasPrefix(parts[0], "text/plain") || !strings.HasPrefix(parts[1], "text/html") {
		t.Fatalf("parts = %v", parts)
	}
	if bodies[0] != m.Text || bodies[1] != m.HTML {
		t.Error("decoded parts differ from the message")
	}
}

func TestOutboxIdempotent(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ob := mail.NewOutbox(dir, func() time.Time { clock = clock.Add(time.Second); return clock })
	m := render(t, mail.PurchaseConfirmation)
	for range 3 {
		if err := ob.Send(context.Background(), m, "purchase-1/confirmation"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Send(context.Background(), m, "purchase-2/confirmation"); err != nil {
		t.Fatal(err)
	}
	emls, _ := ob.List()
	if len(emls) != 2 {
		t.Errorf("%d .eml files, want 2: %v", len(emls), emls)
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(all) != 4 {
		t.Errorf("%d files, want 2 .eml and 2 .html: %v", len(all), all)
	}
	// A fresh Outbox over the same directory still sees the first send.
	again := mail.NewOutbox(dir, nil)
	if err := again.Send(context.Background(), m, "purchase-1/confirmation"); err != nil {
		t.Fatal(err)
	}
	if emls, _ := again.List(); len(emls) != 2 {
		t.Errorf("restarted outbox wrote a duplicate: %v", emls)
	}
}

func TestOutboxEmptyKeyDedupsByContent(t *testing.T) {
	ob := mail.NewOutbox(t.TempDir(), nil)
	m := render(t, mail.AdminPurchase)
	for range 2 {
		if err := ob.Send(context.Background(), m, ""); err != nil {
			t.Fatal(err)
		}
	}
	m.Subject += " (again)"
	if err := ob.Send(context.Background(), m, ""); err != nil {
		t.Fatal(err)
	}
	if emls, _ := ob.List(); len(emls) != 2 {
		t.Errorf("%d .eml files, want 2", len(emls))
	}
}

func TestOutboxListEmpty(t *testing.T) {
	emls, err := mail.NewOutbox(filepath.Join(t.TempDir(), "none"), nil).List()
	if err != nil || len(emls) != 0 {
		t.Errorf("List = %v, %v", emls, err)
	}
}

func TestSendersImplementSender(t *testing.T) {
	var _ mail.Sender = (*mail.SendGrid)(nil)
	var _ mail.Sender = (*mail.Outbox)(nil)
}
