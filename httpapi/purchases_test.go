package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

// insertPurchase records a purchase for userID created at.
func (h *apiHarness) insertPurchase(userID string, status store.PurchaseStatus, amount int64, at time.Time) store.Purchase {
	h.t.Helper()
	email := userID + "@example.com"
	p := store.Purchase{ID: uuid.NewString(), UserID: &userID, Email: &email, ProductKey: "pro_one_time", Quantity: 1,
		Status: status, StripeSessionID: "cs_test_" + uuid.NewString()[:8], AmountTotal: amount, Currency: "usd",
		AccessState: store.AccessNone, CreatedAt: at, UpdatedAt: at}
	if status != store.PurchasePending {
		p.CompletedAt = &at
	}
	if _, err := h.db.InsertPurchase(h.t.Context(), p); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func TestListPurchasesShowsOnlyTheCallers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	older := h.insertPurchase("alice", store.PurchaseCompleted, 19900, t0)
	newer := h.insertPurchase("alice", store.PurchasePending, 9900, t0.Add(time.Hour))
	h.insertPurchase("bob", store.PurchaseCompleted, 19900, t0)

	var body struct {
		Purchases []struct {
			ID, Product, Status, Currency string
			SessionID                     string     `json:"session_id"`
			AmountTotal                   int64      `json:"amount_total"`
			AmountRefunded                int64      `json:"amount_refunded"`
			AccessState                   string     `json:"access_state"`
			CreatedAt                     time.Time  `json:"created_at"`
			CompletedAt                   *time.Time `json:"completed_at"`
		} `json:"purchases"`
	}
	r := h.do("GET", "/api/purchases", h.token("alice", "alice@example.com"), nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/purchases = %d %s", r.status, r.body)
	}
	r.decode(t, &body)
	if len(body.Purchases) != 2 || body.Purchases[0].ID != newer.ID || body.Purchases[1].ID != older.ID {
		t.Fatalf("alice sees %s; want her two purchases, newest first", r.body)
	}
	got := body.Purchases[1]
	if got.SessionID != older.StripeSessionID || body.Purchases[0].SessionID != newer.StripeSessionID {
		t.Errorf("session ids shown as %q and %q; want %q and %q", body.Purchases[0].SessionID, got.SessionID,
			newer.StripeSessionID, older.StripeSessionID)
	}
	if got.Product != "pro_one_time" || got.Status != "completed" || got.AmountTotal != 19900 || got.Currency != "usd" ||
		got.AccessState != "none" || !got.CreatedAt.Equal(t0) || got.CompletedAt == nil || !got.CompletedAt.Equal(t0) {
		t.Errorf("purchase shown as %+v", got)
	}

	r = h.do("GET", "/api/purchases", h.token("carol", "carol@example.com"), nil)
	if r.status != http.StatusOK || string(r.body) != `{"purchases":[]}`+"\n" {
		t.Errorf("a user without purchases sees %d %s; want an empty list", r.status, r.body)
	}
}
