// A subscription's page: its fields, links to it and its customer in the
// Stripe Dashboard, its timeline (the steps of its subject, its access
// grants, its invoices, the operator actions on it), the subscriber's
// credits, and a targeted reconcile through the reconciler's Object on its
// Stripe subscription, dry run first.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// subscriptionDetail is everything known about one subscription.
type subscriptionDetail struct {
	Subscription store.Subscription
	Steps        []store.Step
	Grants       []store.Grant
	Invoices     []store.Invoice
	Audit        []store.AuditEntry
}

// creditsView is a user's credit balance and newest ledger entries, read
// only; Account is nil when the user has no credits account.
type creditsView struct {
	Holder  store.CreditHolder
	Account *store.CreditAccount
	Entries []store.CreditEntry
}

// creditEntries is how many ledger entries a detail page shows.
const creditEntries = 10

// credits reads the balance and newest entries of holder's account.
func (c *Console) credits(ctx context.Context, h store.CreditHolder) (*creditsView, error) {
	if h.UserID == "" {
		return nil, nil
	}
	v := &creditsView{Holder: h}
	a, err := c.db.GetCreditAccount(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	v.Account = &a
	if v.Entries, err = c.db.CreditEntries(ctx, a.ID, creditEntries, 0); err != nil {
		return nil, err
	}
	return v, nil
}

// loadSubscription reads everything about the subscription named in the
// path; it reports false when it has already answered.
func (c *Console) loadSubscription(w http.ResponseWriter, r *http.Request, s *session) (subscriptionDetail, bool) {
	id := r.PathValue("id")
	if uuid.Validate(id) != nil {
		c.message(w, r, s, http.StatusNotFound, "No such subscription", "A subscription id is a UUID.")
		return subscriptionDetail{}, false
	}
	ctx := r.Context()
	var d subscriptionDetail
	var err error
	d.Subscription, err = c.db.GetSubscription(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, s, http.StatusNotFound, "No such subscription", "No subscription has the id "+id+".")
		return d, false
	}
	if err == nil {
		d.Steps, err = c.db.SubjectSteps(ctx, id)
	}
	if err == nil {
		d.Grants, err = c.db.SubscriptionGrants(ctx, id)
	}
	if err == nil {
		d.Invoices, err = c.db.SubscriptionInvoices(ctx, id)
	}
	if err == nil {
		d.Audit, err = c.subjectAudit(ctx, "subscription", id, d.Steps)
	}
	if err != nil {
		c.fail(w, r, s, "read the subscription", err)
		return d, false
	}
	return d, true
}

// subscriptionTimeline orders everything that happened to a subscription,
// oldest first: its creation, start, cancellation and end, each step, each
// access change, each invoice and each operator action.
func subscriptionTimeline(d subscriptionDetail, now time.Time, stuckAfter time.Duration) []entry {
	sub := d.Subscription
	es := []entry{{At: sub.CreatedAt, Kind: "subscription", Text: "created (" + sub.StripeSubscriptionID + ")"}}
	if sub.StartedAt != nil {
		es = append(es, entry{At: *sub.StartedAt, Kind: "subscription", Text: "started"})
	}
	if sub.CanceledAt != nil {
		es = append(es, entry{At: *sub.CanceledAt, Kind: "subscription", Text: "canceled"})
	}
	if sub.EndedAt != nil {
		es = append(es, entry{At: *sub.EndedAt, Kind: "subscription", Text: "ended (" + string(sub.Status) + ")"})
	}
	var more []entry
	for i := range d.Grants {
		more = append(more, entry{At: d.Grants[i].UpdatedAt, Kind: "grant", Grant: &d.Grants[i]})
	}
	for i := range d.Invoices {
		more = append(more, entry{At: d.Invoices[i].CreatedAt, Kind: "invoice", Invoice: &d.Invoices[i]})
	}
	return subjectTimeline(es, d.Steps, more, d.Audit, now, stuckAfter)
}

