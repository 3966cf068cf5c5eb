// Pages: the overview, search, a purchase's detail with its timeline, the
// preview of an email a step sent, and the lists of failed and stuck
// steps. Every list pages by keyset; nothing loads a whole table.
package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// overviewRefresh is how often the overview reloads itself, in seconds.
const overviewRefresh = 15

// maxFlash bounds the audit entries a page reports as just done.
const maxFlash = 200

// flash returns the operator's audit entries named by the done
// parameters: what the action before this page did.
func (c *Console) flash(r *http.Request, s *session) []store.AuditEntry {
	var ids []int64
	for _, v := range r.URL.Query()["done"] {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil && len(ids) < maxFlash {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	as, err := c.db.AuditByIDs(r.Context(), ids, s.Operator)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: read the audit entries just written", "err", err)
		return nil
	}
	return as
}

// doneQuery is the query string that reports audit entries as done.
func doneQuery(as []store.AuditEntry) string {
	v := url.Values{}
	for _, a := range as {
		v.Add("done", strconv.FormatInt(a.ID, 10))
	}
	return v.Encode()
}

type statusCount struct {
	Status store.PurchaseStatus
	Count  int64
}

type alertView struct {
	Step store.Step
	Args steps.AlertArgs
}

type subscriptionCount struct {
	Status store.SubscriptionStatus
	Count  int64
}

type orderCount struct {
	Status store.OrderStatus
	Count  int64
}

type overviewView struct {
	Purchases     []statusCount
	Subscriptions []subscriptionCount
	Orders        []orderCount
	Steps         store.StepCounts
	StuckAfter    time.Duration
	Passes        []store.PassSummary
	Failing       []store.ReconcileError
	Alerts        []alertView
	Audit         []store.AuditEntry
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	now := c.now()
	o, err := c.db.ConsoleOverview(r.Context(), now, now.Add(-c.cfg.StuckAfter), 10)
	if err != nil {
		c.fail(w, r, s, "read the overview", err)
		return
	}
	v := overviewView{Steps: o.Steps, StuckAfter: c.cfg.StuckAfter, Passes: o.Passes, Failing: o.Failing, Audit: o.Audit}
	for _, st := range store.PurchaseStatuses {
		v.Purchases = append(v.Purchases, statusCount{st, o.Purchases[st]})
	}
	for _, st := range store.SubscriptionStatuses {
		v.Subscriptions = append(v.Subscriptions, subscriptionCount{st, o.Subscriptions[st]})
	}
	for _, st := range store.OrderStatuses {
		v.Orders = append(v.Orders, orderCount{st, o.Orders[st]})
	}
	for _, a := range o.Alerts {
		av := alertView{Step: a}
		_ = json.Unmarshal(a.Args, &av.Args) // an alert with odd args still shows its step
		v.Alerts = append(v.Alerts, av)
	}
	c.render(w, r, s, http.StatusOK, "overview", "Overview", v, overviewRefresh)
}

type searchView struct {
	Form          searchForm
	Statuses      []store.PurchaseStatus
	SubStatuses   []store.SubscriptionStatus
	OrderStatuses []store.OrderStatus
	Field         store.SearchField
	Error         string
	// Purchases, Subscriptions and Orders are the kinds listed, each with
	// its results and next page ("" on the last page).
	Purchases           bool
	Results             []store.Purchase
	Next                template.URL
	Subscriptions       bool
	SubscriptionResults []store.Subscription
	SubscriptionsNext   template.URL
	Orders              bool
	OrderResults        []store.Order
	OrdersNext          template.URL
	Searched            bool
}

func (c *Console) search(w http.ResponseWriter, r *http.Request, s *session) {
	form, q, err := parseSearch(r.URL.Query())
	v := searchView{Form: form, Statuses: store.PurchaseStatuses, SubStatuses: store.SubscriptionStatuses,
		OrderStatuses: store.OrderStatuses, Field: q.Field}
	if err != nil {
		v.Error = err.Error()
		c.render(w, r, s, http.StatusBadRequest, "search", "Search", v, 0)
		return
	}
	v.Purchases, v.Subscriptions, v.Orders = searchKinds(form, q.Field)
	var more, subMore, orderMore bool
	if v.Purchases {
		if v.Results, more, err = c.db.SearchPurchases(r.Context(), q); err != nil {
			c.fail(w, r, s, "search purchases", err)
			return
		}
	}
	if v.Subscriptions {
		if v.SubscriptionResults, subMore, err = c.db.SearchSubscriptions(r.Context(), subscriptionSearch(form, q)); err != nil {
			c.fail(w, r, s, "search subscriptions", err)
			return
		}
	}
	if v.Orders {
		if v.OrderResults, orderMore, err = c.db.SearchOrders(r.Context(), orderSearch(form, q)); err != nil {
			c.fail(w, r, s, "search orders", err)
			return
		}
	}
	if exactField(q.Field) && q.After == nil && form.Status == "" && q.From.IsZero() && q.To.IsZero() &&
		len(v.Results)+len(v.SubscriptionResults)+len(v.OrderResults) == 1 {
		switch {
		case len(v.Results) == 1:
			http.Redirect(w, r, "/console/purchases/"+v.Results[0].ID, http.StatusSeeOther)
		case len(v.SubscriptionResults) == 1:
			http.Redirect(w, r, "/console/subscriptions/"+v.SubscriptionResults[0].ID, http.StatusSeeOther)
		default:
			http.Redirect(w, r, "/console/orders/"+v.OrderResults[0].ID, http.StatusSeeOther)
		}
		return
	}
	v.Searched = true
	next := func(kind, cursor string) template.URL {
		n := r.URL.Query()
		n.Set("kind", kind)
		n.Set("after", cursor)
		n.Del("done")
		return template.URL("/console/search?" + n.Encode()) // built here from url.Values: safe
	}
	if more {
		v.Next = next(kindPurchases, purchaseCursor(v.Results[len(v.Results)-1]))
	}
	if subMore {
		last := v.SubscriptionResults[len(v.SubscriptionResults)-1]
		v.SubscriptionsNext = next(kindSubscriptions, subscriptionCursor(last))
	}
	if orderMore {
		v.OrdersNext = next(kindOrders, orderCursor(v.OrderResults[len(v.OrderResults)-1]))
	}
	c.render(w, r, s, http.StatusOK, "search", "Search", v, 0)
}

type purchaseView struct {
	Purchase    store.Purchase
	Product     config.Product
	HasAccess   bool // the product is delivered by an access provider
	Dashboard   string
	Customer    string
	Timeline    []entry
	Grants      []store.Grant
	Refunds     []store.Refund
	Disputes    []store.Dispute
	Audit       []store.AuditEntry
	Credits     *creditsView
	Unfinished  int
	StepsFailed int
}

// loadPurchase reads everything about the purchase named in the path; it
// reports false when it has already answered (unknown or malformed id).
func (c *Console) loadPurchase(w http.ResponseWriter, r *http.Request, s *session) (purchaseDetail, bool) {
	id := r.PathValue("id")
	if uuid.Validate(id) != nil {
		c.message(w, r, s, http.StatusNotFound, "No such purchase", "A purchase id is a UUID.")
		return purchaseDetail{}, false
	}
	ctx := r.Context()
	var d purchaseDetail
	var err error
	d.Purchase, err = c.db.GetPurchase(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, s, http.StatusNotFound, "No such purchase", "No purchase has the id "+id+".")
		return d, false
	}
	if err == nil {
		d.Steps, err = c.db.PurchaseSteps(ctx, id)
	}
	if err == nil {
		d.Grants, err = c.db.PurchaseGrants(ctx, id)
	}
	if err == nil {
		d.Refunds, err = c.db.PurchaseRefunds(ctx, id)
	}
	if err == nil {
		d.Disputes, err = c.db.PurchaseDisputes(ctx, id)
	}
	if err == nil {
		d.Audit, err = c.db.PurchaseAudit(ctx, id, 100)
	}
	if err != nil {
		c.fail(w, r, s, "read the purchase", err)
		return d, false
	}
	return d, true
}

