// Passes: what triggers the reconciler and what each pass covers. Only one
// replica polls Stripe at a time: a pass runs under a Postgres advisory
// lock, and a replica that cannot take it skips the pass.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
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
	// HintsOnly handles freshly stored webhook hints.
	HintsOnly = PassOptions{Hints: true}
)

// ErrLocked means another replica holds the poller lock.
var ErrLocked = errors.New("another replica is polling Stripe")

// eventsRetention is how long Stripe keeps events.
const eventsRetention = 30 * 24 * time.Hour

// walkName names the list walk in reconcile_walks.
const walkName = "lists"

// RunPass runs one pass named name (for logs and metrics) and reports what
// it found and did. It returns ErrLocked when another replica polls. A
// polling pass (events or lists) that ends without a fatal error, or that
// stops at its budget, is a success for the stall check.
func (r *Reconciler) RunPass(ctx context.Context, name string, o PassOptions) (*Report, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	start := time.Now()
	rep := newReport(o.DryRun)
	unlock, err := r.lock(ctx, o.Wait)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			r.health.skipped(r.clock.Now())
		}
		return rep, err
	}
	defer unlock()

	pctx := ctx
	if o.Budget > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, o.Budget)
		defer cancel()
	}
	p := &pass{r: r, rep: rep, done: map[string]bool{}, opts: o}
	p.run(pctx)
	if pctx.Err() != nil && ctx.Err() == nil {
		rep.Interrupted = fmt.Sprintf("stopped at its time budget of %s; the next pass resumes where it stopped", o.Budget)
	}
	rep.Duration = time.Since(start)
	now := r.clock.Now()
	polled := o.Events || o.Lists
	if polled && !rep.fatal && ctx.Err() == nil && !o.DryRun {
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
	return rep, nil
}

// lock takes the poller advisory lock, waiting for it when wait is set.
func (r *Reconciler) lock(ctx context.Context, wait bool) (func(), error) {
	for {
		release, ok, err := r.db.TryLock(ctx, store.PollerLockKey)
		if err != nil {
			return nil, fmt.Errorf("take poller lock: %w", err)
		}
		if ok {
			return release, nil
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
	done map[string]bool // objects reconciled in this pass: signals coalesce
	// unrecorded is set when a failed object could not be recorded for a
	// retry: the list cursor must then stay where it is.
	unrecorded bool
}

// run runs the parts of the pass in order, each only while ctx allows.
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
		{o.Access, "access", func(ctx context.Context) error { return p.r.accessPass(ctx, p.rep) }},
		{o.Hints, "hints", p.hints}, // hints that arrived while the pass ran
	}
	for _, part := range parts {
		if !part.on || ctx.Err() != nil {
			continue
		}
		if err := part.fn(ctx); err != nil && ctx.Err() == nil {
			p.rep.failPass(part.name, err)
		}
	}
}

// object reconciles one object once per pass, recording a failure for a
// later pass instead of failing this one. It reports success.
func (p *pass) object(ctx context.Context, id string) bool {
	if p.done[id] {
		return true
	}
	p.done[id] = true
	err := p.r.Object(ctx, id, p.rep)
	if err == nil {
		return true
	}
	p.failed(ctx, id, err)
	return false
}

// failed records an object that did not reconcile, for a later pass (see
// recordFailure). An object cut short by the end of the pass has not
// failed: it is simply not done.
func (p *pass) failed(ctx context.Context, id string, err error) {
	if ctx.Err() != nil {
		return
	}
	p.r.log.Warn("reconcile object failed; retried later", "object_id", id, "err", err)
	p.rep.fail(kindOf(id), id, err)
	if p.opts.DryRun {
		return
	}
	if rerr := p.r.recordFailure(ctx, id, err); rerr != nil {
		p.unrecorded = true
		p.r.log.Error("record reconcile error", "object_id", id, "err", rerr)
	}
}

func (p *pass) hints(ctx context.Context) error {
	hints, err := p.r.db.UnhandledHints(ctx, p.r.clock.Now(), 1000)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, h := range hints {
		if ctx.Err() != nil {
			return nil
		}
		if seen[h.ObjectID] {
			continue // duplicate hints for one object coalesce
		}
		seen[h.ObjectID] = true
		delete(p.done, h.ObjectID) // a hint always gets a fresh look
		ok := p.object(ctx, h.ObjectID)
		if p.opts.DryRun || ctx.Err() != nil {
			continue
		}
		// A hint is handled only after its object's reconcile committed.
		if ok {
			err = p.r.db.MarkHintsHandled(ctx, h.ObjectID, p.r.clock.Now())
		} else {
			err = p.r.db.MarkHintsFailed(ctx, h.ObjectID, "reconcile failed; see reconcile_errors")
		}
		if err != nil {
			p.rep.fail("hints", h.ObjectID, err)
		}
	}
	return nil
}

