// Views: what the pages show, decided by pure functions from rows, so each
// decision (what a search box means, which actions a step offers, when a
// step is stuck, the order of a timeline, where the Dashboard link goes)
// is tested as a table, apart from any HTTP or SQL.
package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

// pageSize is how many rows a list shows per page.
const pageSize = 50

// stripePrefixes maps a Stripe id's prefix to the purchase field it names.
var stripePrefixes = []struct {
	prefix string
	field  store.SearchField
}{
	{"cs_", store.SearchSession},
	{"pi_", store.SearchPaymentIntent},
	{"ch_", store.SearchCharge},
	{"py_", store.SearchCharge},
	{"cus_", store.SearchCustomer},
	{"sub_", store.SearchSubscription},
	{"in_", store.SearchInvoice},
}

// parseQuery says what a search box's text names: an email (it has an @),
// a Stripe id (by its prefix), a purchase id (a UUID), or else a user id.
func parseQuery(q string) (store.SearchField, string) {
	q = strings.TrimSpace(q)
	switch {
	case q == "":
		return store.SearchAny, ""
	case strings.Contains(q, "@"):
		return store.SearchEmail, q
	}
	for _, p := range stripePrefixes {
		if strings.HasPrefix(q, p.prefix) {
			return p.field, q
		}
	}
	if u, err := uuid.Parse(q); err == nil {
		return store.SearchPurchaseID, u.String()
	}
	return store.SearchUserID, q
}

// exactField reports whether a field names at most one purchase,
// subscription or order, so a search that finds one can open it directly.
func exactField(f store.SearchField) bool {
	return f == store.SearchPurchaseID || f == store.SearchSession || f == store.SearchPaymentIntent ||
		f == store.SearchCharge || f == store.SearchSubscription || f == store.SearchInvoice
}

// Kinds of object a search lists; "" lists every kind the query can name.
const (
	kindPurchases     = "purchases"
	kindSubscriptions = "subscriptions"
	kindOrders        = "orders"
)

// searchKinds decides which kinds a search lists: those the field can
// name, narrowed to the kind asked for; a status alone names a purchase
// status unless the kind says otherwise.
func searchKinds(f searchForm, field store.SearchField) (purchases, subscriptions, orders bool) {
	purchaseField := field != store.SearchSubscription && field != store.SearchInvoice
	purchases = purchaseField && (f.Kind == "" || f.Kind == kindPurchases)
	subscriptions = store.SubscriptionSearchable(field) && (f.Kind == kindSubscriptions || (f.Kind == "" && f.Status == ""))
	orders = store.OrderSearchable(field) && (f.Kind == kindOrders || (f.Kind == "" && f.Status == ""))
	return purchases, subscriptions, orders
}

// orderSearch is the order half of a parsed search.
func orderSearch(f searchForm, ps store.PurchaseSearch) store.OrderSearch {
	s := store.OrderSearch{Field: ps.Field, Value: ps.Value, From: ps.From, To: ps.To, After: ps.After, Limit: ps.Limit}
	if f.Kind == kindOrders {
		s.Status = store.OrderStatus(f.Status)
	}
	return s
}

// orderCursor encodes where a page of orders ended.
func orderCursor(o store.Order) string {
	return o.CreatedAt.UTC().Format(time.RFC3339Nano) + "_" + o.ID
}

// subscriptionSearch is the subscription half of a parsed search.
func subscriptionSearch(f searchForm, ps store.PurchaseSearch) store.SubscriptionSearch {
	s := store.SubscriptionSearch{Field: ps.Field, Value: ps.Value, From: ps.From, To: ps.To, After: ps.After,
		Limit: ps.Limit}
	if f.Kind == kindSubscriptions {
		s.Status = store.SubscriptionStatus(f.Status)
	}
	return s
}

// dateLayout is how the search form's dates read (an <input type=date>).
const dateLayout = "2006-01-02"