type subscriptionView struct {
	Subscription store.Subscription
	Product      config.Product
	Dashboard    string
	Customer     string
	Timeline     []entry
	Invoices     []store.Invoice
	Audit        []store.AuditEntry
	Credits      *creditsView
	StepsFailed  int
}

func (c *Console) subscription(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadSubscription(w, r, s)
	if !ok {
		return
	}
	sub := d.Subscription
	cr, err := c.credits(r.Context(), store.CreditHolder{UserID: deref(sub.UserID), OrganizationID: deref(sub.OrganizationID)})
	if err != nil {
		c.fail(w, r, s, "read the subscriber's credits", err)
		return
	}
	now := c.now()
	v := subscriptionView{Subscription: sub, Product: c.products[sub.ProductKey], Dashboard: c.dashboard().subscription(sub),
		Customer: c.dashboard().customerID(sub.StripeCustomerID), Timeline: subscriptionTimeline(d, now, c.cfg.StuckAfter),
		Invoices: d.Invoices, Audit: d.Audit, Credits: cr, StepsFailed: failedSteps(d.Steps)}
	c.render(w, r, s, http.StatusOK, "subscription", "Subscription "+sub.ID, v, refreshWhileRunning(d.Steps, now))
}

// subscriptionEmailPreview shows an email a subscription's step sent,
// rendered again from the subscription (and the step's invoice) as they
// are now, sandboxed as a purchase's preview is.
func (c *Console) subscriptionEmailPreview(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadSubscription(w, r, s)
	if !ok {
		return
	}
	c.serveStepEmail(w, r, s, "subscription", d.Steps, func(st store.Step, e sentEmail) (mail.Message, error) {
		return c.previewSubscriptionEmail(d, st, e)
	})
}

// previewSubscriptionEmail renders a sent subscription email's template
// again from the subscription as it is now and the invoice its step
// names. It is a preview: what changed since renders differently.
func (c *Console) previewSubscriptionEmail(d subscriptionDetail, st store.Step, e sentEmail) (mail.Message, error) {
	sub := d.Subscription
	label := sub.Interval
	if sub.IntervalCount > 1 {
		label = strconv.FormatInt(sub.IntervalCount, 10) + " " + sub.Interval + "s"
	}
	md := mail.Data{CustomerEmail: e.To, ProductName: c.products[sub.ProductKey].Name, Amount: sub.Amount,
		Currency: sub.Currency, SubscriptionID: sub.ID, PlanName: sub.PriceKey, Interval: label}
	if sub.TrialEnd != nil {
		md.TrialEnd = mail.FormatDate(*sub.TrialEnd)
	}
	var a struct {
		InvoiceID string `json:"invoice_id"`
	}
	_ = json.Unmarshal(st.Args, &a) // a step without an invoice previews without one
	for _, inv := range d.Invoices {
		if inv.ID != a.InvoiceID {
			continue
		}
		md.InvoiceNumber, md.InvoiceURL, md.Currency = deref(inv.Number), deref(inv.HostedInvoiceURL), inv.Currency
		if inv.PeriodStart != nil && inv.PeriodEnd != nil {
			md.PeriodStart, md.PeriodEnd = mail.FormatDate(*inv.PeriodStart), mail.FormatDate(*inv.PeriodEnd)
		}
		md.Amount = inv.AmountPaid
		if inv.Status.Unpaid() {
			md.Amount = inv.AmountRemaining
		}
	}
	switch e.Template {
	case mail.SubscriptionCanceling:
		md.EndsAt = mail.FormatDate(sub.CurrentPeriodEnd)
	case mail.SubscriptionEnded, mail.AdminSubscriptionEnded:
		if sub.EndedAt != nil {
			md.EndsAt = mail.FormatDate(*sub.EndedAt)
		}
		md.Reason = string(sub.Status)
	}
	return c.renderer.Render(e.Template, md)
}