func (c *Console) dashboard() dashboard { return dashboard{base: c.cfg.DashboardURL, live: c.live} }

// hasAccess reports whether a product is delivered by an access provider.
func hasAccess(p config.Product) bool { return p.Access == "github" || p.Access == "webhook" }

func (c *Console) purchase(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	now := c.now()
	p := d.Purchase
	prod := c.products[p.ProductKey]
	cr, err := c.credits(r.Context(), store.CreditHolder{UserID: deref(p.UserID)})
	if err != nil {
		c.fail(w, r, s, "read the buyer's credits", err)
		return
	}
	v := purchaseView{Purchase: p, Product: prod, HasAccess: hasAccess(prod), Dashboard: c.dashboard().purchase(p),
		Customer: c.dashboard().customer(p), Timeline: timeline(d, now, c.cfg.StuckAfter), Grants: d.Grants,
		Refunds: d.Refunds, Disputes: d.Disputes, Audit: d.Audit, Credits: cr}
	for _, st := range d.Steps {
		switch {
		case st.Status == store.StepFailed:
			v.StepsFailed++
		case !st.Status.Final():
			v.Unfinished++
		}
	}
	c.render(w, r, s, http.StatusOK, "purchase", "Purchase "+p.ID, v, refreshWhileRunning(d.Steps, now))
}

