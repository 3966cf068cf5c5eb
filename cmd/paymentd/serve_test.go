package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
)

// syncBuffer is a buffer the daemon's logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The API replica stays ready while its reconciler is stalled (Stripe
// takes every pass's first request and never answers): readiness is the
// database and the schema only. /metrics and readiness details are on the
// admin listener, not the public one.
func TestAPIStaysReadyWhileTheReconcilerStalls(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	stripe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer stripe.Close()
	defer close(hang)

	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "STRIPE_API_BASE": stripe.URL,
		"PAYMENTD_HTTP_ADDR": "127.0.0.1:0", "PAYMENTD_ADMIN_ADDR": "127.0.0.1:0", "PAYMENTD_LOG_LEVEL": "warn"}
	cfg, err := config.Load("../../config.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Reconcile.Schedule = "@every 1s" // stalled after three intervals without a pass

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type started struct {
		l listeners
		a *app
	}
	up := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, &cliEnv{stdout: io.Discard, stderr: &logs, getenv: func(string) string { return "" }}, cfg,
			roles{"api": true, "reconciler": true}, hooks{ready: func(l listeners, a *app) { up <- started{l, a} }})
	}()
	var s started
	select {
	case s = <-up:
	case err := <-done:
		t.Fatalf("serve ended before it was ready: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready within 30s\n%s", logs.String())
	}
	public, admin := "http://"+s.l.api, "http://"+s.l.admin

	if code, body := get(t, public+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics = %d %.80s; want 404 (http.public_metrics is off)", code, body)
	}
	if code, body := get(t, admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, "paymentd_http_requests_total") {
		t.Errorf("admin /metrics = %d %.200s", code, body)
	}

	// Wait for the reconciler to know it is stalled.
	deadline := time.Now().Add(30 * time.Second)
	for s.a.rec.Stalled(time.Now()) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the reconciler never stalled\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get(t, public+"/readyz"); code != http.StatusOK || body != `{"status":"ready"}`+"\n" {
		t.Errorf("public /readyz with a stalled reconciler = %d %s; want 200 ready", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Errorf("admin /readyz with a stalled reconciler = %d %s; want 200", code, body)
	}
	if code, _ := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("admin /healthz = %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of its context ending")
	}
}
