package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

var creditsT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func TestDecideLowNotice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name            string
		after           int64
		threshold       *int64
		period, noticed string
		want            bool
	}{
		{"no threshold", 0, nil, "purchase:a", "", false},
		{"no period", 0, ptr[int64](10), "", "", false},
		{"above", 10, ptr[int64](10), "purchase:a", "", false},
		{"below", 9, ptr[int64](10), "purchase:a", "", true},
		{"already noticed this period", 3, ptr[int64](10), "purchase:a", "purchase:a", false},
		{"noticed last period", 3, ptr[int64](10), "invoice:in_2", "invoice:in_1", true},
		{"threshold zero never", 0, ptr[int64](0), "purchase:a", "", false},
	} {
		if got := store.DecideLowNotice(c.after, c.threshold, c.period, c.noticed); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// credits is a test's ledger on a fresh database.
type credits struct {
	t   *testing.T
	ctx context.Context
	db  *store.DB
}

func newCredits(t *testing.T) *credits {
	return &credits{t: t, ctx: context.Background(), db: pgtest.New(t)}
}

// apply locks h's account and applies c to it in one transaction.
func (c *credits) apply(h store.CreditHolder, ch store.CreditChange) (store.CreditEntry, bool) {
	c.t.Helper()
	var e store.CreditEntry
	var created bool
	err := c.db.InTx(c.ctx, func(q *store.Queries) error {
		a, err := q.LockCreditAccount(c.ctx, h, creditsT0)
		if err != nil {
			return err
		}
		ch.AccountID = a.ID
		e, created, err = q.ApplyCreditChange(c.ctx, ch, creditsT0)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return e, created
}

func (c *credits) pack(h store.CreditHolder, purchaseID string, n int64) store.CreditEntry {
	c.t.Helper()
	e, _ := c.apply(h, store.CreditChange{Kind: store.CreditGrant, CauseKind: store.CausePurchase, CauseID: purchaseID,
		Lot: &store.NewLot{Source: store.LotPack, SourceID: purchaseID, Amount: n}, Period: true})
	return e
}

func (c *credits) clawback(h store.CreditHolder, purchaseID string) (store.CreditEntry, bool) {
	c.t.Helper()
	return c.apply(h, store.CreditChange{Kind: store.CreditRefundClawback, CauseKind: store.CausePurchase,
		CauseID: purchaseID, Close: &store.LotRef{Source: store.LotPack, SourceID: purchaseID}})
}

func (c *credits) consume(h store.CreditHolder, key string, n int64) (store.Consumption, error) {
	return c.db.ConsumeCredits(c.ctx, store.Consume{Holder: h, Amount: n, Key: key}, creditsT0)
}

// balance returns h's balance after checking that the ledger's entries and
// the lots' remainders both add up to it.
func (c *credits) balance(h store.CreditHolder) int64 {
	c.t.Helper()
	return checkLedger(c.t, c.db, h)
}

func checkLedger(t *testing.T, db *store.DB, h store.CreditHolder) int64 {
	t.Helper()
	a, err := db.GetCreditAccount(context.Background(), h)
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	entries, lots, err := db.CreditLedgerSum(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if entries != a.Balance || lots != a.Balance {
		t.Fatalf("balance %d, but the entries sum to %d and the lots hold %d", a.Balance, entries, lots)
	}
	return a.Balance
}

// A pack bought twice, one refunded after 30 of its credits were used: the
// clawback takes only what is left of that pack, the other stays whole.
// Repeated grants and clawbacks add nothing.
func TestCreditsPackClawbackTakesOnlyWhatIsLeftOfThatPack(t *testing.T) {
	t.Parallel()
	c := newCredits(t)
	ada := store.CreditHolder{UserID: "ada"}
	c.pack(ada, "p1", 100)
	c.pack(ada, "p2", 100)
	if _, created := c.apply(ada, store.CreditChange{Kind: store.CreditGrant, CauseKind: store.CausePurchase,
		CauseID: "p1", Lot: &store.NewLot{Source: store.LotPack, SourceID: "p1", Amount: 100}}); created {
		t.Fatal("the same pack's grant was written twice")
	}
	if got := c.balance(ada); got != 200 {
		t.Fatalf("balance %d after two packs, want 200", got)
	}
	if res, err := c.consume(ada, "k1", 30); err != nil || res.Outcome != store.ConsumeConsumed || res.Balance != 170 {
		t.Fatalf("consume 30 = %+v, %v", res, err)
	}
	e, created := c.clawback(ada, "p1")
	if !created || e.Amount != -70 || e.BalanceAfter != 100 {
		t.Fatalf("clawback of the used pack = %+v (new %v), want -70 leaving 100", e, created)
	}
	if _, created := c.clawback(ada, "p1"); created {
		t.Fatal("a clawback was written twice")
	}
	if got := c.balance(ada); got != 100 {
		t.Errorf("balance %d, want the other pack's 100", got)
	}
	// Used up, then refunded: the clawback is zero, never below.
	c.pack(ada, "p3", 10)
	if _, err := c.consume(ada, "k2", 110); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.clawback(ada, "p3"); e.Amount != 0 || e.BalanceAfter != 0 {
		t.Errorf("clawback of a spent pack = %+v, want 0", e)
	}
	c.balance(ada)
}

// Consumption takes from the lot that expires first (a plan's period)
// before packs, which never expire, and among equals the oldest first.
func TestCreditsConsumeOldestExpiringFirst(t *testing.T) {
	t.Parallel()
	c := newCredits(t)
	bo := store.CreditHolder{UserID: "bo", OrganizationID: "org_1"}
	c.pack(bo, "p1", 50)
	c.apply(bo, store.CreditChange{Kind: store.CreditReset, CauseKind: store.CauseInvoice, CauseID: "in_1",
		Close: &store.LotRef{Source: store.LotPlan, SourceID: "sub_1"},
		Lot: &store.NewLot{Source: store.LotPlan, SourceID: "sub_1", Amount: 100, PeriodStart: creditsT0,
			ExpiresAt: creditsT0.AddDate(0, 1, 0)}})
	c.pack(bo, "p2", 50)
	if _, err := c.consume(bo, "k1", 120); err != nil {
		t.Fatal(err)
	}
	// The plan gave its 100, the older pack 20; the newer pack is whole.
	plan := func() int64 {
		var p store.PlanCredits
		c.db.InTx(c.ctx, func(q *store.Queries) error {
			a, _ := q.GetCreditAccount(c.ctx, bo)
			p, _ = q.PlanCredits(c.ctx, a.ID, "sub_1")
			return nil
		})
		return p.Remaining
	}
	if got := plan(); got != 0 {
		t.Errorf("plan holds %d after 120 consumed, want 0", got)
	}
	if e, _ := c.clawback(bo, "p2"); e.Amount != -50 {
		t.Errorf("clawback of the newer pack = %d, want -50 (it was not touched)", e.Amount)
	}
	if e, _ := c.clawback(bo, "p1"); e.Amount != -30 {
		t.Errorf("clawback of the older pack = %d, want -30", e.Amount)
	}
	if got := c.balance(bo); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
	// Another organization of the same user is another account.
	if got := c.balance(store.CreditHolder{UserID: "bo"}); got != 0 {
		t.Errorf("bo without organization has %d", got)
	}
}

// A key answers once: the same request replays the first answer (a 409's
// balance too) and consumes nothing more; another request under the key is
// refused.
func TestCreditsConsumeIdempotency(t *testing.T) {
	t.Parallel()
	c := newCredits(t)
	cy := store.CreditHolder{UserID: "cy"}
	short, err := c.consume(cy, "k-short", 5)
	if err != nil || short.Outcome != store.ConsumeInsufficient || short.Balance != 0 || short.Replayed {
		t.Fatalf("consume from nothing = %+v, %v", short, err)
	}
	c.pack(cy, "p1", 10)
	again, err := c.consume(cy, "k-short", 5)
	if err != nil || !again.Replayed || again.Outcome != store.ConsumeInsufficient || again.Balance != 0 {
		t.Fatalf("replay of a refused consume = %+v, %v; want the first answer", again, err)
	}
	first, err := c.consume(cy, "k1", 4)
	if err != nil || first.Outcome != store.ConsumeConsumed || first.Balance != 6 || first.EntryID == 0 {
		t.Fatalf("consume 4 of 10 = %+v, %v", first, err)
	}
	second, err := c.consume(cy, "k1", 4)
	if err != nil || !second.Replayed || second.Balance != 6 || second.EntryID != first.EntryID {
		t.Fatalf("replay = %+v, %v; want %+v", second, err, first)
	}
	if _, err := c.consume(cy, "k1", 5); !errors.Is(err, store.ErrIdempotencyKeyReused) {
		t.Errorf("same key, other amount: %v", err)
	}
	if _, err := c.consume(store.CreditHolder{UserID: "dee"}, "k1", 4); !errors.Is(err, store.ErrIdempotencyKeyReused) {
		t.Errorf("same key, other user: %v", err)
	}
	if got := c.balance(cy); got != 6 {
		t.Errorf("balance %d, want 6", got)
	}
}

// 200 concurrent consumes of 1 against 100, from two pools (two replicas):
// exactly 100 succeed, the balance is 0 and the ledger sums to it.
func TestCreditsConcurrentConsumesNeverOverdraw(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	a, b := pgtest.Open(t, url), pgtest.Open(t, url)
	c := &credits{t: t, ctx: context.Background(), db: a}
	h := store.CreditHolder{UserID: "eve"}
	c.pack(h, "p1", 100)
	var mu sync.Mutex
	outcomes := map[store.ConsumeOutcome]int{}
	var wg sync.WaitGroup
	for i := range 200 {
		db := []*store.DB{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := db.ConsumeCredits(c.ctx, store.Consume{Holder: h, Amount: 1, Key: fmt.Sprintf("k%d", i)}, creditsT0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			outcomes[res.Outcome]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if outcomes[store.ConsumeConsumed] != 100 || outcomes[store.ConsumeInsufficient] != 100 {
		t.Errorf("outcomes %v, want 100 consumed and 100 insufficient", outcomes)
	}
	if got := c.balance(h); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
}

// The ledger is append-only and the balance never below zero, whatever
// SQL is run.
func TestCreditsLedgerIsAppendOnlyAndNeverNegative(t *testing.T) {
	t.Parallel()
	c := newCredits(t)
	h := store.CreditHolder{UserID: "fay"}
	e := c.pack(h, "p1", 10)
	for _, sql := range []string{
		fmt.Sprintf(`UPDATE credit_entries SET amount = 1000 WHERE id = %d`, e.ID),
		fmt.Sprintf(`DELETE FROM credit_entries WHERE id = %d`, e.ID),
		`UPDATE credit_accounts SET balance = -1`,
	} {
		if _, err := c.db.Pool.Exec(c.ctx, sql); err == nil {
			t.Errorf("%s succeeded", sql)
		}
	}
	c.balance(h)
}

// TestMigrationRemembersEarlierClawbacks: a pack clawed back before
// clawbacks were per refund is still known as clawed back once migrated, so
// a refund that fails later gives it back.
func TestMigrationRemembersEarlierClawbacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	all, err := store.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	for _, m := range all {
		if m.Version >= 17 {
			break
		}
		exec(m.SQL)
		exec(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
	}
	pid := "6c1e2f8a-1b9e-4d7e-9a51-0f3f6c0a2b11"
	exec(`INSERT INTO credit_accounts (id, user_id, balance, created_at, updated_at) VALUES (1, 'ada', 0, now(), now())`)
	exec(`INSERT INTO credit_entries (id, account_id, kind, amount, balance_after, cause_kind, cause_id, created_at)
		VALUES (1, 1, 'grant', 100, 100, 'purchase', $1, now()), (2, 1, 'consume', -30, 70, 'consumption', 'k1', now()),
			(3, 1, 'refund_clawback', -70, 0, 'purchase', $1, now())`, pid)
	exec(`INSERT INTO credit_lots (entry_id, account_id, source_kind, source_id, amount, remaining, created_at)
		VALUES (1, 1, 'pack', $1, 100, 0, now())`, pid)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	c, clawed, err := db.PackClawback(ctx, 1, pid)
	if err != nil || !clawed || c.EntryID != 3 || c.Taken != 70 {
		t.Errorf("clawback %+v (%v, %v), want entry 3 having taken 70", c, clawed, err)
	}
}
