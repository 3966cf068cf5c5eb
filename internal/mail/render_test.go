package mail_test

import (
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenText is the .txt golden: the envelope headers, a blank line, then
// the plain-text part, so subject and headers are pinned too.
func goldenText(m mail.Message) string {
	var b strings.Builder
	b.WriteString("From: " + m.From + "\n")
	b.WriteString("To: " + m.To + "\n")
	if m.ReplyTo != "" {
		b.WriteString("Reply-To: " + m.ReplyTo + "\n")
	}
	b.WriteString("Subject: " + m.Subject + "\n")
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + ": " + m.Headers[k] + "\n")
	}
	b.WriteString("\n")
	b.WriteString(m.Text)
	return b.String()
}

func TestGolden(t *testing.T) {
	r := newRenderer(t)
	dir := filepath.Join("testdata", "golden")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range mail.Names() {
		for _, cur := range []string{"usd", "eur", "jpy"} {
			t.Run(name+"."+cur, func(t *testing.T) {
				m, err := r.Render(name, mail.SampleData(name, cur))
				if err != nil {
					t.Fatalf("Render: %v", err)
				}
				for ext, got := range map[string]string{".html": m.HTML, ".txt": goldenText(m)} {
					path := filepath.Join(dir, name+"."+cur+ext)
					if *update {
						if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
							t.Fatal(err)
						}
						continue
					}
					want, err := os.ReadFile(path)
					if err != nil {
						t.Fatalf("read golden (run go test ./internal/mail -update): %v", err)
					}
					if got != string(want) {
						t.Errorf("%s differs from the rendered output; run go test ./internal/mail -update and review the diff\ngot:\n%s", path, got)
					}
				}
			})
		}
	}
}

func TestRenderAddressingAndAmounts(t *testing.T) {
	r := newRenderer(t)
	tests := []struct {
		name     string
		cur      string
		to       string
		contains []string
	}{
		{mail.PurchaseConfirmation, "usd", "ada@example.com", []string{"$199.00", "pur_01HZX4K7V9Q2M3N8B6C5D4E3F2"}},
		{mail.AdminPurchase, "eur", "founder@acme.test", []string{"€199.00", "ada@example.com", "cs_test_a1B2c3D4e5F6g7H8i9J0"}},
		{mail.AccessGranted, "usd", "ada@example.com", []string{"https://github.com/acme-labs/starter-kit", "@adalovelace"}},
		{mail.RefundFull, "usd", "ada@example.com", []string{"$199.00", "access to Acme Starter Kit has been removed"}},
		{mail.RefundPartial, "usd", "ada@example.com", []string{"$50.00", "$199.00", "stays exactly as it is"}},
		{mail.RefundPartial, "jpy", "ada@example.com", []string{"¥5,000", "¥19,900"}},
		{mail.AdminRefund, "usd", "founder@acme.test", []string{"Full refund", "revoked"}},
		{mail.AbandonedCheckout, "usd", "ada@example.com", []string{"https://checkout.stripe.com/c/pay/cs_test_recover_b1C2d3E4"}},
		{mail.AsyncPaymentFailed, "usd", "ada@example.com", []string{"https://acme.test/pricing", "$199.00"}},
		{mail.OperatorAlert, "usd", "founder@acme.test", []string{"grant_access", "502 Bad Gateway", "pur_01HZX4K7V9Q2M3N8B6C5D4E3F2"}},
		{mail.DisputeOpened, "usd", "founder@acme.test", []string{"dp_1PqR5sT7uV9wX1yZ", "fraudulent"}},
		{mail.RefundReversed, "usd", "founder@acme.test", []string{"restored", "expired_or_canceled_card"}},
		{mail.CreditsLow, "usd", "ada@example.com", []string{"42 credits", "below 50"}},
	}
	for _, tt := range tests {
		m, err := r.Render(tt.name, mail.SampleData(tt.name, tt.cur))
		if err != nil {
			t.Fatalf("Render(%s): %v", tt.name, err)
		}
		if m.To != tt.to {
			t.Errorf("%s: To = %q, want %q", tt.name, m.To, tt.to)
		}
		if m.From != `"Sam at Acme" <hello@acme.test>` {
			t.Errorf("%s: From = %q", tt.name, m.From)
		}
		if m.Category != tt.name || m.Subject == "" || strings.ContainsAny(m.Subject, "\r\n") {
			t.Errorf("%s: Category %q, Subject %q", tt.name, m.Category, m.Subject)
		}
		for _, s := range tt.contains {
			if !strings.Contains(m.Text, s) {
				t.Errorf("%s %s: text lacks %q", tt.name, tt.cur, s)
			}
			if !strings.Contains(m.HTML, htmlEscape(s)) {
				t.Errorf("%s %s: HTML lacks %q", tt.name, tt.cur, s)
			}
		}
	}
}

