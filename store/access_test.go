package store_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

var grantT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// paidPurchase inserts a purchase in status.
func paidPurchase(t *testing.T, db *store.DB, status store.PurchaseStatus) string {
	t.Helper()
	now := grantT0
	p := store.Purchase{ID: uuid.NewString(), ProductKey: "pro", Quantity: 1, Status: status,
		StripeSessionID: "cs_" + uuid.NewString(), AmountTotal: 100, Currency: "usd", AccessState: store.AccessNone,
		CreatedAt: now, UpdatedAt: now, CompletedAt: &now}
	if _, err := db.InsertPurchase(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func TestGrantStatesMatchTheCheck(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var def string
	err := db.Pool.QueryRow(context.Background(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'access_grants'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%state = ANY%'`).Scan(&def)
	if err != nil {
		t.Fatal(err)
	}
	var checked, declared []string
	for _, m := range regexp.MustCompile(`'([a-z_]+)'::text`).FindAllStringSubmatch(def, -1) {
		checked = append(checked, m[1])
	}
	for _, s := range store.GrantStates {
		declared = append(declared, string(s))
	}
	slices.Sort(checked)
	slices.Sort(declared)
	if !slices.Equal(checked, declared) {
		t.Errorf("access_grants.state: CHECK allows %v, Go declares %v", checked, declared)
	}
}

func TestGrantAttemptsReuseTheRowAndKeepThePreexistingDecision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pid := paidPurchase(t, db, store.PurchaseCompleted)

	first, err := db.RecordGrantAttempt(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
		GitHubUserID: 42, GitHubLogin: "alice"}, grantT0)
	if err != nil || first.State != store.GrantPending || first.Preexisting || first.GitHubUserID != 42 {
		t.Fatalf("first attempt = %+v, %v", first, err)
	}
	// A retry after paymentd's own invitation was accepted sees a
	// collaborator: it is not mistaken for one who was there before.
	retry, err := db.RecordGrantAttempt(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
		GitHubUserID: 42, GitHubLogin: "alice", Preexisting: true}, grantT0)
	if err != nil || retry.ID != first.ID || retry.Preexisting {
		t.Fatalf("retry = %+v, %v; want row %d, not preexisting", retry, err, first.ID)
	}
	if err := db.MarkGrantGranted(ctx, first.ID, 7, grantT0); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkGrantsRevoked(ctx, []int64{first.ID}, grantT0); err != nil {
		t.Fatal(err)
	}
	// Granted again after a revocation: decided afresh.
	again, err := db.RecordGrantAttempt(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
		GitHubUserID: 42, Preexisting: true}, grantT0)
	if err != nil || again.ID != first.ID || !again.Preexisting || again.GitHubLogin != "alice" || again.InvitationID != 7 {
		t.Fatalf("attempt after revocation = %+v, %v", again, err)
	}
	hook, err := db.RecordGrantAttempt(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderWebhook}, grantT0)
	if err != nil || hook.ID == first.ID {
		t.Fatalf("webhook grant = %+v, %v", hook, err)
	}
	all, err := db.PurchaseGrants(ctx, pid)
	if err != nil || len(all) != 2 {
		t.Fatalf("grants = %+v, %v", all, err)
	}
}

