// Passes: what triggers the reconciler and what each pass covers. Only one
// replica polls Stripe at a time: a polling pass runs under a Postgres
// advisory lock, and a replica that cannot take it skips the pass. A pass
// that only handles webhook hints takes a lock of its own, so it runs
// beside a long polling pass instead of waiting behind it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
)

// PassOptions selects what a pass covers.
type PassOptions struct {
	// Events reads Stripe's events feed from its cursor, oldest first.
	Events bool
	// Lists lists checkout sessions, refunds and disputes created since
	// Since (zero: the earlier of the list cursor minus the overlap and
	// now minus the deep window).
	Lists bool
	Since time.Time
	// Pending re-checks open purchases whose session may have changed.
	Pending bool
	// Hints handles webhook hints not yet handled.
	Hints bool
	// Retries retries objects that failed in earlier passes and are due.
	Retries bool
	// Access compares recorded access with what it should be.
	Access bool
	// DryRun computes every difference and changes nothing.
	DryRun bool
	// Wait waits for the poller lock instead of skipping the pass.
	Wait bool
	// Budget bounds the pass's duration (zero: none). Past it the pass
	// stops; the next one resumes the list walk and the events feed where
	// this one stopped.
	Budget time.Duration
}

// Pass kinds.
var (
	// Incremental is the frequent pass: the events feed, open purchases,
	// hints and retries.
	Incremental = PassOptions{Events: true, Pending: true, Hints: true, Retries: true}
	// Deep is the slow-drift pass over the resource lists.
	Deep = PassOptions{Lists: true, Pending: true, Hints: true, Retries: true}
	// AccessDrift is the access check.
	AccessDrift = PassOptions{Access: true}
	// HintsOnly handles freshly stored webhook hints and the objects
	// whose retry is due: the targeted pass, which runs beside the others.
	HintsOnly = PassOptions{Hints: true, Retries: true}
)

// ErrLocked means another replica holds the poller lock.
var ErrLocked = errors.New("another replica is polling Stripe")

// errLockLost is why a pass stops when its lock's session ends.
var errLockLost = errors.New("the poller lock's database session ended")

// eventsRetention is how long Stripe keeps events.
const eventsRetention = 30 * 24 * time.Hour

// walkName names the list walk in reconcile_walks.
const walkName = "lists"

// RunPass runs one pass named name (for logs and metrics) and reports what
// it found and did. It returns ErrLocked when another replica polls. A
// polling pass (events or lists) that ends without a fatal error, or that
// stops at its budget, is a success for the stall check. A pass that only
// handles webhook hints is targeted: it runs beside a long pass instead of
// waiting for it.
func (r *Reconciler) RunPass(ctx context.Context, name string, o PassOptions) (*Report, error) {
	mu, key := &r.passMu, store.PollerLockKey
	if o.targeted() {
		mu, key = &r.hintsMu, store.HintsLockKey
	}
	mu.Lock()
	defer mu.Unlock()
	start := time.Now()
	rep := newReport(o.DryRun)
	lock, err := r.lock(ctx, key, o.Wait)
	if err != nil {
		if errors.Is(err, ErrLocked) && !o.targeted() {
			r.health.skipped(r.clock.Now())
		}
		return rep, err
	}
	defer lock.Release()

	// A pass stops when its lock's session is found gone: another replica
	// may be polling under the lock by then.
	// The budget's context is a child of that one, so the cause reaches it.
	lctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-lock.Lost():
			stop(errLockLost)
		case <-lctx.Done():
		}
	}()
	pctx := lctx
	if o.Budget > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(lctx, o.Budget)
		defer cancel()
	}
	p := &pass{r: r, rep: rep, done: map[string]objectState{}, opts: o}
	p.work = newWorkers(pctx, p, r.opts.Concurrency)
	if !o.targeted() {
		r.progress.begin(name, start, rep)
		defer r.progress.finish()
	}
	p.run(pctx)
	lockLost := errors.Is(context.Cause(pctx), errLockLost)
	switch {
	case lockLost:
		rep.Interrupted = "stopped: its lock's database session ended, so another replica may poll now; the next pass resumes where it stopped"
		r.log.Warn("reconcile pass lost its lock", "pass", name)
	case pctx.Err() != nil && ctx.Err() == nil:
		rep.Interrupted = fmt.Sprintf("stopped at its time budget of %s; the next pass resumes where it stopped", o.Budget)
	}
	rep.Duration = time.Since(start)
	now := r.clock.Now()
	polled := o.Events || o.Lists
	if polled && !rep.fatal && !lockLost && ctx.Err() == nil && !o.DryRun {
		r.health.succeeded(now)
		r.metrics.succeeded(now)
	}
	r.metrics.observe(name, rep, rep.Duration, now)
	level := r.log.Debug
	if len(rep.Changes) > 0 || len(rep.Errors) > 0 || rep.Interrupted != "" {
		level = r.log.Info
	}
	level("reconcile pass", "pass", name, "summary", rep.Summary(), "healed_without_webhook", rep.Healed,
		"duration", rep.Duration.String(), "dry_run", o.DryRun, "interrupted", rep.Interrupted)
	r.recordPass(ctx, name, start, rep)
	return rep, nil
}