// searchForm is the search page's query, as typed.
type searchForm struct {
	Q, Kind, Status, From, To, After string
}

// parseSearch turns the search page's parameters into a store search.
// Bad input is an error that says what is wrong.
func parseSearch(v url.Values) (searchForm, store.PurchaseSearch, error) {
	f := searchForm{Q: strings.TrimSpace(v.Get("q")), Kind: v.Get("kind"), Status: v.Get("status"), From: v.Get("from"),
		To: v.Get("to"), After: v.Get("after")}
	s := store.PurchaseSearch{Limit: pageSize}
	s.Field, s.Value = parseQuery(f.Q)
	if len(f.Q) > 200 {
		return f, s, errors.New("the search text is longer than 200 characters")
	}
	switch {
	case f.Kind != "" && f.Kind != kindPurchases && f.Kind != kindSubscriptions && f.Kind != kindOrders:
		return f, s, fmt.Errorf("unknown kind %q (purchases, subscriptions or orders)", f.Kind)
	case f.Kind == kindSubscriptions && f.Status != "":
		if !slices.Contains(store.SubscriptionStatuses, store.SubscriptionStatus(f.Status)) {
			return f, s, fmt.Errorf("unknown subscription status %q", f.Status)
		}
	case f.Kind == kindOrders && f.Status != "":
		if !slices.Contains(store.OrderStatuses, store.OrderStatus(f.Status)) {
			return f, s, fmt.Errorf("unknown order status %q", f.Status)
		}
	case f.Status != "":
		if !slices.Contains(store.PurchaseStatuses, store.PurchaseStatus(f.Status)) {
			return f, s, fmt.Errorf("unknown status %q", f.Status)
		}
		s.Status = store.PurchaseStatus(f.Status)
	}
	var err error
	if f.From != "" {
		if s.From, err = time.Parse(dateLayout, f.From); err != nil {
			return f, s, fmt.Errorf("the from date %q is not a date like 2026-04-01", f.From)
		}
	}
	if f.To != "" {
		to, err := time.Parse(dateLayout, f.To)
		if err != nil {
			return f, s, fmt.Errorf("the to date %q is not a date like 2026-04-01", f.To)
		}
		s.To = to.AddDate(0, 0, 1) // the whole of the last day
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return f, s, errors.New("the from date is after the to date")
	}
	if f.After != "" {
		c, err := parsePurchaseCursor(f.After)
		if err != nil {
			return f, s, err
		}
		s.After = &c
	}
	return f, s, nil
}

// purchaseCursor encodes where a page of purchases ended.
func purchaseCursor(p store.Purchase) string {
	return p.CreatedAt.UTC().Format(time.RFC3339Nano) + "_" + p.ID
}

// subscriptionCursor encodes where a page of subscriptions ended: the
// same keyset as purchases'.
func subscriptionCursor(s store.Subscription) string {
	return s.CreatedAt.UTC().Format(time.RFC3339Nano) + "_" + s.ID
}

func parsePurchaseCursor(s string) (store.PurchaseCursor, error) {
	at, id, ok := strings.Cut(s, "_")
	t, err := time.Parse(time.RFC3339Nano, at)
	if !ok || err != nil || uuid.Validate(id) != nil {
		return store.PurchaseCursor{}, errors.New("the page cursor is malformed; start from the first page")
	}
	return store.PurchaseCursor{CreatedAt: t, ID: id}, nil
}

// stepCursor encodes where a page of steps ended, at the time it is
// ordered by.
func stepCursor(at time.Time, id int64) string {
	return at.UTC().Format(time.RFC3339Nano) + "_" + strconv.FormatInt(id, 10)
}

