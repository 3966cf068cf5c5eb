// Passes: what triggers the reconciler and what each pass covers. Only one
// replica polls Stripe at a time: a pass runs under a Postgres advisory
// lock, and a replica that cannot take it skips the pass.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// Retries retries objects that failed in earlier passes.
	Retries bool
	// Access compares recorded access with what it should be.
	Access bool
	// DryRun computes every difference and changes nothing.
	DryRun bool
	// Wait waits for the poller lock instead of skipping the pass.
	Wait bool
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

// RunPass runs one pass named name (for logs and metrics) and reports what
// it found and did. It returns ErrLocked when another replica polls.
func (r *Reconciler) RunPass(ctx context.Context, name string, o PassOptions) (*Report, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	start := time.Now()
	rep := newReport(o.DryRun)
	unlock, err := r.lock(ctx, o.Wait)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			r.lastPass.set(name, r.clock.Now())
		}
		return rep, err
	}
	defer unlock()

	p := &pass{r: r, rep: rep, done: map[string]bool{}, opts: o}
	if o.Hints {
		p.hints(ctx)
	}
	if o.Retries {
		p.retries(ctx)
	}
	if o.Lists {
		if err := p.lists(ctx); err != nil {
			rep.fail("list", "", err)
		}
	}
	if o.Events {
		if err := p.events(ctx); err != nil {
			rep.fail("events", "", err)
		}
	}
	if o.Pending {
		p.pending(ctx)
	}
	if o.Access {
		if err := r.accessPass(ctx, rep); err != nil {
			rep.fail("access", "", err)
		}
	}
	if o.Hints {
		p.hints(ctx) // hints that arrived while the pass ran
	}
	rep.Duration = time.Since(start)
	r.lastPass.set(name, r.clock.Now())
	r.metrics.observe(name, rep, rep.Duration, r.clock.Now())
	level := r.log.Debug
	if len(rep.Changes) > 0 || len(rep.Errors) > 0 {
		level = r.log.Info
	}
	level("reconcile pass", "pass", name, "summary", rep.Summary(), "healed_without_webhook", rep.Healed,
		"duration", rep.Duration.String(), "dry_run", o.DryRun)
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
}

// object reconciles one object once per pass, recording a failure for the
// next pass instead of failing this one. It reports success.
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

// failed records an object that did not reconcile, for the next pass.
func (p *pass) failed(ctx context.Context, id string, err error) {
	if ctx.Err() != nil {
		return
	}
	p.r.log.Warn("reconcile object failed; retried next pass", "object_id", id, "err", err)
	p.rep.fail(kindOf(id), id, err)
	if !p.opts.DryRun {
		if rerr := p.r.db.RecordReconcileError(ctx, kindOf(id), id, err.Error(), p.r.clock.Now()); rerr != nil {
			p.r.log.Error("record reconcile error", "object_id", id, "err", rerr)
		}
	}
}

func (p *pass) hints(ctx context.Context) {
	hints, err := p.r.db.UnhandledHints(ctx, 1000)
	if err != nil {
		p.rep.fail("hints", "", err)
		return
	}
	seen := map[string]bool{}
	for _, h := range hints {
		if seen[h.ObjectID] {
			continue // duplicate hints for one object coalesce
		}
		seen[h.ObjectID] = true
		delete(p.done, h.ObjectID) // a hint always gets a fresh look
		ok := p.object(ctx, h.ObjectID)
		if p.opts.DryRun {
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
}

func (p *pass) retries(ctx context.Context) {
	failed, err := p.r.db.ReconcileErrors(ctx, 500)
	if err != nil {
		p.rep.fail("retries", "", err)
		return
	}
	for _, f := range failed {
		if p.object(ctx, f.ObjectID) && !p.opts.DryRun {
			if err := p.r.db.ClearReconcileError(ctx, f.Kind, f.ObjectID); err != nil {
				p.rep.fail("retries", f.ObjectID, err)
			}
		}
	}
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
		return r.db.SetCursor(ctx, cur, r.clock.Now())
	}
	visit := func(ev *stripe.Event) error {
		if id, ok := ev.Data.Object["id"].(string); ok && stripeapi.UsesEventType(string(ev.Type)) {
			p.object(ctx, id)
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
// disputes find their purchases.
func (p *pass) lists(ctx context.Context) error {
	r := p.r
	started := r.clock.Now()
	cur, err := r.db.GetCursor(ctx, "lists")
	if err != nil {
		return err
	}
	since := p.opts.Since
	if since.IsZero() {
		since = started.Add(-r.opts.DeepWindow)
		if cur.Position != nil && cur.Position.Add(-r.opts.Overlap).Before(since) {
			since = cur.Position.Add(-r.opts.Overlap) // an outage longer than the window: backfill
		}
	}
	var page []*stripe.CheckoutSession
	flush := func() error {
		err := p.sessionPage(ctx, page)
		page = page[:0]
		return err
	}
	err = r.stripe.ListCheckoutSessions(ctx, since, func(s *stripe.CheckoutSession) error {
		page = append(page, s)
		if len(page) == stripeapi.PageSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("list checkout sessions: %w", err)
	}
	charges := map[string]bool{}
	if err := r.stripe.ListRefunds(ctx, since, func(re *stripe.Refund) error {
		p.rep.seen(1)
		if re.Charge != nil && !charges[re.Charge.ID] {
			charges[re.Charge.ID] = true
			p.object(ctx, re.Charge.ID)
		}
		return ctx.Err()
	}); err != nil {
		return fmt.Errorf("list refunds: %w", err)
	}
	if err := r.stripe.ListDisputes(ctx, since, func(d *stripe.Dispute) error {
		if p.done[d.ID] {
			return nil
		}
		p.done[d.ID] = true
		if err := r.applyDispute(ctx, d, p.rep); err != nil {
			p.failed(ctx, d.ID, err)
		}
		return ctx.Err()
	}); err != nil {
		return fmt.Errorf("list disputes: %w", err)
	}
	if p.opts.DryRun || len(p.rep.Errors) > 0 {
		return nil // a failed object keeps the cursor where it was
	}
	if cur.Position != nil && started.Sub(*cur.Position) <= r.opts.Overlap {
		return nil // moving it less than the overlap changes nothing: write nothing
	}
	return r.db.SetCursor(ctx, store.Cursor{Kind: "lists", Position: &started}, r.clock.Now())
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
func (p *pass) pending(ctx context.Context) {
	r := p.r
	now := r.clock.Now()
	due, err := r.db.DuePendingPurchases(ctx, now, now.Add(-r.opts.RecheckAfter), 500)
	if err != nil {
		p.rep.fail("pending", "", err)
		return
	}
	for _, pu := range due {
		if !p.object(ctx, pu.StripeSessionID) || p.opts.DryRun {
			continue
		}
		if err := r.db.MarkChecked(ctx, pu.ID, r.clock.Now()); err != nil {
			p.rep.fail("pending", pu.ID, err)
		}
	}
}

// lastPass remembers when each pass kind last finished, for readiness.
type lastPass struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (l *lastPass) set(name string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[string]time.Time{}
	}
	l.at[name] = t
}

func (l *lastPass) get(name string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[name]
	return t, ok
}