func TestGrantsToGitHubUserFindsOtherPaidPurchasesByIDOrLegacyLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	mine := paidPurchase(t, db, store.PurchaseCompleted)
	other := paidPurchase(t, db, store.PurchasePartiallyRefunded)
	refunded := paidPurchase(t, db, store.PurchaseRefunded)
	legacy := paidPurchase(t, db, store.PurchaseCompleted)
	for _, g := range []store.Grant{
		{PurchaseID: mine, GitHubUserID: 42, GitHubLogin: "alice"},
		{PurchaseID: other, GitHubUserID: 42, GitHubLogin: "alice-old"},
		{PurchaseID: refunded, GitHubUserID: 42, GitHubLogin: "alice"},
	} {
		g.Provider = store.ProviderGitHub
		if _, err := db.RecordGrantAttempt(ctx, g, grantT0); err != nil {
			t.Fatal(err)
		}
	}
	// A grant from before ids were recorded: only its login is known.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO access_grants (purchase_id, provider, github_login, state, created_at, updated_at)
		VALUES ($1, 'github', 'Alice', 'granted', now(), now())`, legacy); err != nil {
		t.Fatal(err)
	}
	got, err := db.GrantsToGitHubUser(ctx, 42, "alice", mine)
	if err != nil {
		t.Fatal(err)
	}
	var purchases []string
	for _, g := range got {
		purchases = append(purchases, g.PurchaseID)
	}
	if want := []string{other, legacy}; !slices.Equal(purchases, want) {
		t.Errorf("grants to alice besides mine = %v, want %v (the partially refunded one and the legacy one)", purchases, want)
	}
}

func TestGrantsToGitHubUserUsesItsIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The table is empty, so say what a large one would: scanning it all
	// is expensive.
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+store.GrantsToGitHubUserSQL, int64(42), "alice", uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	for _, idx := range []string{"access_grants_github_user_idx", "access_grants_github_login_idx", "order_grants_github_user_idx"} {
		if !strings.Contains(text, idx) {
			t.Errorf("the plan does not use %s:\n%s", idx, text)
		}
	}
}

// TestGrantWritesUnderTheRowLockOnlyWhilePaidFor: the one-statement attempt
// and settlement write for a purchase still paid for (completed or partly
// refunded) and write nothing for a refunded one.
func TestGrantWritesUnderTheRowLockOnlyWhilePaidFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ref := "42"
	for _, c := range []struct {
		status store.PurchaseStatus
		ok     bool
	}{{store.PurchaseCompleted, true}, {store.PurchasePartiallyRefunded, true}, {store.PurchaseRefunded, false}} {
		pid := paidPurchase(t, db, c.status)
		g, ok, err := db.RecordGrantAttemptIfEntitled(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
			GitHubUserID: 7, GitHubLogin: "octocat"}, grantT0)
		if err != nil || ok != c.ok {
			t.Fatalf("%s: attempt recorded %v (%v), want %v", c.status, ok, err, c.ok)
		}
		grants, err := db.PurchaseGrants(ctx, pid)
		if err != nil || len(grants) != map[bool]int{true: 1, false: 0}[c.ok] {
			t.Fatalf("%s: grants %+v (%v)", c.status, grants, err)
		}
		settled, err := db.SettlePurchaseGrant(ctx, pid, g.ID, 42, &ref, "octocat", grantT0.Add(time.Minute))
		if err != nil || settled != c.ok {
			t.Fatalf("%s: settled %v (%v), want %v", c.status, settled, err, c.ok)
		}
		p, err := db.GetPurchase(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if !c.ok {
			if p.AccessState != store.AccessNone || p.GitHubUsername != nil {
				t.Errorf("%s: purchase written: access %s, username %v", c.status, p.AccessState, p.GitHubUsername)
			}
			continue
		}
		grants, _ = db.PurchaseGrants(ctx, pid)
		if p.AccessState != store.AccessGranted || p.AccessRef == nil || *p.AccessRef != ref ||
			p.GitHubUsername == nil || *p.GitHubUsername != "octocat" || len(grants) != 1 ||
			grants[0].State != store.GrantGranted || grants[0].InvitationID != 42 {
			t.Errorf("%s: purchase access %s %v, username %v, grants %+v", c.status, p.AccessState, p.AccessRef,
				p.GitHubUsername, grants)
		}
	}
}

// TestSettlingAGrantTouchesNoIndex: the settlement of a sale's grant, which
// every sale writes, changes the purchase and the grant in place (HOT
// updates), so neither table's indexes get a new entry.
func TestSettlingAGrantTouchesNoIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pid := paidPurchase(t, db, store.PurchaseCompleted)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	q := store.New(tx)
	g, ok, err := q.RecordGrantAttemptIfEntitled(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
		GitHubUserID: 7, GitHubLogin: "octocat"}, grantT0)
	if err != nil || !ok {
		t.Fatalf("attempt recorded %v (%v)", ok, err)
	}
	ref := "42"
	if settled, err := q.SettlePurchaseGrant(ctx, pid, g.ID, 42, &ref, "octocat", grantT0.Add(time.Minute)); err != nil || !settled {
		t.Fatalf("settled %v (%v)", settled, err)
	}
	rows, err := tx.Query(ctx, `SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
		WHERE relname IN ('purchases', 'access_grants') ORDER BY relname`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var rel string
		var upd, hot int64
		if err := rows.Scan(&rel, &upd, &hot); err != nil {
			t.Fatal(err)
		}
		seen++
		if upd != 1 || hot != upd {
			t.Errorf("%s: %d updates, %d of them HOT; want 1, HOT", rel, upd, hot)
		}
	}
	if err := rows.Err(); err != nil || seen != 2 {
		t.Fatalf("stats for %d tables (%v), want 2", seen, err)
	}
}
