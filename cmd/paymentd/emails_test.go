package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
)

func TestEmailsPreviewWritesAPagePerTemplateAndAnIndex(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "previews")
	var stdout, stderr bytes.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := run(context.Background(), []string{"emails", "preview", "--out", out, "--config", "../../config.yaml"}, env)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	index, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range mail.Names() {
		page, err := os.ReadFile(filepath.Join(out, name+".html"))
		if err != nil {
			t.Errorf("no page for %s: %v", name, err)
			continue
		}
		if !bytes.Contains(page, []byte("Acme Pro")) {
			t.Errorf("%s.html does not show the configured brand", name)
		}
		if !bytes.Contains(index, []byte(`href="`+name+`.html"`)) {
			t.Errorf("index.html does not link %s", name)
		}
		if !strings.Contains(stdout.String(), filepath.Join(out, name+".html")) {
			t.Errorf("stdout does not list %s.html", name)
		}
	}
	entries, _ := os.ReadDir(out)
	if want := len(mail.Names()) + 1; len(entries) != want {
		t.Errorf("%d files written, want %d", len(entries), want)
	}
}

func TestEmailsPreviewNeedsAnOutputDirectory(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"emails"}, {"emails", "preview"}, {"emails", "send"}} {
		var stderr bytes.Buffer
		env := &cliEnv{stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
		if code := run(context.Background(), append(args, "--config", "../../config.yaml"), env); code != exitUsage ||
			!strings.Contains(stderr.String(), "emails preview --out DIR") {
			t.Errorf("%v: exit %d, %s", args, code, stderr.String())
		}
	}
}
