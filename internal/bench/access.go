package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

const (
	driftPurchases    = 10_000
	driftInvitedEvery = 4  // one buyer in four has not accepted the invitation yet
	driftDrifted      = 10 // removed by hand, and refunded but still on GitHub: each
	githubPageSize    = 100
)

// benchAccessDrift measures one access drift pass over 10,000 paid
// purchases of a GitHub product on one repository: the GitHub requests it
// makes, against the fewest pages that list the repository's collaborators
// and invitations (100 per page), counted from the fake's own state.
func benchAccessDrift(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	clk := clock.NewFake(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	fake := githubfake.New(githubfake.Options{Owner: "acme", Repo: "pro"})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	gh, err := access.NewGitHub(access.GitHubOptions{Token: "ghp_bench", BaseURL: srv.URL, Owner: "acme", Repo: "pro",
		HTTPClient: srv.Client(), Clock: clk.Now})
	if err != nil {
		return nil, err
	}
	if err := seedDrift(ctx, db, fake, clk.Now()); err != nil {
		return nil, err
	}

	cfg := config.Defaults()
	cfg.Brand = config.Brand{ProductName: "Acme", FromAddress: "hello@acme.test", FromName: "Acme"}
	cfg.Email.UnsubscribeSecret = "bench-unsubscribe-secret"
	cfg.Products = []config.Product{{Key: "pro", Name: "Pro", Amount: 19900, Currency: "usd", Access: "github"}}
	outbox, err := os.MkdirTemp("", "paymentd-bench-outbox-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(outbox)
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		return nil, err
	}
	eng := steps.New(db, clk, env.log, steps.Config{}, nil)
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: eng, Clock: clk, Log: env.log, Config: cfg,
		Renderer: renderer, Mailer: mail.NewOutbox(outbox, clk.Now), GitHub: gh})
	if err != nil {
		return nil, err
	}
	rec := reconcile.New(reconcile.Options{DB: db, Fulfillment: ful, Clock: clk, Log: env.log, Products: cfg.Products,
		Access: gh})

	before := len(fake.Requests())
	t := time.Now()
	rep, err := rec.RunPass(ctx, "access", reconcile.AccessDrift)
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(t)
	calls := len(fake.Requests()) - before
	if !rep.Converged() {
		return nil, fmt.Errorf("the drift pass left %d errors, e.g. %+v", len(rep.Errors), rep.Errors[0])
	}
	if n := rep.Counts["access_repaired"]; n != 2*driftDrifted {
		return nil, fmt.Errorf("the drift pass repaired %d purchases, want %d", n, 2*driftDrifted)
	}
	collaborators, invitations := len(fake.Collaborators()), len(fake.Invitations())
	minimum := pages(collaborators) + pages(invitations)
	return []Result{{
		Name: "access_drift_github_calls", Value: float64(calls), Unit: "requests", Baseline: float64(minimum),
		Ratio: float64(calls) / float64(minimum), Target: float64(minimum),
		Note: fmt.Sprintf("one drift pass over %d purchases (%d collaborators, %d invitations, %d per page; %d repairs "+
			"scheduled) in %s; baseline: the minimum number of pages; checking each purchase took 2 requests",
			driftPurchases, collaborators, invitations, githubPageSize, rep.Counts["access_repaired"],
			elapsed.Round(time.Millisecond)),
	}}, nil
}

// pages is how many pages of 100 list n entries; an empty list is one.
func pages(n int) int { return max(1, (n+githubPageSize-1)/githubPageSize) }

// seedDrift records driftPurchases paid purchases, each granted to its own
// GitHub account, and the repository as GitHub would have it: most buyers
// collaborators, one in four still invited. Some have drifted: removed by
// hand while paid for, or refunded and still on GitHub.
func seedDrift(ctx context.Context, db *store.DB, fake *githubfake.Fake, now time.Time) error {
	const perTx = 1000
	for start := 0; start < driftPurchases; start += perTx {
		err := db.InTx(ctx, func(q *store.Queries) error {
			for i := start; i < min(start+perTx, driftPurchases); i++ {
				login := fmt.Sprintf("buyer%05d", i)
				status := store.PurchaseCompleted
				accessState := store.AccessGranted
				switch {
				case i < driftDrifted: // removed by hand
				case i < 2*driftDrifted:
					status, accessState = store.PurchaseRefunded, store.AccessRevoked
				}
				p := store.Purchase{ID: uuid.NewString(), ProductKey: "pro", Quantity: 1, Status: status,
					StripeSessionID: "cs_bench_" + login, AmountTotal: 19900, Currency: "usd", GitHubUsername: &login,
					AccessState: accessState, CreatedAt: now, UpdatedAt: now, CompletedAt: &now}
				if status == store.PurchaseRefunded {
					p.AmountRefunded = p.AmountTotal
				}
				if _, err := q.InsertPurchase(ctx, p); err != nil {
					return err
				}
				var userID int64
				switch {
				case i < driftDrifted:
					userID = fake.AddUser(login)
				case i%driftInvitedEvery == 0:
					fake.AddInvitation(login, "pull")
					userID, _ = fake.UserID(login)
				default:
					fake.AddCollaborator(login, "pull")
					userID, _ = fake.UserID(login)
				}
				g, err := q.RecordGrantAttempt(ctx, store.Grant{PurchaseID: p.ID, Provider: store.ProviderGitHub,
					GitHubUserID: userID, GitHubLogin: login}, now)
				if err != nil {
					return err
				}
				if status == store.PurchaseRefunded {
					err = q.MarkGrantsRevoked(ctx, []int64{g.ID}, now)
				} else {
					err = q.MarkGrantGranted(ctx, g.ID, 0, now)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("seed purchases: %w", err)
		}
	}
	return nil
}
