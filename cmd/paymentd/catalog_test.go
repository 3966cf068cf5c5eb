package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/stripeemu"
)

// runCatalogCLI runs a command line against the Stripe emulator at apiBase.
func runCatalogCLI(t *testing.T, apiBase string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(k string) string {
		if k == "STRIPE_API_BASE" {
			return apiBase
		}
		return ""
	}}
	code := run(context.Background(), append(args, "--config", "../../config.yaml"), env)
	return code, stdout.String(), stderr.String()
}

func TestCatalogSyncCommand(t *testing.T) {
	t.Parallel()
	emu := stripeemu.New(stripeemu.Options{})
	srv := httptest.NewServer(emu)
	defer srv.Close()

	code, out, errOut := runCatalogCLI(t, srv.URL, "catalog", "sync", "--dry-run")
	if code != exitOK || !strings.Contains(out, "pro_one_time") || !strings.Contains(out, "would be created") {
		t.Fatalf("catalog sync --dry-run = %d\n%s%s", code, out, errOut)
	}
	if w := emu.WriteRequests(); len(w) != 0 {
		t.Fatalf("--dry-run wrote to Stripe: %+v", w)
	}
	code, out, errOut = runCatalogCLI(t, srv.URL, "catalog", "sync")
	if code != exitOK || !strings.Contains(out, "pro_one_time") || !strings.Contains(out, "created (price price_") {
		t.Fatalf("catalog sync = %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCatalogCLI(t, srv.URL, "catalog", "sync", "--json")
	var report catalog.Report
	if code != exitOK || json.Unmarshal([]byte(out), &report) != nil || report.Changed() || len(report.Products) == 0 {
		t.Errorf("second catalog sync --json = %d %s; want every product unchanged", code, out)
	}
	if code, _, _ := runCatalogCLI(t, srv.URL, "catalog"); code != exitUsage {
		t.Errorf("catalog without sync: exit %d, want %d", code, exitUsage)
	}
}
