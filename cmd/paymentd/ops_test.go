package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// runCLI runs a paymentd command line against dbURL and returns its exit
// code and output.
func runCLI(t *testing.T, dbURL string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return dbURL
		}
		return ""
	}}
	code := run(context.Background(), append(args, "--config", "../../config.yaml"), env)
	return code, stdout.String(), stderr.String()
}

func TestPurchasesShowAndRetryAFailedStep(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	ctx := context.Background()
	clk := clock.NewFake(time.Now().UTC())
	id := uuid.NewString()
	email := "ada@example.com"
	if _, err := db.InsertPurchase(ctx, store.Purchase{ID: id, Email: &email, ProductKey: "pro_one_time", Quantity: 1,
		Status: store.PurchasePending, StripeSessionID: "cs_test_ops", Currency: "usd", AccessState: store.AccessNone,
		CreatedAt: clk.Now(), UpdatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	githubDown := true
	eng := steps.New(db, clk, slog.New(slog.DiscardHandler), steps.Config{MaxAttempts: 2}, nil)
	eng.Register("grant_access", func(ctx context.Context, job *steps.Job) (any, error) {
		if githubDown {
			return nil, errors.New("github: 502 bad gateway")
		}
		return map[string]int{"invitation_id": 7}, nil
	})
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase", Steps: []steps.Step{{Name: "grant_access"}}})
	eng.RunDue(ctx)
	clk.Advance(time.Hour)
	eng.RunDue(ctx)

	code, out, errOut := runCLI(t, dbURL, "steps", "list", "--failed", "--json")
	var failed []store.Step
	if code != 0 || json.Unmarshal([]byte(out), &failed) != nil || len(failed) != 1 || failed[0].Name != "grant_access" {
		t.Fatalf("steps list --failed = %d %s %s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, dbURL, "steps", "list", "--failed"); code != 0 || !strings.Contains(out, "purchase "+id) {
		t.Errorf("steps list --failed (exit %d) does not name the step's subject:\n%s", code, out)
	}
	code, out, _ = runCLI(t, dbURL, "purchases", "show", email)
	for _, want := range []string{id, "grant_access", "failed", "2/2", "github: 502 bad gateway", "operator_alert"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("purchases show (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if code, _, _ := runCLI(t, dbURL, "purchases", "show", "cs_test_missing"); code != exitNotFound {
		t.Errorf("unknown session: exit %d, want %d", code, exitNotFound)
	}

	githubDown = false
	code, out, errOut = runCLI(t, dbURL, "steps", "retry", fmt.Sprint(failed[0].ID))
	if code != 0 || !strings.Contains(out, "retrying 1 step") || !strings.Contains(out, "grant_access of purchase "+id) {
		t.Fatalf("steps retry = %d %s %s", code, out, errOut)
	}
	if n, err := eng.RunDue(ctx); err != nil || n != 1 {
		t.Fatalf("RunDue after retry = %d, %v", n, err)
	}
	code, out, _ = runCLI(t, dbURL, "purchases", "show", id, "--json")
	var views []purchaseView
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil {
		t.Fatalf("purchases show --json = %d %s", code, out)
	}
	for _, s := range views[0].Steps {
		var result struct {
			InvitationID int `json:"invitation_id"`
		}
		_ = json.Unmarshal(s.Result, &result)
		if s.Name == "grant_access" && (s.Status != store.StepDone || result.InvitationID != 7) {
			t.Errorf("grant_access after retry = %s %s", s.Status, s.Result)
		}
	}
	if code, _, errOut := runCLI(t, dbURL, "steps", "retry", fmt.Sprint(failed[0].ID)); code != exitUsage || !strings.Contains(errOut, "only failed steps") {
		t.Errorf("retrying a done step: exit %d %s", code, errOut)
	}
}

func TestInvalidConfigExitsTwoListingEveryProblem(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	env := &cliEnv{stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(k string) string {
		return map[string]string{"STRIPE_SECRET_KEY": "pk_live_nope", "PAYMENTD_HTTP_ADDR": ""}[k]
	}}
	code := run(context.Background(), []string{"migrate", "--config", "testdata/bad.yaml"}, env)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"steps.workers", "stripe.secret_key", "reconcile.shcedule: unknown key"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestServeRefusesABehindDatabase(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, pgtest.EmptyURL(t), "serve")
	if code != exitSchema || !strings.Contains(errOut, "run `paymentd migrate`") {
		t.Fatalf("serve on an unmigrated database: exit %d, %s", code, errOut)
	}
}
