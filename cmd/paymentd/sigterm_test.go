package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// buildBinary builds paymentd once for tests that run it as a process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "paymentd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build paymentd: %v\n%s", err, out)
	}
	return bin
}

// slowSendGrid accepts mail after a delay and counts sends per idempotency key.
type slowSendGrid struct {
	mu    sync.Mutex
	sends map[string]int
}

func (s *slowSendGrid) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		CustomArgs map[string]string `json:"custom_args"`
	}
	data, _ := io.ReadAll(r.Body)
	json.Unmarshal(data, &body)
	time.Sleep(15 * time.Millisecond) // a slow provider, so SIGTERM lands mid-run
	s.mu.Lock()
	s.sends[body.CustomArgs["idempotency_key"]]++
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *slowSendGrid) counts() (keys, total, maxPerKey int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.sends {
		total += n
		maxPerKey = max(maxPerKey, n)
	}
	return len(s.sends), total, maxPerKey
}

func TestSIGTERMDuringFiveHundredStepsThenRestartFinishesEachOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	ctx := context.Background()
	sg := &slowSendGrid{sends: map[string]int{}}
	srv := httptest.NewServer(sg)
	defer srv.Close()

	const n = 500
	eng := steps.New(db, clock.Real{}, slog.New(slog.DiscardHandler), steps.Config{}, nil)
	now := time.Now().UTC()
	for i := range n {
		id, email := uuid.NewString(), fmt.Sprintf("buyer%d@example.com", i)
		user := fmt.Sprintf("u%d", i)
		if _, err := db.InsertPurchase(ctx, store.Purchase{ID: id, UserID: &user, Email: &email, ProductKey: "pro_one_time",
			Quantity: 1, Status: store.PurchaseCompleted, StripeSessionID: "cs_test_" + id, AmountTotal: 19900,
			Currency: "usd", AccessState: store.AccessNone, CreatedAt: now, CompletedAt: &now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase",
			Steps: []steps.Step{{Name: fulfillment.StepConfirmation}}}); err != nil {
			t.Fatal(err)
		}
	}

	environ := append(os.Environ(), "DATABASE_URL="+dbURL, "SENDGRID_API_KEY=SG.test", "SENDGRID_API_BASE="+srv.URL,
		"STRIPE_API_BASE=http://127.0.0.1:1", // Stripe unreachable: the daemon serves and works anyway
		"PAYMENTD_HTTP_ADDR=127.0.0.1:0", "PAYMENTD_ADMIN_ADDR=127.0.0.1:0", "PAYMENTD_LOG_LEVEL=warn")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	base, _ := os.ReadFile("../../config.yaml")
	conf := strings.NewReplacer("provider: outbox", "provider: sendgrid", "workers: 16", "workers: 4",
		"shutdown_grace: 15s", "shutdown_grace: 5s").Replace(string(base))
	os.WriteFile(cfg, []byte(conf), 0o600)
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "serve", "--roles", "worker", "--config", cfg)
		cmd.Env = environ
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	done := func() int {
		var c int
		db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE status = 'done'`).Scan(&c)
		return c
	}
	waitFor := func(what string, deadline time.Duration, cond func() bool) {
		t.Helper()
		end := time.Now().Add(deadline)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	cmd, logs := start()
	waitFor("the first steps to finish", time.Minute, func() bool { return done() >= 20 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	signaled := time.Now()
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("paymentd exited with %v:\n%s", err, logs)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("paymentd did not exit within the deadline after SIGTERM:\n%s", logs)
	}
	t.Logf("exited %s after SIGTERM with %d of %d steps done", time.Since(signaled).Round(time.Millisecond), done(), n)
	if d := done(); d >= n {
		t.Fatalf("all %d steps finished before SIGTERM landed; the test proves nothing", d)
	}
	var running int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE status = 'running'`).Scan(&running)
	if running != 0 {
		t.Errorf("%d steps left running after a clean shutdown", running)
	}

	cmd, logs = start()
	defer cmd.Process.Kill()
	waitFor("every step to finish after the restart", 2*time.Minute, func() bool { return done() == n })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("second run exited with %v:\n%s", err, logs)
	}
	keys, total, maxPerKey := sg.counts()
	if keys != n || total != n || maxPerKey != 1 {
		t.Errorf("SendGrid got %d sends for %d keys (at most %d per key); want each of %d emails once", total, keys, maxPerKey, n)
	}
	var multi int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE attempts <> 1`).Scan(&multi)
	if multi != 0 {
		t.Errorf("%d steps were attempted other than once", multi)
	}
}
