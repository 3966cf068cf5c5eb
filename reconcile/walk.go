// The walk of Stripe's resource lists (deep pass and backfill): sessions
// first, so that refunds and disputes find their purchases, then refunds,
// then disputes. The next page is fetched while the current one is written,
// and where the walk stands is saved after each page, so a walk that a
// budget or a restart interrupts is resumed by the next pass whose window
// it covers.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// lists walks the resource lists from where an unfinished walk stands, or
// from the start. The list cursor moves to when the walk began once it
// ends, whatever objects failed along the way: those are recorded and
// retried on their own.
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
	if p.unrecorded.Load() {
		return nil // an object failed without a record of it: list it again next time
	}
	if cur.Position != nil && w.StartedAt.Sub(*cur.Position) <= r.opts.Overlap {
		return nil // moving it less than the overlap changes nothing: write nothing
	}
	return r.db.SetCursor(ctx, store.Cursor{Kind: walkName, Position: &w.StartedAt}, r.clock.Now())
}

// page is one page of a list: what it holds, where it ends, whether more
// follow, and the oldest creation time on it (for progress).
type page struct {
	sessions []*stripe.CheckoutSession
	refunds  []*stripe.Refund
	disputes []*stripe.Dispute
	last     string
	oldest   int64
	n        int
	more     bool
	err      error
}

// fetch reads the page of the walk's phase after startingAfter.
func (p *pass) fetch(ctx context.Context, w store.Walk, startingAfter string) page {
	ctx = stripeclient.WithRetry(ctx, listRetry)
	var pg page
	switch w.Phase {
	case store.WalkSessions:
		pg.sessions, pg.more, pg.err = p.r.stripe.CheckoutSessionsPage(ctx, w.Since, startingAfter)
		if pg.n = len(pg.sessions); pg.n > 0 {
			pg.last, pg.oldest = pg.sessions[pg.n-1].ID, pg.sessions[pg.n-1].Created
		}
	case store.WalkRefunds:
		pg.refunds, pg.more, pg.err = p.r.stripe.RefundsPage(ctx, w.Since, startingAfter)
		if pg.n = len(pg.refunds); pg.n > 0 {
			pg.last, pg.oldest = pg.refunds[pg.n-1].ID, pg.refunds[pg.n-1].Created
		}
	case store.WalkDisputes:
		pg.disputes, pg.more, pg.err = p.r.stripe.DisputesPage(ctx, w.Since, startingAfter)
		if pg.n = len(pg.disputes); pg.n > 0 {
			pg.last, pg.oldest = pg.disputes[pg.n-1].ID, pg.disputes[pg.n-1].Created
		}
	}
	if pg.err != nil {
		pg.err = fmt.Errorf("list %s: %w", w.Phase, pg.err)
	}
	return pg
}

// prefetch fetches the pages of the walk's phase one ahead of the writer:
// the next page is on its way while the current one is written. It stops
// after the last page, an error, or when ctx ends.
func (p *pass) prefetch(ctx context.Context, w store.Walk) <-chan page {
	out := make(chan page, 1)
	go func() {
		defer close(out)
		after := w.StartingAfter
		for {
			pg := p.fetch(ctx, w, after)
			select {
			case out <- pg:
			case <-ctx.Done():
				return
			}
			if pg.err != nil || !pg.more || pg.n == 0 {
				return
			}
			after = pg.last
		}
	}()
	return out
}

// walk applies the pages of the walk's phase from where it stands, saving
// its place after each page.
func (p *pass) walk(ctx context.Context, w *store.Walk) error {
	r := p.r
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	phaseStart := time.Now()
	for pg := range p.prefetch(fctx, *w) {
		if pg.err != nil {
			return pg.err
		}
		switch w.Phase {
		case store.WalkSessions:
			if err := p.sessionPage(ctx, pg.sessions); err != nil {
				return err
			}
		case store.WalkRefunds:
			items := make([]work, 0, pg.n)
			for _, re := range pg.refunds {
				p.rep.seen(1)
				if re.Charge != nil {
					items = append(items, work{id: re.Charge.ID})
				}
			}
			p.work.each(ctx, items)
		case store.WalkDisputes:
			items := make([]work, 0, pg.n)
			for _, d := range pg.disputes {
				items = append(items, work{id: d.ID, run: func(ctx context.Context) error { return r.applyDispute(ctx, d, p.rep) }})
			}
			p.work.each(ctx, items)
		}
		if err := ctx.Err(); err != nil {
			return err // this page may be partly applied: the next pass redoes it
		}
		w.Seen += int64(pg.n)
		if pg.last != "" {
			w.StartingAfter = pg.last
		}
		r.progress.walked(*w, pg.oldest, phaseStart)
		if !p.opts.DryRun {
			if err := r.db.SaveWalk(ctx, *w, r.clock.Now()); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// sessionPage applies one page of listed sessions: their purchases are read
// in one query and compared in memory; only those that differ are written,
// with no extra call to Stripe for the rest.
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
	now := p.r.clock.Now()
	var items []work
	for _, s := range page {
		if p.isDone(s.ID) {
			continue
		}
		cur, ok := existing[s.ID]
		f := sessionFacts{s: s, state: stateOf(s), paidAt: paidAt(s)}
		if !ok && f.state == sessionOpen {
			p.rep.seen(1)
			continue
		}
		if ok {
			if next, _ := nextSessionState(cur, f, now); equalPurchases(next, cur) {
				p.rep.seen(1)
				p.claim(s.ID)
				continue // matches: no write, no extra call
			}
		}
		items = append(items, work{id: s.ID, run: func(ctx context.Context) error { return p.r.applySession(ctx, s, nil, p.rep) }})
	}
	p.work.each(ctx, items)
	return ctx.Err()
}
