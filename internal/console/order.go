// An order's page: its fields, links to its payment and customer in the
// Stripe Dashboard, its lines, refunds and grants, the buyer's credits,
// and a timeline (the steps of its subject, grants, refunds, operator
// actions); and a targeted reconcile through the reconciler's Object on
// the order (its session or intent) and its charge, dry run first.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// orderDetail is everything known about one order.
type orderDetail struct {
	Order    store.Order
	Lines    []store.OrderLine
	Steps    []store.Step
	Grants   []store.OrderGrant
	Refunds  []store.OrderRefund
	Disputes []store.OrderDispute
	Audit    []store.AuditEntry
}

// loadOrder reads everything about the order named in the path; it
// reports false when it has already answered.
func (c *Console) loadOrder(w http.ResponseWriter, r *http.Request, s *session) (orderDetail, bool) {
	id := r.PathValue("id")
	if uuid.Validate(id) != nil {
		c.message(w, r, s, http.StatusNotFound, "No such order", "An order id is a UUID.")
		return orderDetail{}, false
	}
	ctx := r.Context()
	var d orderDetail
	var err error
	d.Order, err = c.db.GetOrder(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, s, http.StatusNotFound, "No such order", "No order has the id "+id+".")
		return d, false
	}
	if err == nil {
		d.Lines, err = c.db.OrderLines(ctx, id)
	}
	if err == nil {
		d.Steps, err = c.db.SubjectSteps(ctx, id)
	}
	if err == nil {
		d.Grants, err = c.db.OrderGrants(ctx, id)
	}
	if err == nil {
		d.Refunds, err = c.db.OrderRefunds(ctx, id)
	}
	if err == nil {
		d.Disputes, err = c.db.OrderDisputes(ctx, id)
	}
	if err == nil {
		d.Audit, err = c.subjectAudit(ctx, "order", id, d.Steps)
	}
	if err != nil {
		c.fail(w, r, s, "read the order", err)
		return d, false
	}
	return d, true
}

// orderTimeline orders everything that happened to an order, oldest
// first: its checkout, payment and end, each step, each access change,
// each refund and dispute and each operator action.
func orderTimeline(d orderDetail, now time.Time, stuckAfter time.Duration) []entry {
	o := d.Order
	es := []entry{{At: o.CreatedAt, Kind: "order", Text: "checkout started (" + string(o.UIMode) + ")"}}
	if o.PaidAt != nil {
		es = append(es, entry{At: *o.PaidAt, Kind: "order", Text: "paid"})
	}
	if o.EndedAt != nil {
		es = append(es, entry{At: *o.EndedAt, Kind: "order", Text: "ended unpaid (" + string(o.Status) + ")"})
	}
	var more []entry
	for i := range d.Grants {
		more = append(more, entry{At: d.Grants[i].UpdatedAt, Kind: "grant", OrderGrant: &d.Grants[i]})
	}
	for i := range d.Refunds {
		more = append(more, entry{At: d.Refunds[i].CreatedAt, Kind: "refund", OrderRefund: &d.Refunds[i]})
	}
	for i := range d.Disputes {
		more = append(more, entry{At: d.Disputes[i].CreatedAt, Kind: "dispute", OrderDispute: &d.Disputes[i]})
	}
	return subjectTimeline(es, d.Steps, more, d.Audit, now, stuckAfter)
}

// order links an order: its payment once there is an intent, else a
// search for its Checkout Session, "" before either exists.
func (d dashboard) order(o store.Order) string {
	if o.StripePaymentIntentID != nil && *o.StripePaymentIntentID != "" {
		return d.url("/payments/" + url.PathEscape(*o.StripePaymentIntentID))
	}
	if o.StripeSessionID != nil && *o.StripeSessionID != "" {
		return d.url("/search?query=" + url.QueryEscape(*o.StripeSessionID))
	}
	return ""
}

type orderLineView struct {
	store.OrderLine
	Name string
}

type orderView struct {
	Order       store.Order
	Lines       []orderLineView
	Dashboard   string
	Customer    string
	Timeline    []entry
	Refunds     []store.OrderRefund
	Audit       []store.AuditEntry
	Credits     *creditsView
	StepsFailed int
}

func (c *Console) order(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadOrder(w, r, s)
	if !ok {
		return
	}
	o := d.Order
	cr, err := c.credits(r.Context(), store.CreditHolder{UserID: o.UserID})
	if err != nil {
		c.fail(w, r, s, "read the buyer's credits", err)
		return
	}
	now := c.now()
	v := orderView{Order: o, Dashboard: c.dashboard().order(o), Customer: c.dashboard().customerID(deref(o.StripeCustomerID)),
		Timeline: orderTimeline(d, now, c.cfg.StuckAfter), Refunds: d.Refunds, Audit: d.Audit, Credits: cr}
	for _, l := range d.Lines {
		v.Lines = append(v.Lines, orderLineView{OrderLine: l, Name: c.productName(l.ProductKey)})
	}
	v.StepsFailed = failedSteps(d.Steps)
	c.render(w, r, s, http.StatusOK, "order", "Order "+o.ID, v, refreshWhileRunning(d.Steps, now))
}

// productName is a product's configured name, or its key.
func (c *Console) productName(key string) string {
	if n := c.products[key].Name; n != "" {
		return n
	}
	return key
}