// subscriptionState is the audit's snapshot of a subscription.
func subscriptionState(s store.Subscription) map[string]any {
	return map[string]any{"status": s.Status, "entitled": s.Entitled, "access_state": s.AccessState,
		"price": s.PriceKey, "quantity": s.Quantity, "amount": s.Amount, "currency": s.Currency,
		"current_period_end": s.CurrentPeriodEnd, "cancel_at_period_end": s.CancelAtPeriodEnd,
		"latest_invoice_id": s.LatestInvoiceID, "checked_at": s.CheckedAt}
}

// reconcileSubscription reconciles the subscription's Stripe subscription
// now, through the reconciler's Object (which retrieves it with its latest
// invoice), as a dry run or for real.
func (c *Console) reconcileSubscription(ctx context.Context, sub store.Subscription, dry bool) (*reconcile.Report, []string) {
	rep := reconcile.NewReport(dry)
	var failed []string
	if err := c.reconcileObject(ctx, sub.StripeSubscriptionID, rep); err != nil {
		failed = append(failed, err.Error())
	}
	return rep, failed
}

func (c *Console) subscriptionReconcileConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadSubscription(w, r, s)
	if !ok {
		return
	}
	sub := d.Subscription
	rep, failed := c.reconcileSubscription(r.Context(), sub, true)
	page := "/console/subscriptions/" + sub.ID
	cv := confirmView{Heading: "Reconcile this subscription with Stripe now?", Report: rep, ObjectErrors: failed,
		Action: page + "/reconcile", Button: "Reconcile for real", Back: page,
		Explain: []string{"A dry run just compared " + sub.StripeSubscriptionID + " and its latest invoice with the database " +
			"and changed nothing. Below is what a real pass would change; Stripe may have moved on by the time you confirm, " +
			"and the real pass applies what Stripe says then."}}
	c.render(w, r, s, http.StatusOK, "confirm", cv.Heading, cv, 0)
}

func (c *Console) subscriptionReconcileDo(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadSubscription(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	before := d.Subscription
	start := c.now()
	rep, failed := c.reconcileSubscription(ctx, before, false)
	after, err := c.db.GetSubscription(ctx, before.ID)
	if err != nil {
		c.fail(w, r, s, "read the subscription after reconciling it", err)
		return
	}
	a, err := c.recordTargeted(ctx, s.Operator, "subscription", before.ID, nil, start, rep, failed,
		subscriptionState(before), subscriptionState(after))
	if err != nil {
		c.fail(w, r, s, "record the reconcile", err)
		return
	}
	c.log.InfoContext(ctx, "console: subscription reconciled", "operator", s.Operator, "subscription_id", before.ID,
		"summary", a.Note)
	redirectDone(w, r, "/console/subscriptions/"+before.ID, []store.AuditEntry{a})
}

// recordTargeted records a targeted reconcile of one object as a pass and
// audits it, in one transaction, and returns the audit entry.
func (c *Console) recordTargeted(ctx context.Context, operator, kind, id string, purchaseID *string, start time.Time,
	rep *reconcile.Report, failed []string, before, after map[string]any) (store.AuditEntry, error) {
	healed := 0
	for _, n := range rep.Healed {
		healed += n
	}
	note := rep.Summary()
	if len(failed) > 0 {
		note += "; failed: " + strings.Join(failed, "; ")
	}
	var a store.AuditEntry
	err := c.db.InTx(ctx, func(q *store.Queries) error {
		if err := q.RecordReconcilePass(ctx, store.PassSummary{Kind: "targeted", StartedAt: start, Duration: c.now().Sub(start),
			Seen: rep.Seen, Changes: len(rep.Changes), Healed: healed, Errors: len(failed), Summary: kind + " " + id + ": " + note}); err != nil {
			return err
		}
		var err error
		a, err = c.audit(ctx, q, operator, "reconcile", kind, id, purchaseID, before,
			map[string]any{kind: after, "changes": rep.Changes}, note)
		return err
	})
	return a, err
}
