// The caller's orders, as the frontend's account page shows them: each
// with its lines, totals, status and refunds. An open order also carries
// what the storefront needs to pay it: the session's page for a hosted one,
// the PaymentIntent and its client secret for an embedded one (the retry
// page a declined card leads to).
package httpapi

import (
	"net/http"
	"time"

	"github.com/paymentd/paymentd/store"
)

// ordersListed is how many orders GET /api/orders returns, newest first.
const ordersListed = 100

type orderRefundView struct {
	ID        string    `json:"id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

type orderView struct {
	ID             string            `json:"id"`
	Status         store.OrderStatus `json:"status"`
	UIMode         store.UIMode      `json:"ui_mode"`
	Lines          []cartLineView    `json:"lines"`
	PromotionCode  *string           `json:"promotion_code"`
	Currency       string            `json:"currency"`
	Subtotal       int64             `json:"subtotal"`
	Discount       int64             `json:"discount"`
	Tax            int64             `json:"tax"`
	Total          int64             `json:"total"`
	AmountRefunded int64             `json:"amount_refunded"`
	Refunds        []orderRefundView `json:"refunds"`
	CreatedAt      time.Time         `json:"created_at"`
	PaidAt         *time.Time        `json:"paid_at"`
	ExpiresAt      time.Time         `json:"expires_at"`
	// The Stripe objects the buyer's browser knows; the client secret and
	// the checkout page only while the order is open.
	SessionID        *string `json:"session_id,omitempty"`
	CheckoutURL      *string `json:"checkout_url,omitempty"`
	PaymentIntentID  *string `json:"payment_intent_id,omitempty"`
	ClientSecret     *string `json:"client_secret,omitempty"`
	LastPaymentError *string `json:"last_payment_error,omitempty"`
}

// viewOrder is the public shape of order o.
func (a *api) viewOrder(o store.Order, lines []store.OrderLine, refunds []store.OrderRefund) orderView {
	v := orderView{ID: o.ID, Status: o.Status, UIMode: o.UIMode, Lines: []cartLineView{}, PromotionCode: o.PromotionCode,
		Currency: o.Currency, Subtotal: o.AmountSubtotal, Discount: o.AmountDiscount, Tax: o.AmountTax, Total: o.AmountTotal,
		AmountRefunded: o.AmountRefunded, Refunds: []orderRefundView{}, CreatedAt: o.CreatedAt, PaidAt: o.PaidAt,
		ExpiresAt: o.ExpiresAt, SessionID: o.StripeSessionID}
	if o.UIMode == store.UIModeEmbedded {
		v.PaymentIntentID = o.StripePaymentIntentID
	}
	if o.Status.Open() {
		v.CheckoutURL, v.ClientSecret, v.LastPaymentError = o.CheckoutURL, o.ClientSecret, o.LastPaymentError
	}
	for _, l := range lines {
		tax := l.AmountTax
		v.Lines = append(v.Lines, cartLineView{Product: l.ProductKey, Name: a.products[l.ProductKey].Name,
			Quantity: int64(l.Quantity), UnitAmount: l.UnitAmount, AmountSubtotal: l.AmountSubtotal,
			AmountDiscount: l.AmountDiscount, AmountTax: &tax, AmountTotal: l.AmountTotal})
	}
	for _, r := range refunds {
		v.Refunds = append(v.Refunds, orderRefundView{ID: r.ID, Amount: r.Amount, Currency: r.Currency, Status: r.Status,
			CreatedAt: r.CreatedAt})
	}
	return v
}

func (a *api) listOrders(w http.ResponseWriter, r *http.Request, u User) error {
	ctx := r.Context()
	os, err := a.db.UserOrders(ctx, u.ID, ordersListed)
	if err != nil {
		return err
	}
	ids := make([]string, len(os))
	for i, o := range os {
		ids[i] = o.ID
	}
	lines, err := a.db.LinesOf(ctx, ids)
	if err != nil {
		return err
	}
	refunds, err := a.db.RefundsOfOrders(ctx, ids)
	if err != nil {
		return err
	}
	views := make([]orderView, 0, len(os))
	for _, o := range os {
		views = append(views, a.viewOrder(o, lines[o.ID], refunds[o.ID]))
	}
	writeJSON(w, http.StatusOK, map[string][]orderView{"orders": views})
	return nil
}