// orderEmailPreview shows an email an order's step sent, rendered again
// from the order as it is now, sandboxed as a purchase's preview is.
func (c *Console) orderEmailPreview(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadOrder(w, r, s)
	if !ok {
		return
	}
	c.serveStepEmail(w, r, s, "order", d.Steps, func(st store.Step, e sentEmail) (mail.Message, error) {
		return c.previewOrderEmail(d, st, e)
	})
}

// previewOrderEmail renders a sent order email's template again from the
// order and its lines as they are now (and a refund step's amounts).
func (c *Console) previewOrderEmail(d orderDetail, st store.Step, e sentEmail) (mail.Message, error) {
	o := d.Order
	md := mail.Data{CustomerEmail: e.To, Amount: o.AmountTotal, OriginalAmount: o.AmountTotal, Currency: o.Currency,
		OrderID: o.ID, PurchaseID: o.ID, Subtotal: o.AmountSubtotal, Discount: o.AmountDiscount, Tax: o.AmountTax,
		PromotionCode: deref(o.PromotionCode), StripeSessionID: deref(o.StripeSessionID),
		StripeChargeID: deref(o.StripeChargeID), ProductName: "your order", GitHubUsername: deref(o.GitHubUsername)}
	for _, l := range d.Lines {
		md.Lines = append(md.Lines, mail.Line{Name: c.productName(l.ProductKey), Quantity: l.Quantity,
			UnitAmount: l.UnitAmount, Amount: l.AmountSubtotal - l.AmountDiscount})
	}
	var a struct { // a refund step's input, by its JSON names
		Amount int64 `json:"amount"`
		Total  int64 `json:"total"`
	}
	_ = json.Unmarshal(st.Args, &a) // a step without these inputs previews without them
	if a.Amount > 0 {
		md.RefundedAmount = a.Amount
	}
	if a.Total > 0 {
		md.OriginalAmount = a.Total
	}
	return c.renderer.Render(e.Template, md)
}

// orderObjects are what a targeted reconcile of an order looks at: the
// order itself (the reconciler reads its session or intent) and, once
// paid, its charge (refunds, disputes).
func orderObjects(o store.Order) []string {
	ids := []string{o.ID}
	if o.StripeChargeID != nil && *o.StripeChargeID != "" {
		ids = append(ids, *o.StripeChargeID)
	}
	return ids
}

// reconcileOrder reconciles an order's Stripe objects now, through the
// reconciler's Object, as a dry run or for real.
func (c *Console) reconcileOrder(ctx context.Context, o store.Order, dry bool) (*reconcile.Report, []string) {
	rep := reconcile.NewReport(dry)
	var failed []string
	for _, id := range orderObjects(o) {
		if err := c.reconcileObject(ctx, id, rep); err != nil {
			failed = append(failed, err.Error())
		}
	}
	return rep, failed
}

// orderState is the audit's snapshot of an order.
func orderState(o store.Order) map[string]any {
	return map[string]any{"status": o.Status, "amount_total": o.AmountTotal, "amount_refunded": o.AmountRefunded,
		"currency": o.Currency, "stripe_session_id": o.StripeSessionID, "stripe_payment_intent_id": o.StripePaymentIntentID,
		"stripe_charge_id": o.StripeChargeID, "paid_at": o.PaidAt, "ended_at": o.EndedAt, "stock_short": o.StockShort,
		"checked_at": o.CheckedAt}
}

func (c *Console) orderReconcileConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadOrder(w, r, s)
	if !ok {
		return
	}
	o := d.Order
	rep, failed := c.reconcileOrder(r.Context(), o, true)
	page := "/console/orders/" + o.ID
	what := "the order's " + string(o.UIMode) + " payment"
	if o.StripeObjectID() != "" {
		what += " (" + o.StripeObjectID() + ")"
	}
	if o.StripeChargeID != nil {
		what += " and its charge " + *o.StripeChargeID
	}
	cv := confirmView{Heading: "Reconcile this order with Stripe now?", Report: rep, ObjectErrors: failed,
		Action: page + "/reconcile", Button: "Reconcile for real", Back: page,
		Explain: []string{"A dry run just compared " + what + " with the database and changed nothing. " +
			"Below is what a real pass would change; Stripe may have moved on by the time you confirm, " +
			"and the real pass applies what Stripe says then (an abandoned embedded payment past its expiry is canceled)."}}
	c.render(w, r, s, http.StatusOK, "confirm", cv.Heading, cv, 0)
}

func (c *Console) orderReconcileDo(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadOrder(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	before := d.Order
	start := c.now()
	rep, failed := c.reconcileOrder(ctx, before, false)
	after, err := c.db.GetOrder(ctx, before.ID)
	if err != nil {
		c.fail(w, r, s, "read the order after reconciling it", err)
		return
	}
	a, err := c.recordTargeted(ctx, s.Operator, "order", before.ID, nil, start, rep, failed, orderState(before),
		orderState(after))
	if err != nil {
		c.fail(w, r, s, "record the reconcile", err)
		return
	}
	c.log.InfoContext(ctx, "console: order reconciled", "operator", s.Operator, "order_id", before.ID,
		"summary", strings.TrimSpace(a.Note))
	redirectDone(w, r, "/console/orders/"+before.ID, []store.AuditEntry{a})
}
