package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/console"
	"github.com/paymentd/paymentd/internal/pgtest"
)

// The console is served on the admin listener and nowhere on the public
// one; without a session it sends the browser to its sign-in page.
func TestConsoleIsOnTheAdminListenerOnly(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "STRIPE_API_BASE": "http://127.0.0.1:1",
		"PAYMENTD_HTTP_ADDR": "127.0.0.1:0", "PAYMENTD_ADMIN_ADDR": "127.0.0.1:0", "PAYMENTD_LOG_LEVEL": "warn"}
	cfg, err := config.Load("../../config.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	hash, err := console.HashPassword("an operator password")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Console.Operators = []config.Operator{{Name: "alice", PasswordHash: hash}}

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, &cliEnv{stdout: io.Discard, stderr: &logs, getenv: func(string) string { return "" }}, cfg,
			roles{"api": true}, hooks{ready: func(l listeners, _ *app) { up <- l }})
	}()
	var l listeners
	select {
	case l = <-up:
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve not ready within 30s")
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/console/", "/console/login", "/console"} {
		resp, err := noRedirect.Get("http://" + l.api + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public %s = %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := noRedirect.Get("http://" + l.admin + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
		t.Errorf("admin /console/ = %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, body := get(t, "http://"+l.admin+"/console/login"); code != http.StatusOK || !strings.Contains(body, `name="password"`) {
		t.Errorf("admin sign-in page = %d", code)
	}
	if code, _ := get(t, "http://"+l.admin+"/metrics"); code != http.StatusOK {
		t.Errorf("admin /metrics beside the console = %d", code)
	}
	if strings.Contains(logs.String(), hash) {
		t.Error("the log shows the operator's hash")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
