package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

const serviceToken = "svc_test_0123456789abcdef0123456789abcdef"

// creditsConfig is config.yaml with a service token.
func creditsConfig(t *testing.T) *config.Config {
	cfg := loadConfig(t)
	cfg.Credits.ServiceTokens = []string{"svc_other_0123456789abcdef0123456789abcdef", serviceToken}
	return cfg
}

// newCreditsAPI serves the API on db with the real credits consumer (the
// fulfillment package's, as serve wires it).
func newCreditsAPI(t *testing.T, db *store.DB, cfg *config.Config) *apiHarness {
	t.Helper()
	clk := clock.NewFake(time.Now())
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: steps.New(db, clk, testLogger(t), steps.Config{}, nil),
		Clock: clk, Config: cfg, Renderer: renderer, Mailer: mail.NewOutbox(t.TempDir(), clk.Now)})
	if err != nil {
		t.Fatal(err)
	}
	return newHarness(t, harnessOptions{db: db, clock: clk, deps: httpapi.APIDeps{Config: cfg, Credits: fulfillment.NewCredits(ful)}})
}

// grantPack gives holder a pack of n credits, as a paid purchase does.
func grantPack(t *testing.T, db *store.DB, holder store.CreditHolder, purchaseID string, n int64) {
	t.Helper()
	err := db.InTx(t.Context(), func(q *store.Queries) error {
		a, err := q.LockCreditAccount(t.Context(), holder, time.Now())
		if err != nil {
			return err
		}
		_, _, err = q.ApplyCreditChange(t.Context(), store.CreditChange{AccountID: a.ID, Kind: store.CreditGrant,
			CauseKind: store.CausePurchase, CauseID: purchaseID,
			Lot: &store.NewLot{Source: store.LotPack, SourceID: purchaseID, Amount: n}, Period: true}, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func consumeBody(user, key string, amount any) map[string]any {
	return map[string]any{"amount": amount, "idempotency_key": key, "user_id": user}
}

func TestConsumeNeedsAServiceTokenAndAValidRequest(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	h := newCreditsAPI(t, db, creditsConfig(t))
	grantPack(t, db, store.CreditHolder{UserID: "ada"}, "p1", 10)
	good := consumeBody("ada", "k1", 1)
	for _, tok := range []string{"", "svc_test_0123456789abcdef0123456789abcdeX", "short", h.token("ada", "ada@example.com")} {
		if r := h.do("POST", "/api/credits/consume", tok, good); r.status != http.StatusUnauthorized || r.errorCode() != "unauthorized" {
			t.Errorf("token %q: %d %s, want 401 unauthorized", tok, r.status, r.body)
		}
	}
	for _, c := range []struct {
		body any
		code string
	}{
		{consumeBody("ada", "k", 0), "invalid_amount"},
		{consumeBody("ada", "k", -3), "invalid_amount"},
		{consumeBody("ada", "k", 1.5), "invalid_amount"},
		{consumeBody("ada", "k", "2"), "invalid_amount"},
		{consumeBody("ada", "k", nil), "invalid_amount"},
		{map[string]any{"idempotency_key": "k", "user_id": "ada"}, "invalid_amount"},
		{consumeBody("ada", "", 1), "invalid_idempotency_key"},
		{consumeBody("ada", strings.Repeat("k", 256), 1), "invalid_idempotency_key"},
		{consumeBody("", "k", 1), "invalid_user_id"},
		{map[string]any{"amount": 1, "idempotency_key": "k", "user_id": "ada", "reason": strings.Repeat("r", 501)}, "invalid_reason"},
		{map[string]any{"amount": 1, "idempotency_key": "k", "user_id": "ada", "credits": 5}, "invalid_json"},
		{`{"amount": 1,`, "invalid_json"},
	} {
		if r := h.do("POST", "/api/credits/consume", serviceToken, c.body); r.status != http.StatusBadRequest || r.errorCode() != c.code {
			t.Errorf("%v: %d %s, want 400 %s", c.body, r.status, r.body, c.code)
		}
	}
	if n := h.count(`SELECT count(*) FROM credit_consumptions`); n != 0 {
		t.Errorf("%d consumptions recorded by refused requests", n)
	}
	if r := h.do("POST", "/api/credits/consume", serviceToken, good); r.status != http.StatusOK {
		t.Errorf("a good request: %d %s", r.status, r.body)
	}
}

func TestConsumeIsAbsentWithoutServiceTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	if r := h.do("POST", "/api/credits/consume", serviceToken, consumeBody("ada", "k", 1)); r.status != http.StatusNotFound {
		t.Errorf("consume without service tokens: %d %s, want 404", r.status, r.body)
	}
}

// The same key answers as it first did, status and body, and consumes
// once; another request under it is refused.
func TestConsumeReplaysItsFirstAnswer(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	h := newCreditsAPI(t, db, creditsConfig(t))
	short := h.do("POST", "/api/credits/consume", serviceToken, consumeBody("bo", "k-short", 5))
	if short.status != http.StatusConflict || short.errorCode() != "insufficient_credits" || !strings.Contains(string(short.body), `"balance":0`) {
		t.Fatalf("consume from an empty balance: %d %s", short.status, short.body)
	}
	grantPack(t, db, store.CreditHolder{UserID: "bo"}, "p1", 10)
	again := h.do("POST", "/api/credits/consume", serviceToken, consumeBody("bo", "k-short", 5))
	if again.status != short.status || string(again.body) != string(short.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replayed 409: %d %s, want %d %s", again.status, again.body, short.status, short.body)
	}
	first := h.do("POST", "/api/credits/consume", serviceToken, consumeBody("bo", "k1", 4))
	var ans struct {
		Balance int64 `json:"balance"`
		Amount  int64 `json:"amount"`
		EntryID int64 `json:"entry_id"`
	}
	first.decode(t, &ans)
	if first.status != http.StatusOK || ans.Balance != 6 || ans.Amount != 4 || ans.EntryID == 0 {
		t.Fatalf("consume 4 of 10: %d %s", first.status, first.body)
	}
	second := h.do("POST", "/api/credits/consume", serviceToken, consumeBody("bo", "k1", 4))
	if second.status != http.StatusOK || string(second.body) != string(first.body) {
		t.Errorf("replay: %d %s, want %s", second.status, second.body, first.body)
	}
	for _, body := range []any{consumeBody("bo", "k1", 5), consumeBody("cy", "k1", 4),
		map[string]any{"amount": 4, "idempotency_key": "k1", "user_id": "bo", "organization_id": "org"}} {
		if r := h.do("POST", "/api/credits/consume", serviceToken, body); r.status != http.StatusConflict || r.errorCode() != "idempotency_key_reused" {
			t.Errorf("%v: %d %s, want 409 idempotency_key_reused", body, r.status, r.body)
		}
	}
	if n := h.count(`SELECT balance FROM credit_accounts WHERE user_id = 'bo'`); n != 6 {
		t.Errorf("balance %d, want 6", n)
	}
}

func TestGetCreditsPagesTheCallersLedger(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	h := newCreditsAPI(t, db, creditsConfig(t))
	tok := h.token("cy", "cy@example.com")
	r := h.do("GET", "/api/credits", tok, nil)
	if r.status != http.StatusOK || string(r.body) != `{"balance":0,"entries":[],"has_more":false}`+"\n" {
		t.Fatalf("no credits yet: %d %s", r.status, r.body)
	}
	grantPack(t, db, store.CreditHolder{UserID: "cy"}, "p1", 100)
	grantPack(t, db, store.CreditHolder{UserID: "cy", OrganizationID: "org_1"}, "p2", 7)
	grantPack(t, db, store.CreditHolder{UserID: "dee"}, "p3", 50)
	for i := range 4 {
		h.do("POST", "/api/credits/consume", serviceToken, consumeBody("cy", fmt.Sprintf("k%d", i), i+1))
	}
	type page struct {
		Balance int64 `json:"balance"`
		Entries []struct {
			ID           int64  `json:"id"`
			Kind         string `json:"kind"`
			Amount       int64  `json:"amount"`
			BalanceAfter int64  `json:"balance_after"`
			Cause        struct{ Kind, ID string }
			CreatedAt    string `json:"created_at"`
		} `json:"entries"`
		HasMore bool `json:"has_more"`
	}
	var p1 page
	h.do("GET", "/api/credits?limit=3", tok, nil).decode(t, &p1)
	if p1.Balance != 90 || len(p1.Entries) != 3 || !p1.HasMore || p1.Entries[0].Amount != -4 || p1.Entries[0].BalanceAfter != 90 ||
		p1.Entries[0].Kind != "consume" || p1.Entries[0].Cause.Kind != "consumption" || p1.Entries[0].Cause.ID != "k3" {
		t.Fatalf("first page: %+v", p1)
	}
	if _, err := time.Parse(time.RFC3339, p1.Entries[0].CreatedAt); err != nil {
		t.Errorf("created_at %q is not RFC 3339", p1.Entries[0].CreatedAt)
	}
	var p2 page
	h.do("GET", fmt.Sprintf("/api/credits?limit=3&starting_after=%d", p1.Entries[2].ID), tok, nil).decode(t, &p2)
	if len(p2.Entries) != 2 || p2.HasMore || p2.Entries[1].Kind != "grant" || p2.Entries[1].Amount != 100 || p2.Entries[1].Cause.ID != "p1" {
		t.Errorf("second page: %+v", p2)
	}
	var org page
	h.do("GET", "/api/credits?organization_id=org_1", tok, nil).decode(t, &org)
	if org.Balance != 7 || len(org.Entries) != 1 {
		t.Errorf("cy in org_1: %+v", org)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "starting_after=-1", "starting_after=abc"} {
		if r := h.do("GET", "/api/credits?"+q, tok, nil); r.status != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, r.status, r.body)
		}
	}
	if r := h.do("GET", "/api/credits", serviceToken, nil); r.status != http.StatusUnauthorized {
		t.Errorf("a service token on the user endpoint: %d", r.status)
	}
}

// Acceptance: 200 concurrent consumes of 1 against a balance of 100,
// through two API servers (two httpapi instances, each with its own
// connection pool, on one database: two paymentd processes as far as the
// database can tell): exactly 100 succeed and 100 get 409, the balance is
// 0 and the ledger sums to it.
func TestTwoServers200ConcurrentConsumesOf1Against100(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dbA, dbB := pgtest.Open(t, url), pgtest.Open(t, url)
	cfg := creditsConfig(t)
	servers := []*apiHarness{newCreditsAPI(t, dbA, cfg), newCreditsAPI(t, dbB, cfg)}
	eve := store.CreditHolder{UserID: "eve"}
	grantPack(t, dbA, eve, "p1", 100)

	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := servers[i%2].do("POST", "/api/credits/consume", serviceToken, consumeBody("eve", fmt.Sprintf("k%d", i), 1))
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[http.StatusOK] != 100 || statuses[http.StatusConflict] != 100 {
		t.Errorf("statuses %v, want 100 × 200 and 100 × 409", statuses)
	}
	a, err := dbA.GetCreditAccount(t.Context(), eve)
	if err != nil {
		t.Fatal(err)
	}
	entries, lots, err := dbA.CreditLedgerSum(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != 0 || entries != 0 || lots != 0 {
		t.Errorf("balance %d, ledger sum %d, lots %d; want 0", a.Balance, entries, lots)
	}
}

// A client that gives up mid-request (its context canceled while the
// consumption waits on the database) and retries with the same key
// consumes once and gets the first answer.
func TestConsumeRetriedAfterAClientTimeoutConsumesOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	h := newCreditsAPI(t, db, creditsConfig(t))
	fay := store.CreditHolder{UserID: "fay"}
	grantPack(t, db, fay, "p1", 10)

	// Hold the account's row so the first request waits inside its
	// transaction.
	ctx := context.Background()
	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `SELECT 1 FROM credit_accounts WHERE user_id = 'fay' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(consumeBody("fay", "k-timeout", 3))
	clientCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(clientCtx, "POST", h.srv.URL+"/api/credits/consume", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the consumption to wait on the account's lock", func() bool {
		return h.count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`) > 0
	})
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the canceled request got an answer")
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	retry := h.do("POST", "/api/credits/consume", serviceToken, body)
	again := h.do("POST", "/api/credits/consume", serviceToken, body)
	if retry.status != http.StatusOK || string(again.body) != string(retry.body) || !strings.Contains(string(retry.body), `"balance":7`) {
		t.Errorf("retries: %d %s / %d %s, want 200 with balance 7 twice", retry.status, retry.body, again.status, again.body)
	}
	if n := h.count(`SELECT balance FROM credit_accounts WHERE user_id = 'fay'`); n != 7 {
		t.Errorf("balance %d, want 7: consumed once", n)
	}
	if n := h.count(`SELECT count(*) FROM credit_entries WHERE kind = 'consume'`); n != 1 {
		t.Errorf("%d consume entries, want 1", n)
	}
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