// retries retries the objects whose next attempt is due.
func (p *pass) retries(ctx context.Context) error {
	failed, err := p.r.db.ReconcileErrors(ctx, p.r.clock.Now(), 500)
	if err != nil {
		return err
	}
	for _, f := range failed {
		if ctx.Err() != nil {
			return nil
		}
		if p.object(ctx, f.ObjectID) && !p.opts.DryRun {
			if err := p.r.db.ClearReconcileError(ctx, f.Kind, f.ObjectID); err != nil {
				p.rep.fail("retries", f.ObjectID, err)
			}
		}
	}
	return nil
}

// events reads the events feed from the stored cursor, oldest first, and
// reconciles the object each event names (never its payload).
func (p *pass) events(ctx context.Context) error {
	r := p.r
	now := r.clock.Now()
	cur, err := r.db.GetCursor(ctx, "events")
	if err != nil {
		return err
	}
	if cur.Position != nil && now.Sub(*cur.Position) > 25*24*time.Hour {
		r.log.Warn("the events cursor is older than 25 days; Stripe keeps events for 30: run a deep pass (paymentd reconcile --since) soon",
			"cursor", cur.Cursor, "position", cur.Position)
	}
	since := now.Add(-eventsRetention)
	after := cur.Cursor
	read := 0
	save := func() error {
		if p.opts.DryRun || read == 0 {
			return nil
		}
		// Saved with a context of its own: an event whose object was
		// reconciled must not be read again just because the pass ran out
		// of time right after it.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return r.db.SetCursor(sctx, cur, r.clock.Now())
	}
	visit := func(ev *stripe.Event) error {
		if id, ok := ev.Data.Object["id"].(string); ok && stripeapi.UsesEventType(string(ev.Type)) {
			p.object(ctx, id)
			if ctx.Err() != nil {
				return ctx.Err() // not done: the cursor stays before this event
			}
		}
		read++
		created := time.Unix(ev.Created, 0).UTC()
		cur = store.Cursor{Kind: "events", Cursor: ev.ID, Position: &created}
		if read%100 == 0 {
			return save()
		}
		return ctx.Err()
	}
	err = r.stripe.EventsAfter(ctx, after, since, visit)
	if err != nil && isNotFound(err) && after != "" {
		// The cursor's event is gone (older than Stripe keeps): resume
		// from its time instead.
		r.log.Warn("events cursor no longer exists at Stripe; resuming from its time", "cursor", after)
		from := since
		if cur.Position != nil {
			from = cur.Position.Add(-r.opts.Overlap)
		}
		err = r.stripe.EventsAfter(ctx, "", from, visit)
	}
	if serr := save(); serr != nil && err == nil {
		err = serr
	}
	return err
}