func parseStepCursor(s string) (*store.StepCursor, error) {
	if s == "" {
		return nil, nil
	}
	at, id, ok := strings.Cut(s, "_")
	t, err := time.Parse(time.RFC3339Nano, at)
	n, nerr := strconv.ParseInt(id, 10, 64)
	if !ok || err != nil || nerr != nil {
		return nil, errors.New("the page cursor is malformed; start from the first page")
	}
	return &store.StepCursor{At: t, ID: n}, nil
}

// dashboard builds links to objects in the Stripe Dashboard: test-mode
// objects live under /test.
type dashboard struct {
	base string
	live bool
}

func (d dashboard) url(path string) string {
	base := strings.TrimRight(d.base, "/")
	if !d.live {
		base += "/test"
	}
	return base + path
}

// purchase links a purchase: its payment once there is one, else a search
// for its Checkout Session.
func (d dashboard) purchase(p store.Purchase) string {
	if p.StripePaymentIntentID != nil && *p.StripePaymentIntentID != "" {
		return d.url("/payments/" + url.PathEscape(*p.StripePaymentIntentID))
	}
	return d.url("/search?query=" + url.QueryEscape(p.StripeSessionID))
}

// subscription links a subscription.
func (d dashboard) subscription(s store.Subscription) string {
	return d.url("/subscriptions/" + url.PathEscape(s.StripeSubscriptionID))
}

// customerID links the customer with id, or "" for none.
func (d dashboard) customerID(id string) string {
	if id == "" {
		return ""
	}
	return d.url("/customers/" + url.PathEscape(id))
}

// customer links a customer, or "" for none.
func (d dashboard) customer(p store.Purchase) string {
	if p.StripeCustomerID == nil || *p.StripeCustomerID == "" {
		return ""
	}
	return d.url("/customers/" + url.PathEscape(*p.StripeCustomerID))
}

// Step actions an operator may take.
const (
	actionRetry  = "retry"
	actionCancel = "cancel"
	actionResend = "resend"
)

// sentEmail is what an email step's result says it did: the recorded
// result of every email handler ({"sent", "template", "to", "skipped"}).
type sentEmail struct {
	Sent     bool   `json:"sent"`
	Template string `json:"template"`
	To       string `json:"to"`
	Skipped  string `json:"skipped"`
}

// emailOf reads a step's result as an email's; ok is false for a step
// that is not an email (or has not finished).
func emailOf(s store.Step) (sentEmail, bool) {
	var e sentEmail
	if s.Status != store.StepDone || len(s.Result) == 0 || json.Unmarshal(s.Result, &e) != nil {
		return e, false
	}
	return e, e.Sent && e.Template != ""
}

// stepView is a step as the pages show it.
type stepView struct {
	store.Step
	// Email is set for a done step that sent an email.
	Email *sentEmail
	// Skipped says why a done step did nothing, when it recorded why.
	Skipped string
	// Stuck says why the step is stuck, or "".
	Stuck   string
	Actions []string
}

// viewStep decides how a step shows and what can be done to it: a failed
// step can be retried, one not yet run canceled, a sent email resent.
func viewStep(s store.Step, now time.Time, stuckAfter time.Duration) stepView {
	v := stepView{Step: s}
	if e, ok := emailOf(s); ok {
		v.Email = &e
	} else if s.Status == store.StepDone && len(s.Result) > 0 {
		var r struct {
			Skipped string `json:"skipped"`
		}
		if json.Unmarshal(s.Result, &r) == nil {
			v.Skipped = r.Skipped
		}
	}
	switch s.Status {
	case store.StepFailed:
		v.Actions = []string{actionRetry}
	case store.StepWaiting, store.StepPending:
		v.Actions = []string{actionCancel}
	case store.StepDone:
		if v.Email != nil && s.PurchaseID != nil { // a resend is a new pipeline of a purchase
			v.Actions = []string{actionResend}
		}
	}
	switch {
	case s.Status == store.StepRunning && s.LeaseExpiresAt != nil && s.LeaseExpiresAt.Before(now):
		v.Stuck = "running past its lease (since " + s.LeaseExpiresAt.UTC().Format(timeLayout) + "): its worker is gone"
	case s.Status == store.StepPending && s.RunAt.Before(now.Add(-stuckAfter)):
		v.Stuck = "pending since " + s.RunAt.UTC().Format(timeLayout) + ": no worker has taken it"
	}
	return v
}

