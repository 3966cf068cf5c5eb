// The reconciler proper: options, the report of a pass, and the dispatch
// from a Stripe object id to the code that makes the database agree with it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Options configures a Reconciler. Zero durations take the defaults noted.
type Options struct {
	DB          *store.DB
	Stripe      *stripeapi.API
	Fulfillment Fulfillment
	Clock       clock.Clock
	Log         *slog.Logger
	// Products are the catalog; a session not made by paymentd is matched
	// to a product by its price's lookup key.
	Products []config.Product
	// Overlap is re-read before each listing cursor; default 10m.
	Overlap time.Duration
	// DeepWindow is how far back the deep pass lists; default 30 days.
	DeepWindow time.Duration
	// RecheckAfter is how often an open purchase is compared with Stripe
	// without a signal; default 1h.
	RecheckAfter time.Duration
	// Access checks GitHub for the access drift pass; nil checks only
	// the database.
	Access AccessChecker
	// Metrics may be nil.
	Metrics *Metrics
	// PassBudget bounds each scheduled pass: past it the pass stops, and
	// the next one resumes where it stopped (the list walk and the events
	// feed keep their place). Zero means no bound (a one-off pass).
	PassBudget time.Duration
	// RetryBackoff is how long an object that failed waits before its next
	// attempt, doubling per failure in a row up to RetryBackoffMax;
	// defaults 5s and 1m.
	RetryBackoff, RetryBackoffMax time.Duration
	// AlertAfterFailures and AlertAfter: an object that has failed that
	// many times in a row, for that long, alerts the operator (once);
	// defaults 8 and 10m.
	AlertAfterFailures int
	AlertAfter         time.Duration
	// StallAfter is how long without a successful polling pass alerts the
	// operator (once per stall); default five incremental intervals.
	StallAfter time.Duration
	// Orders schedules the steps of orders' transitions (cart checkouts);
	// nil records the transitions without scheduling anything.
	Orders OrderFulfillment
	// Concurrency is how many objects a pass reconciles at once; default 8.
	// They share the Stripe client's rate limiter.
	Concurrency int
	// Subscriptions configures the reconcile of subscriptions
	// (subscription.go).
	Subscriptions SubscriptionOptions
}

// Reconciler makes the database agree with Stripe.
type Reconciler struct {
	db      *store.DB
	stripe  *stripeapi.API
	ful     Fulfillment
	clock   clock.Clock
	log     *slog.Logger
	opts    Options
	metrics *Metrics
	// products are the configured products, by key (see adopt).
	products map[string]config.Product
	// subPrices are the configured subscription prices by lookup key.
	subPrices map[string]config.ProductPrice

	passMu   sync.Mutex   // one polling pass at a time in this process
	hintsMu  sync.Mutex   // one targeted (hints) pass at a time, beside it
	interval atomic.Int64 // of the incremental pass in ns, once Run started
	// pollFailures counts the incremental passes in a row that failed as a
	// whole (a list call, the database); rerunning is set while one waits
	// to run again (run.go).
	pollFailures atomic.Int64
	rerunning    atomic.Bool
	health       health
	progress     progress
	// inFlight counts objects being reconciled; backlog those queued by a
	// pass and not yet started.
	inFlight, backlog atomic.Int64
}

// New returns a reconciler.
func New(opts Options) *Reconciler {
	if opts.Overlap <= 0 {
		opts.Overlap = 10 * time.Minute
	}
	if opts.DeepWindow <= 0 {
		opts.DeepWindow = 30 * 24 * time.Hour
	}
	if opts.RecheckAfter <= 0 {
		opts.RecheckAfter = time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = defaultRetryBackoff
	}
	if opts.RetryBackoffMax < opts.RetryBackoff {
		opts.RetryBackoffMax = max(defaultRetryBackoffMax, opts.RetryBackoff)
	}
	if opts.AlertAfter <= 0 {
		opts.AlertAfter = defaultAlertAfter
	}
	if opts.AlertAfterFailures <= 0 {
		opts.AlertAfterFailures = defaultAlertAfterFailures
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultConcurrency
	}
	products := make(map[string]config.Product, len(opts.Products))
	for _, p := range opts.Products {
		products[p.Key] = p
	}
	r := &Reconciler{db: opts.DB, stripe: opts.Stripe, ful: opts.Fulfillment, clock: opts.Clock, log: opts.Log,
		opts: opts, metrics: opts.Metrics, products: products, subPrices: subscriptionPrices(opts.Products)}
	r.health.alive = opts.Clock.Now()
	r.metrics.bind(r)
	return r
}