// lists walks the resource lists: sessions first, so that refunds and
// disputes find their purchases. Where the walk stands is saved after each
// page, so a walk that a budget or a restart interrupts is resumed by the
// next pass whose window it covers. The list cursor moves to when the walk
// began once it ends, whatever objects failed along the way: those are
// recorded and retried on their own.
func (p *pass) lists(ctx context.Context) error {
	r := p.r
	now := r.clock.Now()
	cur, err := r.db.GetCursor(ctx, walkName)
	if err != nil {
		return err
	}
	since := p.opts.Since
	if since.IsZero() {
		since = now.Add(-r.opts.DeepWindow)
		if cur.Position != nil && cur.Position.Add(-r.opts.Overlap).Before(since) {
			since = cur.Position.Add(-r.opts.Overlap) // an outage longer than the window: backfill
		}
	}
	w := store.Walk{Name: walkName, Since: since, StartedAt: now, Phase: store.WalkSessions}
	if !p.opts.DryRun { // a dry run computes every difference: from the start
		switch prev, err := r.db.GetWalk(ctx, walkName); {
		case err == nil && !prev.Since.After(since):
			w = prev
			r.log.Info("resuming an unfinished walk of the lists", "since", prev.Since, "started_at", prev.StartedAt,
				"phase", prev.Phase, "starting_after", prev.StartingAfter, "seen", prev.Seen)
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	for _, phase := range store.WalkPhases[slices.Index(store.WalkPhases, w.Phase):] {
		if phase != w.Phase {
			w.Phase, w.StartingAfter = phase, ""
		}
		if err := p.walk(ctx, &w); err != nil {
			return err
		}
	}
	if p.opts.DryRun {
		return nil
	}
	if err := r.db.DeleteWalk(ctx, walkName); err != nil {
		return err
	}
	if p.unrecorded {
		return nil // an object failed without a record of it: list it again next time
	}
	if cur.Position != nil && w.StartedAt.Sub(*cur.Position) <= r.opts.Overlap {
		return nil // moving it less than the overlap changes nothing: write nothing
	}
	return r.db.SetCursor(ctx, store.Cursor{Kind: walkName, Position: &w.StartedAt}, r.clock.Now())
}

// walk applies the pages of the walk's phase from where it stands, saving
// its place after each page.
func (p *pass) walk(ctx context.Context, w *store.Walk) error {
	r := p.r
	for {
		var (
			n    int
			last string
			more bool
		)
		switch w.Phase {
		case store.WalkSessions:
			page, hasMore, err := r.stripe.CheckoutSessionsPage(ctx, w.Since, w.StartingAfter)
			if err != nil {
				return fmt.Errorf("list checkout sessions: %w", err)
			}
			if err := p.sessionPage(ctx, page); err != nil {
				return err
			}
			if n, more = len(page), hasMore; n > 0 {
				last = page[n-1].ID
			}
		case store.WalkRefunds:
			page, hasMore, err := r.stripe.RefundsPage(ctx, w.Since, w.StartingAfter)
			if err != nil {
				return fmt.Errorf("list refunds: %w", err)
			}
			for _, re := range page {
				p.rep.seen(1)
				if re.Charge != nil {
					p.object(ctx, re.Charge.ID)
				}
			}
			if n, more = len(page), hasMore; n > 0 {
				last = page[n-1].ID
			}
		case store.WalkDisputes:
			page, hasMore, err := r.stripe.DisputesPage(ctx, w.Since, w.StartingAfter)
			if err != nil {
				return fmt.Errorf("list disputes: %w", err)
			}
			for _, d := range page {
				if p.done[d.ID] {
					continue
				}
				p.done[d.ID] = true
				if err := r.applyDispute(ctx, d, p.rep); err != nil {
					p.failed(ctx, d.ID, err)
				}
			}
			if n, more = len(page), hasMore; n > 0 {
				last = page[n-1].ID
			}
		}
		if err := ctx.Err(); err != nil {
			return err // this page may be partly applied: the next pass redoes it
		}
		w.Seen += int64(n)
		if last != "" {
			w.StartingAfter = last
		}
		if !p.opts.DryRun {
			if err := r.db.SaveWalk(ctx, *w, r.clock.Now()); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
	}
}

// sessionPage applies one page of listed sessions, reading their purchases
// in one query and writing only those that differ.
func (p *pass) sessionPage(ctx context.Context, page []*stripe.CheckoutSession) error {
	if len(page) == 0 {
		return nil
	}
	ids := make([]string, len(page))
	for i, s := range page {
		ids[i] = s.ID
	}
	existing, err := p.r.db.PurchasesBySessions(ctx, ids)
	if err != nil {
		return err
	}
	for _, s := range page {
		if p.done[s.ID] {
			continue
		}
		cur, ok := existing[s.ID]
		f := sessionFacts{s: s, state: stateOf(s), paidAt: paidAt(s)}
		if !ok && f.state == sessionOpen {
			p.rep.seen(1)
			continue
		}
		if ok {
			if next, _ := nextSessionState(cur, f, p.r.clock.Now()); equalPurchases(next, cur) {
				p.rep.seen(1)
				p.done[s.ID] = true
				continue // matches: no write, no extra call
			}
		}
		p.done[s.ID] = true
		if err := p.r.applySession(ctx, s, nil, p.rep); err != nil {
			p.failed(ctx, s.ID, err)
		}
	}
	return ctx.Err()
}

// pending re-checks open purchases that no signal may ever mention: those
// past their session's expiry, and those not compared for RecheckAfter.
func (p *pass) pending(ctx context.Context) error {
	r := p.r
	now := r.clock.Now()
	due, err := r.db.DuePendingPurchases(ctx, now, now.Add(-r.opts.RecheckAfter), 500)
	if err != nil {
		return err
	}
	for _, pu := range due {
		if ctx.Err() != nil {
			return nil
		}
		if !p.object(ctx, pu.StripeSessionID) || p.opts.DryRun {
			continue
		}
		if err := r.db.MarkChecked(ctx, pu.ID, r.clock.Now()); err != nil {
			p.rep.fail("pending", pu.ID, err)
		}
	}
	return nil
}