// can reports whether v offers action.
func (v stepView) can(action string) bool { return slices.Contains(v.Actions, action) }

// timeLayout is how the console prints times: always UTC.
const timeLayout = "2006-01-02 15:04:05Z"

// entry is one line of a purchase's timeline.
type entry struct {
	At   time.Time
	Kind string // purchase, subscription, order, step, grant, refund, dispute, invoice, audit
	Text string // for purchase, subscription and order entries
	Step *stepView
	// Grant (OrderGrant), Refund (OrderRefund), Dispute (OrderDispute),
	// Invoice and Audit are set for their kinds.
	Grant        *store.Grant
	OrderGrant   *store.OrderGrant
	Refund       *store.Refund
	OrderRefund  *store.OrderRefund
	Dispute      *store.Dispute
	OrderDispute *store.OrderDispute
	Invoice      *store.Invoice
	Audit        *store.AuditEntry
}

// purchaseDetail is everything known about one purchase.
type purchaseDetail struct {
	Purchase store.Purchase
	Steps    []store.Step
	Grants   []store.Grant
	Refunds  []store.Refund
	Disputes []store.Dispute
	Audit    []store.AuditEntry
}

// timeline orders everything that happened to a purchase, oldest first:
// its creation and completion, each step (when it was scheduled), each
// access change, refund and dispute, and each operator action. Entries at
// the same moment keep that order.
func timeline(d purchaseDetail, now time.Time, stuckAfter time.Duration) []entry {
	p := d.Purchase
	es := []entry{{At: p.CreatedAt, Kind: "purchase", Text: "checkout started (" + p.StripeSessionID + ")"}}
	if p.CompletedAt != nil {
		es = append(es, entry{At: *p.CompletedAt, Kind: "purchase", Text: "paid"})
	}
	if p.ExpiredAt != nil {
		es = append(es, entry{At: *p.ExpiredAt, Kind: "purchase", Text: "checkout expired"})
	}
	var more []entry
	for i := range d.Grants {
		more = append(more, entry{At: d.Grants[i].UpdatedAt, Kind: "grant", Grant: &d.Grants[i]})
	}
	for i := range d.Refunds {
		more = append(more, entry{At: d.Refunds[i].CreatedAt, Kind: "refund", Refund: &d.Refunds[i]})
	}
	for i := range d.Disputes {
		more = append(more, entry{At: d.Disputes[i].CreatedAt, Kind: "dispute", Dispute: &d.Disputes[i]})
	}
	return subjectTimeline(es, d.Steps, more, d.Audit, now, stuckAfter)
}

// inFlight reports whether any step of the purchase is due to run within
// a minute (or running), so its page reloads itself to show the outcome.
func inFlight(steps []store.Step, now time.Time) bool {
	for _, s := range steps {
		if s.Status == store.StepRunning || (s.Status == store.StepPending && s.RunAt.Before(now.Add(time.Minute))) {
			return true
		}
	}
	return false
}

// resendPipeline names the pipeline of the n-th resend of a purchase's
// emails: never a pipeline that exists, so a done step is never run again.
func resendPipeline(existing []store.Step) string {
	seen := map[string]bool{}
	for _, s := range existing {
		if strings.HasPrefix(s.Pipeline, resendPrefix) {
			seen[s.Pipeline] = true
		}
	}
	for n := len(seen) + 1; ; n++ {
		if name := resendPrefix + strconv.Itoa(n); !seen[name] {
			return name
		}
	}
}

// resendPrefix starts the name of a resend's pipeline.
const resendPrefix = "resend:"
