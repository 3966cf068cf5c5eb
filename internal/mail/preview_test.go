package mail_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

func TestPreview(t *testing.T) {
	r := newRenderer(t)
	dir := filepath.Join(t.TempDir(), "preview")
	files, err := mail.Preview(r, dir)
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	names := mail.Names()
	if len(files) != len(names)+1 || filepath.Base(files[len(files)-1]) != "index.html" {
		t.Fatalf("files = %v", files)
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		if files[i] != filepath.Join(dir, name+".html") {
			t.Errorf("files[%d] = %q", i, files[i])
		}
		page, err := os.ReadFile(files[i])
		if err != nil || !strings.Contains(string(page), "<table") {
			t.Errorf("%s: page missing or not HTML: %v", name, err)
		}
		m, err := r.Render(name, mail.SampleData(name, "usd"))
		if err != nil {
			t.Fatal(err)
		}
		if string(page) != m.HTML {
			t.Errorf("%s: page differs from Render", name)
		}
		if !strings.Contains(string(index), `href="`+name+`.html"`) {
			t.Errorf("index does not link %s", name)
		}
		subject := strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;").Replace(m.Subject)
		if !strings.Contains(string(index), subject) {
			t.Errorf("index lacks subject %q", m.Subject)
		}
	}
}

func TestPreviewWithoutAdminEmail(t *testing.T) {
	b := testBrand()
	b.AdminEmail = ""
	r, err := mail.NewRenderer(b, "", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mail.Preview(r, t.TempDir()); err != nil {
		t.Errorf("Preview: %v", err)
	}
}