// htmlEscape escapes what html/template escapes in the strings above.
func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "'", "&#39;").Replace(s)
}

func TestRenderAdminRefundPartialKept(t *testing.T) {
	r := newRenderer(t)
	d := mail.SampleData(mail.AdminRefund, "usd")
	d.RefundedAmount, d.AccessRevoked = 5000, false
	m, err := r.Render(mail.AdminRefund, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Subject, "Partial refund: $50.00") {
		t.Errorf("Subject = %q", m.Subject)
	}
	if !strings.Contains(m.Text, "Their access was kept.") {
		t.Errorf("text does not say access was kept:\n%s", m.Text)
	}
}

func TestRenderAbandonedCheckoutFallsBackToPricing(t *testing.T) {
	r := newRenderer(t)
	d := mail.SampleData(mail.AbandonedCheckout, "usd")
	d.RecoveryURL = ""
	m, err := r.Render(mail.AbandonedCheckout, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.HTML, `href="https://acme.test/pricing"`) || !strings.Contains(m.HTML, "See pricing") {
		t.Errorf("HTML does not link to pricing:\n%s", m.HTML)
	}
}

func TestRenderMarketingUnsubscribe(t *testing.T) {
	r := newRenderer(t)
	for _, name := range mail.Names() {
		m, err := r.Render(name, mail.SampleData(name, "usd"))
		if err != nil {
			t.Fatal(err)
		}
		marketing := strings.HasPrefix(name, "followup_") || name == mail.AbandonedCheckout
		if m.Marketing != marketing || mail.IsMarketing(name) != marketing {
			t.Errorf("%s: Marketing = %v, IsMarketing = %v, want %v", name, m.Marketing, mail.IsMarketing(name), marketing)
		}
		if !marketing {
			if len(m.Headers) != 0 || strings.Contains(m.Text, "/unsubscribe") {
				t.Errorf("%s: transactional mail has unsubscribe headers or link", name)
			}
			continue
		}
		lu := m.Headers["List-Unsubscribe"]
		if !strings.HasPrefix(lu, "<") || !strings.HasSuffix(lu, ">") {
			t.Fatalf("%s: List-Unsubscribe = %q", name, lu)
		}
		if got := m.Headers["List-Unsubscribe-Post"]; got != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post = %q", name, got)
		}
		raw := strings.Trim(lu, "<>")
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme != "https" || u.Host != "pay.acme.test" || u.Path != "/unsubscribe" {
			t.Errorf("%s: unsubscribe URL %q", name, raw)
		}
		email, token := u.Query().Get("email"), u.Query().Get("token")
		if email != "ada@example.com" || !mail.VerifyUnsubscribe(testSecret, email, token) {
			t.Errorf("%s: token %q for %q does not verify", name, token, email)
		}
		if !strings.Contains(m.Text, raw) {
			t.Errorf("%s: text lacks the unsubscribe link", name)
		}
		if !strings.Contains(m.HTML, strings.ReplaceAll(raw, "&", "&amp;")) {
			t.Errorf("%s: HTML lacks the unsubscribe link", name)
		}
	}
}

func TestRenderErrorsArePermanent(t *testing.T) {
	r := newRenderer(t)
	if _, err := r.Render("no_such_template", mail.Data{}); !steps.IsPermanent(err) {
		t.Errorf("unknown template: err = %v, want permanent", err)
	}
	d := mail.SampleData(mail.PurchaseConfirmation, "usd")
	d.CustomerEmail = ""
	if _, err := r.Render(mail.PurchaseConfirmation, d); !steps.IsPermanent(err) {
		t.Errorf("no customer email: err = %v, want permanent", err)
	}
	d.CustomerEmail = "not an address\r\nBcc: x@evil.test"
	if _, err := r.Render(mail.PurchaseConfirmation, d); !steps.IsPermanent(err) {
		t.Errorf("bad customer email: err = %v, want permanent", err)
	}

	b := testBrand()
	b.AdminEmail = ""
	r2, err := mail.NewRenderer(b, "", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Render(mail.OperatorAlert, mail.SampleData(mail.OperatorAlert, "usd")); !steps.IsPermanent(err) {
		t.Errorf("no admin email: err = %v, want permanent", err)
	}
}

func TestRenderEscapesCustomerInput(t *testing.T) {
	r := newRenderer(t)
	d := mail.SampleData(mail.PurchaseConfirmation, "usd")
	d.CustomerName = `<script>alert(1)</script> Smith`
	m, err := r.Render(mail.PurchaseConfirmation, d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<script>") {
		t.Error("customer name was not escaped in HTML")
	}
}

func TestNewRendererValidatesBrand(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*mail.Brand)
		want   string
	}{
		{"no product", func(b *mail.Brand) { b.ProductName = "" }, "product name"},
		{"bad from", func(b *mail.Brand) { b.FromAddress = "nope" }, "from address"},
		{"no public URL", func(b *mail.Brand) { b.PublicURL = "" }, "public URL"},
		{"relative public URL", func(b *mail.Brand) { b.PublicURL = "/pay" }, "public URL"},
		{"bad colour", func(b *mail.Brand) { b.PrimaryColor = "red;background:url(x)" }, "primary colour"},
		{"bad logo", func(b *mail.Brand) { b.LogoURL = "javascript:alert(1)" }, "logo URL"},
	}
	for _, tt := range tests {
		b := testBrand()
		tt.mutate(&b)
		_, err := mail.NewRenderer(b, "", testSecret)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want mention of %q", tt.name, err, tt.want)
		}
	}
	if _, err := mail.NewRenderer(testBrand(), "", nil); err == nil {
		t.Error("empty unsubscribe secret accepted")
	}
}