// Change is one difference the reconciler found and fixed.
type Change struct {
	Kind       string `json:"kind"` // session, charge, refund, dispute, access
	ObjectID   string `json:"object_id"`
	PurchaseID string `json:"purchase_id,omitempty"`
	What       string `json:"what"` // created, completed, expired, failed, refunded, ...
	// Unannounced is set when no webhook ever mentioned the object: the
	// reconciler healed a missed webhook.
	Unannounced bool `json:"unannounced"`
}

// ObjectError is an object the reconciler could not reconcile this time.
type ObjectError struct {
	Kind     string `json:"kind"`
	ObjectID string `json:"object_id"`
	Error    string `json:"error"`
}

// Report says what a pass saw, what differed, and what it did.
type Report struct {
	DryRun bool `json:"dry_run"`
	Seen   int  `json:"objects_seen"`
	// Changes and Errors list the first reportListed of each; the counts
	// below are complete, and ChangesOmitted and ErrorsOmitted say how many
	// more there were, so a pass over a long history keeps its memory flat.
	Changes        []Change      `json:"changes"`
	Errors         []ObjectError `json:"errors"`
	ChangesOmitted int           `json:"changes_omitted,omitempty"`
	ErrorsOmitted  int           `json:"errors_omitted,omitempty"`
	// Counts by what was done: created, completed, expired, failed,
	// refunded, partially_refunded, refund_reversed, disputed, access_repaired.
	Counts map[string]int `json:"counts"`
	// Healed counts, by kind, changes no webhook had announced.
	Healed map[string]int `json:"healed_without_webhook"`
	// Skipped counts, by reason, the Checkout Sessions seen that are not
	// paymentd's (see SkipReason): each is left alone.
	Skipped  map[SkipReason]int `json:"skipped"`
	Duration time.Duration      `json:"duration_ns"`
	// Interrupted says why the pass stopped early ("" when it ran to the
	// end); the next pass resumes where it stopped.
	Interrupted string `json:"interrupted,omitempty"`

	mu          sync.Mutex
	fatal       bool            // a part of the pass failed as a whole (see failPass)
	skippedSeen map[string]bool // sessions counted in Skipped: each once per pass
}

// NewReport returns an empty report, for a caller that reconciles single
// objects with Object (the operator console's targeted reconcile).
func NewReport(dry bool) *Report { return newReport(dry) }

func newReport(dry bool) *Report {
	return &Report{DryRun: dry, Counts: map[string]int{}, Healed: map[string]int{}, Skipped: map[SkipReason]int{},
		Changes: []Change{}, Errors: []ObjectError{}, skippedSeen: map[string]bool{}}
}

// skip counts a session that is not paymentd's, once per pass however
// many signals lead to it.
func (r *Report) skip(sessionID string, why SkipReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.skippedSeen[sessionID] {
		return
	}
	if len(r.skippedSeen) < doneCap {
		r.skippedSeen[sessionID] = true
	}
	r.Skipped[why]++
}

// reportListed is how many changes and errors a report lists.
const reportListed = 10000

func (r *Report) seen(n int) {
	r.mu.Lock()
	r.Seen += n
	r.mu.Unlock()
}

func (r *Report) add(c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.Changes) < reportListed {
		r.Changes = append(r.Changes, c)
	} else {
		r.ChangesOmitted++
	}
	r.Counts[c.What]++
	if c.Unannounced {
		r.Healed[c.Kind]++
	}
}

func (r *Report) fail(kind, id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addError(ObjectError{Kind: kind, ObjectID: id, Error: err.Error()})
}

// failPass records that a part of the pass failed as a whole (a listing
// could not be read, a query failed): the pass is not a success.
func (r *Report) failPass(part string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addError(ObjectError{Kind: part, Error: err.Error()})
	r.fatal = true
}

func (r *Report) addError(e ObjectError) {
	if len(r.Errors) < reportListed {
		r.Errors = append(r.Errors, e)
	} else {
		r.ErrorsOmitted++
	}
}

// Converged reports whether the pass ended with no errors.
func (r *Report) Converged() bool { return len(r.Errors) == 0 && r.ErrorsOmitted == 0 }

// Summary is a one-line account of the report.
func (r *Report) Summary() string {
	keys := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{fmt.Sprintf("seen %d", r.Seen)}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Counts[k]))
	}
	skipped := 0
	for _, n := range r.Skipped {
		skipped += n
	}
	if skipped > 0 {
		parts = append(parts, fmt.Sprintf("skipped %d", skipped))
	}
	parts = append(parts, fmt.Sprintf("errors %d", len(r.Errors)+r.ErrorsOmitted))
	return strings.Join(parts, ", ")
}