// emailPreview shows an email a step sent, rendered again from the
// purchase as it is now and the step's input. It is served sandboxed: no
// script, no form, no request to anywhere but images.
func (c *Console) emailPreview(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	c.serveStepEmail(w, r, s, "purchase", d.Steps, func(st store.Step, e sentEmail) (mail.Message, error) {
		return c.previewEmail(d.Purchase, st, e)
	})
}

// previewEmail renders a sent email's template again from the purchase as
// it is now and the step's input. It is a preview: a purchase or template
// that changed since renders differently from what was sent.
func (c *Console) previewEmail(p store.Purchase, s store.Step, e sentEmail) (mail.Message, error) {
	prod := c.products[p.ProductKey]
	d := mail.Data{CustomerEmail: e.To, ProductName: prod.Name, Amount: p.AmountTotal, Currency: p.Currency,
		OriginalAmount: p.AmountTotal, PurchaseID: p.ID, StripeSessionID: p.StripeSessionID,
		StripeChargeID: deref(p.StripeChargeID), GitHubUsername: deref(p.GitHubUsername), RecoveryURL: deref(p.RecoveryURL)}
	if prod.Access == "github" {
		d.RepoURL = prod.RepoURL
	}
	// The inputs of the refund, dispute and alert steps, by their JSON names.
	var a struct {
		Amount    int64  `json:"amount"`
		Refunded  int64  `json:"refunded"`
		Total     int64  `json:"total"`
		Currency  string `json:"currency"`
		Full      bool   `json:"full"`
		Reason    string `json:"reason"`
		DisputeID string `json:"dispute_id"`
		RefundID  string `json:"refund_id"`
		Status    string `json:"status"`
		Step      string `json:"step"`
		Pipeline  string `json:"pipeline"`
		LastError string `json:"last_error"`
	}
	_ = json.Unmarshal(s.Args, &a) // a step without these inputs previews without them
	if a.Currency != "" {
		d.Currency = strings.ToLower(a.Currency)
	}
	switch e.Template {
	case mail.RefundFull, mail.RefundPartial:
		d.RefundedAmount, d.OriginalAmount = a.Amount, a.Total
		d.AccessRevoked = hasAccess(prod) && a.Full
	case mail.AdminRefund:
		d.RefundedAmount, d.OriginalAmount, d.Reason, d.DisputeID = a.Refunded, a.Total, a.Reason, a.DisputeID
		d.AccessRevoked = hasAccess(prod) && a.Full
	case mail.DisputeOpened:
		d.Amount, d.DisputeID, d.Reason = a.Amount, a.DisputeID, a.Reason
	case mail.RefundReversed:
		d.RefundedAmount, d.Reason = a.Amount, "refund "+a.RefundID+" "+a.Status
	case mail.OperatorAlert:
		d.StepName, d.LastError = a.Step+" (pipeline "+a.Pipeline+")", a.LastError
	}
	if d.CustomerEmail == "" {
		d.CustomerEmail = deref(p.Email)
	}
	return c.renderer.Render(e.Template, d)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type stepsView struct {
	View       string // failed or stuck
	Steps      []stepView
	Next       template.URL
	StuckAfter time.Duration
}

func (c *Console) stepsPage(w http.ResponseWriter, r *http.Request, s *session) {
	view := r.URL.Query().Get("view")
	if view == "" {
		view = "failed"
	}
	after, err := parseStepCursor(r.URL.Query().Get("after"))
	if err != nil || (view != "failed" && view != "stuck") {
		c.message(w, r, s, http.StatusBadRequest, "Bad request", "Steps are listed as view=failed or view=stuck, from a valid page cursor.")
		return
	}
	now := c.now()
	var list []store.Step
	var more bool
	if view == "failed" {
		list, more, err = c.db.FailedSteps(r.Context(), after, pageSize)
	} else {
		list, more, err = c.db.StuckSteps(r.Context(), now, now.Add(-c.cfg.StuckAfter), after, pageSize)
	}
	if err != nil {
		c.fail(w, r, s, "list steps", err)
		return
	}
	v := stepsView{View: view, StuckAfter: c.cfg.StuckAfter}
	for _, st := range list {
		v.Steps = append(v.Steps, viewStep(st, now, c.cfg.StuckAfter))
	}
	if more {
		last := list[len(list)-1]
		at := last.UpdatedAt
		if view == "stuck" {
			at = last.RunAt
			if last.Status == store.StepRunning && last.LeaseExpiresAt != nil {
				at = *last.LeaseExpiresAt
			}
		}
		v.Next = template.URL("/console/steps?" + url.Values{"view": {view}, "after": {stepCursor(at, last.ID)}}.Encode())
	}
	c.render(w, r, s, http.StatusOK, "steps", "Steps", v, 0)
}

// timelineView is what the timeline partial receives.
type timelineView struct {
	Entries []entry
	Base    string
	Noun    string
}

// funcs are the helpers the templates use.
func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(t any) string {
			switch t := t.(type) {
			case time.Time:
				return t.UTC().Format(timeLayout)
			case *time.Time:
				if t == nil {
					return "–"
				}
				return t.UTC().Format(timeLayout)
			}
			return fmt.Sprint(t)
		},
		"ago": func(t time.Time) string { return ago(c.now().Sub(t)) },
		"money": func(amount int64, currency string) string {
			if currency == "" {
				return strconv.FormatInt(amount, 10)
			}
			return mail.FormatMoney(amount, currency)
		},
		"deref": func(s *string) string {
			if s == nil {
				return "–"
			}
			return *s
		},
		"json": func(raw json.RawMessage) string {
			if len(raw) == 0 {
				return ""
			}
			var v any
			if json.Unmarshal(raw, &v) != nil {
				return string(raw)
			}
			b, _ := json.MarshalIndent(v, "", "  ")
			return string(b)
		},
		"ms":     func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" },
		"dur":    func(d time.Duration) string { return d.String() },
		"has":    func(v stepView, action string) bool { return v.can(action) },
		"search": func(id string) string { return "/console/search?" + url.Values{"q": {id}}.Encode() },
		// timeline hands the timeline partial its entries, the subject's
		// page (under which its email previews are) and what to call it.
		"timeline": func(es []entry, base, noun string) timelineView { return timelineView{es, base, noun} },
	}
}

// ago says how long ago a duration was, roughly.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in " + strings.TrimSuffix(ago(-d), " ago")
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}