func TestNewRendererDefaults(t *testing.T) {
	b := testBrand()
	b.FromName, b.PrimaryColor, b.BackgroundColor, b.TextColor, b.LogoURL = "", "", "", "", ""
	r, err := mail.NewRenderer(b, "", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Brand()
	if got.FromName != b.ProductName || got.PrimaryColor == "" || got.BackgroundColor == "" || got.TextColor == "" {
		t.Errorf("defaults not applied: %+v", got)
	}
	m, err := r.Render(mail.PurchaseConfirmation, mail.SampleData(mail.PurchaseConfirmation, "usd"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<img") || !strings.Contains(m.HTML, ">Acme Starter Kit</span>") {
		t.Error("without a logo the header should show the product name")
	}
}

func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("purchase_confirmation.subject.tmpl", "Receipt #{{.PurchaseID}}\n")
	write("purchase_confirmation.txt.tmpl", `{{define "body"}}Custom text for {{.CustomerEmail}}: {{money .Amount .Currency}}{{end}}`)
	write("README.md", "not a template, ignored")

	r, err := mail.NewRenderer(testBrand(), dir, testSecret)
	if err != nil {
		t.Fatalf("NewRenderer: %v", err)
	}
	m, err := r.Render(mail.PurchaseConfirmation, mail.SampleData(mail.PurchaseConfirmation, "eur"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Receipt #pur_01HZX4K7V9Q2M3N8B6C5D4E3F2" {
		t.Errorf("Subject = %q, want the override", m.Subject)
	}
	if !strings.HasPrefix(m.Text, "Custom text for ada@example.com: €199.00\n") {
		t.Errorf("Text = %q, want the override", m.Text)
	}
	if !strings.Contains(m.HTML, "Amount paid") {
		t.Error("HTML should still be the embedded template")
	}
	// Other templates are untouched.
	m, err = r.Render(mail.RefundFull, mail.SampleData(mail.RefundFull, "usd"))
	if err != nil || m.Subject != "Your refund for Acme Starter Kit has been processed" {
		t.Errorf("refund_full: %q, %v", m.Subject, err)
	}
}

func TestTemplateOverrideLayout(t *testing.T) {
	dir := t.TempDir()
	layout := `<html><body style="color:{{.Brand.TextColor}}">{{template "body" .}}</body></html>`
	if err := os.WriteFile(filepath.Join(dir, "layout.html.tmpl"), []byte(layout), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := mail.NewRenderer(testBrand(), dir, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Render(mail.AccessGranted, mail.SampleData(mail.AccessGranted, "usd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.HTML, `<html><body style="color:#111827">`) {
		t.Errorf("HTML does not use the override layout: %.80q", m.HTML)
	}
}

func TestTemplateOverrideErrors(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"parse error", "refund_full.html.tmpl", `{{define "body"}}{{if}}{{end}}`, "refund_full.html.tmpl"},
		{"unknown field", "admin_purchase.txt.tmpl", `{{define "body"}}{{.NoSuchField}}{{end}}`, "admin_purchase.txt.tmpl"},
		{"unknown function", "dispute_opened.subject.tmpl", `{{shout .DisputeID}}`, "dispute_opened.subject.tmpl"},
		{"no body", "access_granted.html.tmpl", `<p>forgot the define</p>`, "access_granted.html.tmpl"},
		{"empty subject", "operator_alert.subject.tmpl", `  `, "operator_alert.subject.tmpl"},
		{"broken layout", "layout.txt.tmpl", `{{template "body" .}`, "layout.txt.tmpl"},
		{"unknown file", "purchase_confirmaton.html.tmpl", `{{define "body"}}typo{{end}}`, "purchase_confirmaton.html.tmpl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := mail.NewRenderer(testBrand(), dir, testSecret)
			if err == nil {
				t.Fatal("NewRenderer accepted a broken override")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
	if _, err := mail.NewRenderer(testBrand(), filepath.Join(t.TempDir(), "missing"), testSecret); err == nil {
		t.Error("missing template dir accepted")
	}
}
