// Health: when the reconciler last did its job, and telling the operator
// when it has stopped doing it. A polling pass (the events feed or the
// lists) that ends without a fatal error is a success; a reconciler with no
// success for several intervals has stalled, which is a metric
// (paymentd_reconcile_last_success_timestamp_seconds) and one operator
// alert per stall. An object that keeps failing backs off, and the
// operator is alerted about it once.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Defaults of the Options that govern failures and stalls.
const (
	// A failed object is retried 5 s later, then 10, 20, 40, then every
	// minute: a Stripe blip heals within seconds, and once an incident is
	// over every object it failed is caught up within a minute (a paid
	// buyer is not left waiting for an hour's backoff). An object that
	// fails for good costs one call a minute until the operator acts.
	defaultRetryBackoff    = 5 * time.Second
	defaultRetryBackoffMax = time.Minute
	// transientBackoffMax bounds the wait after a failure that was Stripe
	// unavailable (a 5xx, a 429, no answer): an incident's failures are
	// retried every 15 s at most, so everything it failed is caught up
	// within seconds of its end; the shared rate limiter, slowed by 429s,
	// keeps the retries from crowding Stripe.
	transientBackoffMax = 15 * time.Second
	// The operator hears of an object that has failed for ten minutes and
	// at least eight times in a row, not of every call a short incident
	// failed (nor of one tried once after a long stop).
	defaultAlertAfter         = 10 * time.Minute
	defaultAlertAfterFailures = 8
	defaultStallIntervals     = 5 // incremental intervals without a success
)

// alertPipeline names the reconciler in the alerts it raises.
const alertPipeline = "reconciler"

// health is what the reconciler remembers about its own passes.
type health struct {
	mu sync.Mutex
	// alive is the last time this replica knew polling was in hand: a
	// polling pass succeeded, or it skipped one because another replica
	// holds the poller lock (that replica answers for itself).
	alive time.Time
	// lastSuccess is when a polling pass last succeeded here (zero: never).
	lastSuccess time.Time
	// alertedFor is the alive time of the stall already alerted.
	alertedFor time.Time
}

func (h *health) succeeded(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSuccess, h.alive = at, at
}

func (h *health) skipped(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.alive = at
}

func (h *health) get() (alive, lastSuccess time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.alive, h.lastSuccess
}

// stallAfter is how long without a success makes a stall: Options.StallAfter,
// or five incremental intervals once Run knows the interval (0: unknown).
func (r *Reconciler) stallAfter() time.Duration {
	if r.opts.StallAfter > 0 {
		return r.opts.StallAfter
	}
	return defaultStallIntervals * time.Duration(r.interval.Load())
}

// Stalled says what is wrong when no polling pass has succeeded for the
// stall threshold (several incremental intervals), and "" otherwise. A pass
// skipped because another replica polls counts as alive: that replica
// answers for itself.
func (r *Reconciler) Stalled(now time.Time) string {
	after := r.stallAfter()
	if after <= 0 {
		return ""
	}
	alive, last := r.health.get()
	if now.Sub(alive) <= after {
		return ""
	}
	if last.IsZero() {
		return fmt.Sprintf("no reconcile pass has succeeded since this replica started at %s (stall threshold %s)",
			alive.Format(time.RFC3339), after)
	}
	return fmt.Sprintf("no reconcile pass has succeeded since %s (stall threshold %s)", last.Format(time.RFC3339), after)
}

// AlertIfStalled raises one operator alert per stall: when Stalled reports
// one not yet alerted, it schedules the alert (keyed by when the stall
// began, so replicas and repeated calls raise it once) and reports true.
// Run calls it every incremental interval; tests call it directly.
func (r *Reconciler) AlertIfStalled(ctx context.Context) (bool, error) {
	msg := r.Stalled(r.clock.Now())
	if msg == "" {
		return false, nil
	}
	r.health.mu.Lock()
	since := r.health.alive
	already := r.health.alertedFor.Equal(since)
	r.health.mu.Unlock()
	if already {
		return false, nil
	}
	err := r.db.InTx(ctx, func(q *store.Queries) error {
		return r.ful.Alert(ctx, q, fmt.Sprintf("reconcile_stalled:%d", since.Unix()), steps.AlertArgs{
			Pipeline: alertPipeline, Step: "reconcile_pass",
			LastError: msg + ". Purchases, refunds and expiries are not being applied; check the logs and Stripe's status.",
		})
	})
	if err != nil {
		return false, fmt.Errorf("alert the operator of a stall: %w", err)
	}
	r.health.mu.Lock()
	r.health.alertedFor = since
	r.health.mu.Unlock()
	r.log.Error("reconciler stalled; operator alerted", "problem", msg)
	return true, nil
}

// retryBackoff is how long an object that failed attempts times in a row
// waits before its next attempt: base, doubling per failure, capped.
func retryBackoff(attempts int, base, maxWait time.Duration) time.Duration {
	d := base
	for i := 1; i < attempts && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// recordFailure records that an object failed once more, dates its next
// attempt by retryBackoff, and alerts the operator once it has failed
// AlertAfterFailures times in a row over AlertAfter (once per run of
// failures). A failure that was Stripe unavailable waits at most
// transientBackoffMax.
func (r *Reconciler) recordFailure(ctx context.Context, id string, cause error) error {
	now := r.clock.Now()
	kind := kindOf(id)
	return r.db.InTx(ctx, func(q *store.Queries) error {
		e, err := q.RecordReconcileError(ctx, kind, id, cause.Error(), now, now)
		if err != nil {
			return err
		}
		maxWait := r.opts.RetryBackoffMax
		if transient(cause) {
			maxWait = min(maxWait, transientBackoffMax)
		}
		next := now.Add(retryBackoff(e.Attempts, r.opts.RetryBackoff, maxWait))
		if err := q.SetReconcileRetry(ctx, kind, id, next); err != nil {
			return err
		}
		if e.Attempts < r.opts.AlertAfterFailures || now.Sub(e.FirstSeen) < r.opts.AlertAfter {
			return nil
		}
		return r.ful.Alert(ctx, q, fmt.Sprintf("reconcile_object:%s:%d", id, e.FirstSeen.Unix()), steps.AlertArgs{
			Pipeline: alertPipeline, Step: "reconcile " + kind, Attempts: e.Attempts,
			LastError: fmt.Sprintf("Stripe %s %s has failed to reconcile %d times in a row since %s; it is retried with backoff "+
				"(next at %s). Last error: %s", kind, id, e.Attempts, e.FirstSeen.Format(time.RFC3339), next.Format(time.RFC3339), e.Error),
		})
	})
}

// transient reports whether err is Stripe unavailable rather than an
// answer about the object: a 5xx, a 429, or no answer at all.
func transient(err error) bool {
	var se *stripe.Error
	if errors.As(err, &se) {
		return se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= http.StatusInternalServerError
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}