// recordPass keeps a summary of the pass for the operator console: every
// pass that changed something, failed on something or was stopped, and
// every pass that is not one of the frequent incremental or hints passes.
// An idle frequent pass writes nothing, as it writes nothing else.
func (r *Reconciler) recordPass(ctx context.Context, name string, start time.Time, rep *Report) {
	eventful := len(rep.Changes) > 0 || len(rep.Errors) > 0 || rep.Interrupted != ""
	if !eventful && (name == "incremental" || name == "hints") {
		return
	}
	healed := 0
	for _, n := range rep.Healed {
		healed += n
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := r.db.RecordReconcilePass(wctx, store.PassSummary{Kind: name, StartedAt: start, Duration: rep.Duration,
		Seen: rep.Seen, Changes: len(rep.Changes), Healed: healed, Errors: len(rep.Errors), DryRun: rep.DryRun,
		Summary: rep.Summary()})
	if err != nil {
		r.log.Warn("record reconcile pass summary", "pass", name, "err", err)
	}
}

// targeted reports whether a pass only reconciles named objects: webhook
// hints and due retries.
func (o PassOptions) targeted() bool {
	return o.Hints && !o.Events && !o.Lists && !o.Pending && !o.Access
}

// lock takes the advisory lock key, waiting for it when wait is set.
func (r *Reconciler) lock(ctx context.Context, key int64, wait bool) (*store.Lock, error) {
	for {
		lock, ok, err := r.db.TryLock(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("take poller lock: %w", err)
		}
		if ok {
			return lock, nil
		}
		if !wait {
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pass is the state of one running pass.
type pass struct {
	r    *Reconciler
	rep  *Report
	opts PassOptions
	work *workers

	mu   sync.Mutex
	done map[string]objectState // objects taken up by this pass: signals coalesce (see claim)
	// unrecorded is set when a failed object could not be recorded for a
	// retry: the list cursor must then stay where it is.
	unrecorded atomic.Bool
}

// run runs the parts of the pass in order, each only while ctx allows; the
// objects that failed once are retried before the last look at the hints.
func (p *pass) run(ctx context.Context) {
	o := p.opts
	parts := []struct {
		on   bool
		name string
		fn   func(context.Context) error
	}{
		{o.Hints, "hints", p.hints},
		{o.Retries, "retries", p.retries},
		{o.Lists, "list", p.lists},
		{o.Events, "events", p.events},
		{o.Pending, "pending", p.pending},
		{o.Lists, "order_intents", p.orderIntents}, // order.go
		{o.Events, "order_events", p.orderEvents},
		{o.Pending, "orders", p.openOrders},
		{o.Lists, "subscriptions", p.subscriptionLists},
		{o.Pending, "subscriptions_due", p.dueSubscriptions},
		{o.Access, "access", func(ctx context.Context) error { return p.r.accessPass(ctx, p.rep) }},
		{true, "retry", func(context.Context) error { p.work.drain(); return nil }},
		{o.Hints, "hints", p.hints}, // hints that arrived while the pass ran
	}
	defer p.work.drain() // a pass cut short still waits for its retries to stop
	for _, part := range parts {
		if !part.on || ctx.Err() != nil {
			continue
		}
		if err := part.fn(ctx); err != nil && ctx.Err() == nil {
			p.rep.failPass(part.name, err)
		}
	}
}

// hints reconciles the objects of unhandled webhook hints, each once
// however many hints name it, and marks them handled once their object's
// reconcile committed.
func (p *pass) hints(ctx context.Context) error {
	hints, err := p.r.db.UnhandledHints(ctx, p.r.clock.Now(), 1000)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	failing := map[string]bool{}
	var ids []string
	for _, h := range hints {
		if h.Failing {
			failing[h.ObjectID] = true
		}
		if seen[h.ObjectID] {
			continue // duplicate hints for one object coalesce
		}
		seen[h.ObjectID] = true
		ids = append(ids, h.ObjectID)
	}
	listed := p.listHinted(ctx, ids)
	var items []work
	var handled []string
	for _, id := range ids {
		if listed[id] {
			handled = append(handled, id)
			continue
		}
		items = append(items, work{id: id, fresh: true, recorded: failing[id], then: func(ctx context.Context, ok bool) {
			if p.opts.DryRun {
				return
			}
			var err error
			if ok {
				err = p.r.db.MarkHintsHandled(ctx, p.r.clock.Now(), id)
			} else {
				err = p.r.db.MarkHintsFailed(ctx, id, "reconcile failed; see reconcile_errors")
			}
			if err != nil {
				p.rep.fail("hints", id, err)
			}
		}})
	}
	if err := p.r.db.MarkHintsHandled(ctx, p.r.clock.Now(), handled...); err != nil {
		for _, id := range handled {
			p.rep.fail("hints", id, err)
		}
	}
	p.work.each(ctx, items)
	return nil
}

// hintListMin is how many hinted sessions with a purchase make a hints
// pass read them from the list of complete sessions, a hundred a call,
// before retrieving one by one what the list did not bring. Under Stripe's
// 100 calls a second, a burst of payments then costs a call per page
// instead of one per payment.
const hintListMin = 10

// listHinted applies, a page at a time as a walk does, the complete
// sessions created since the oldest purchase among the hinted sessions,
// and returns the hinted ones it applied. It reads at most one page per
// hintListMin sessions sought, so a list crowded with other sessions costs
// no more calls than retrieving the sought ones would have. A session whose
// write fails is recorded in reconcile_errors and retried from there, as in
// a walk.
func (p *pass) listHinted(ctx context.Context, ids []string) map[string]bool {
	var sought []string
	for _, id := range ids {
		if strings.HasPrefix(id, "cs_") {
			sought = append(sought, id)
		}
	}
	if len(sought) < hintListMin || p.opts.DryRun {
		return nil
	}
	existing, err := p.r.db.PurchasesBySessions(ctx, sought)
	if err != nil || len(existing) < hintListMin {
		return nil // retrieved one by one
	}
	want := map[string]bool{}
	var since time.Time
	for id, pu := range existing {
		want[id] = true
		if since.IsZero() || pu.CreatedAt.Before(since) {
			since = pu.CreatedAt
		}
	}
	// The row is written once Stripe created the session, on another clock.
	since = since.Add(-time.Minute)
	applied := map[string]bool{}
	after := ""
	for pages := len(want)/hintListMin + 1; pages > 0 && len(want) > 0; pages-- {
		page, more, err := p.r.stripe.CompleteCheckoutSessionsPage(stripeclient.WithRetry(ctx, listRetry), since, after)
		if err != nil {
			break
		}
		var found []string
		for _, s := range page {
			if want[s.ID] {
				found = append(found, s.ID)
				delete(want, s.ID)
			}
		}
		if err := p.sessionPage(ctx, page); err != nil {
			break
		}
		for _, id := range found {
			applied[id] = true
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	return applied
}

// retries retries the objects whose next attempt is due.
func (p *pass) retries(ctx context.Context) error {
	failed, err := p.r.db.ReconcileErrors(ctx, p.r.clock.Now(), 500)
	if err != nil {
		return err
	}
	items := make([]work, len(failed))
	for i, f := range failed {
		items[i] = work{id: f.ObjectID, recorded: true}
	}
	p.work.each(ctx, items)
	return nil
}

// pendingChunk is how many open purchases the pending part reads at a time.
const pendingChunk = 500

// pending re-checks open purchases that no signal may ever mention: those
// past their session's expiry, and those not compared for RecheckAfter,
// a chunk at a time until none is due or the pass's budget ends. Each one
// compared is marked checked, and one that failed is recorded and backs
// off, so neither is due again; a chunk with nothing new ends the part.
func (p *pass) pending(ctx context.Context) error {
	r := p.r
	seen := map[string]bool{}
	for ctx.Err() == nil {
		now := r.clock.Now()
		due, err := r.db.DuePendingPurchases(ctx, now, now.Add(-r.opts.RecheckAfter), pendingChunk)
		if err != nil {
			return err
		}
		items := make([]work, 0, len(due))
		for _, pu := range due {
			if seen[pu.ID] {
				continue
			}
			seen[pu.ID] = true
			items = append(items, work{id: pu.StripeSessionID, then: func(ctx context.Context, ok bool) {
				if !ok || p.opts.DryRun {
					return
				}
				if err := r.db.MarkChecked(ctx, pu.ID, r.clock.Now()); err != nil {
					p.rep.fail("pending", pu.ID, err)
				}
			}})
		}
		p.work.each(ctx, items)
		if len(due) < pendingChunk || len(items) == 0 {
			return nil
		}
	}
	return nil
}