// errDryRun rolls back a dry run's transaction.
var errDryRun = errors.New("dry run: rolled back")

// inTx runs fn in a transaction; in a dry run it always rolls back, so
// the pass computes every difference and changes nothing.
func (r *Reconciler) inTx(ctx context.Context, rep *Report, fn func(q *store.Queries) error) error {
	err := r.db.InTx(ctx, func(q *store.Queries) error {
		if err := fn(q); err != nil {
			return err
		}
		if rep.DryRun {
			return errDryRun
		}
		return nil
	})
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

// kindOf names the kind of a Stripe object from its id prefix.
func kindOf(id string) string {
	switch {
	case strings.HasPrefix(id, "cs_"):
		return kindSession
	case strings.HasPrefix(id, "ch_") || strings.HasPrefix(id, "py_"):
		return kindCharge
	case strings.HasPrefix(id, "re_") || strings.HasPrefix(id, "pyr_"):
		return kindRefund
	case strings.HasPrefix(id, "dp_") || strings.HasPrefix(id, "du_"):
		return kindDispute
	case strings.HasPrefix(id, "pi_"):
		return kindPaymentIntent
	case orderIDOf(map[string]string{"order_id": id}) != "":
		return kindOrder // the sweep's name for an order, whatever its Stripe object
	case strings.HasPrefix(id, "sub_"):
		return kindSubscription
	case strings.HasPrefix(id, "in_"):
		return kindInvoice
	case strings.HasPrefix(id, "cus_"):
		return kindCustomer
	}
	return "unknown"
}

// Object reconciles the one Stripe object id names: it retrieves the
// object's current state and makes the database agree.
func (r *Reconciler) Object(ctx context.Context, id string, rep *Report) error {
	var err error
	switch kindOf(id) {
	case kindSession:
		err = r.session(ctx, id, rep)
	case kindCharge:
		err = r.charge(ctx, id, rep)
	case kindRefund:
		var re *stripe.Refund
		if re, err = r.stripe.Refund(ctx, id); err == nil {
			rep.seen(1)
			if re.Charge == nil {
				return nil // a refund of something that is not a charge: not ours
			}
			err = r.charge(ctx, re.Charge.ID, rep)
		}
	case kindDispute:
		var d *stripe.Dispute
		if d, err = r.stripe.Dispute(ctx, id); err == nil {
			err = r.applyDispute(ctx, d, rep)
		}
	case kindPaymentIntent:
		var order bool
		if order, err = r.orderObject(ctx, id, rep); err == nil && !order {
			var s *stripe.CheckoutSession
			if s, err = r.stripe.CheckoutSessionByPaymentIntent(ctx, id); err == nil && s != nil {
				err = r.applySession(ctx, s, nil, rep)
			}
		}
	case kindOrder:
		var o store.Order
		if o, err = r.db.GetOrder(ctx, id); err == nil {
			err = r.reconcileOrder(ctx, o, rep)
		}
	case kindSubscription:
		err = r.subscription(ctx, id, nil, rep)
	case kindInvoice:
		err = r.invoice(ctx, id, rep)
	case kindCustomer:
		err = r.customer(ctx, id, rep)
	default:
		return fmt.Errorf("reconcile %s: unknown kind of Stripe object", id)
	}
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", id, err)
	}
	return nil
}

// session retrieves a checkout session and applies it.
func (r *Reconciler) session(ctx context.Context, id string, rep *Report) error {
	s, err := r.stripe.CheckoutSession(ctx, id)
	if err != nil {
		return err
	}
	return r.applySession(ctx, s, nil, rep)
}

// unannounced reports whether no webhook ever named objectID.
func unannounced(ctx context.Context, q *store.Queries, objectID string) (bool, error) {
	has, err := q.HasHint(ctx, objectID)
	return !has, err
}

// record adds a change to the report and the metrics, looking up whether
// a webhook announced it.
func (r *Reconciler) record(ctx context.Context, q *store.Queries, rep *Report, c Change) error {
	un, err := unannounced(ctx, q, c.ObjectID)
	if err != nil {
		return err
	}
	c.Unannounced = un
	r.report(rep, c)
	return nil
}

// report adds a change whose Unannounced is known to the report and logs it.
func (r *Reconciler) report(rep *Report, c Change) {
	rep.add(c)
	r.log.Info("reconciled", "kind", c.Kind, "object_id", c.ObjectID, "purchase_id", c.PurchaseID, "what", c.What,
		"unannounced", c.Unannounced, "dry_run", rep.DryRun)
}

// isNotFound reports whether Stripe said the object does not exist.
func isNotFound(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && (se.Code == stripe.ErrorCodeResourceMissing || se.HTTPStatusCode == 404)
}
