// The caller's purchases, as the frontend's account page shows them.
package httpapi

import (
	"net/http"
	"time"

	"github.com/paymentd/paymentd/store"
)

// purchaseView is the public shape of a purchase: no access references,
// and of Stripe's ids only the Checkout Session's, which the buyer's
// browser already has (a frontend returning from Stripe with
// ?session_id= finds its purchase by it).
type purchaseView struct {
	ID             string               `json:"id"`
	SessionID      string               `json:"session_id"`
	Product        string               `json:"product"`
	Status         store.PurchaseStatus `json:"status"`
	AmountTotal    int64                `json:"amount_total"`
	AmountRefunded int64                `json:"amount_refunded"`
	Currency       string               `json:"currency"`
	AccessState    store.AccessState    `json:"access_state"`
	CreatedAt      time.Time            `json:"created_at"`
	CompletedAt    *time.Time           `json:"completed_at"`
}

func viewPurchase(p store.Purchase) purchaseView {
	return purchaseView{ID: p.ID, SessionID: p.StripeSessionID, Product: p.ProductKey, Status: p.Status, AmountTotal: p.AmountTotal,
		AmountRefunded: p.AmountRefunded, Currency: p.Currency, AccessState: p.AccessState,
		CreatedAt: p.CreatedAt, CompletedAt: p.CompletedAt}
}

func (a *api) listPurchases(w http.ResponseWriter, r *http.Request, u User) error {
	ps, err := a.db.UserPurchases(r.Context(), u.ID)
	if err != nil {
		return err
	}
	views := make([]purchaseView, 0, len(ps))
	for _, p := range ps {
		views = append(views, viewPurchase(p))
	}
	writeJSON(w, http.StatusOK, map[string][]purchaseView{"purchases": views})
	return nil
}
