// The walk of Stripe's resource lists (deep pass and backfill): sessions
// first, so that refunds and disputes find their purchases, then refunds,
// then disputes. The next page is fetched while earlier ones are written,
// and where the walk stands is saved as pages complete, so a walk that a
// budget or a restart interrupts is resumed by the next pass whose window
// it covers.
package reconcile

import (
	"cmp"
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
	// Past the refunds and disputes: release the grants held until then
	// (see Fulfillment.Completed), before the walk is forgotten, so a
	// restart in between releases them at the end of the walk it resumes.
	if err := r.inTx(ctx, p.rep, func(q *store.Queries) error { return r.ful.WalkEnded(ctx, q) }); err != nil {
		return err
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

// prefetch fetches the pages of the walk's phase ahead of the writers: the
// next page is on its way while earlier ones are written. It stops after
// the last page, an error, or when ctx ends.
func (p *pass) prefetch(ctx context.Context, w store.Walk) <-chan page {
	out := make(chan page) // unbuffered: one page in hand, one on its way
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

// pageWriters is how many pages of a walk are written at once. Writing a
// page is mostly waiting for the database; the place saved is always the
// last page before which every page is written.
const pageWriters = 4

// walk applies the pages of the walk's phase from where it stands: the
// next page is fetched while earlier ones are written, up to pageWriters
// pages are written at once, and the walk's place is saved as pages
// complete, in order.
func (p *pass) walk(ctx context.Context, w *store.Walk) error {
	r := p.r
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	type slot struct {
		pg   page
		err  error
		done chan struct{}
	}
	slots := make(chan *slot, pageWriters) // in page order; full when pageWriters pages are being written
	go func() {
		defer close(slots)
		for pg := range p.prefetch(fctx, *w) {
			sl := &slot{pg: pg, done: make(chan struct{})}
			if pg.err == nil {
				go func() {
					defer close(sl.done)
					sl.err = p.applyPage(fctx, w.Phase, pg)
				}()
			} else {
				close(sl.done)
			}
			select {
			case slots <- sl:
			case <-fctx.Done():
				<-sl.done
				return
			}
		}
	}()
	// On the way out, stop the rest and wait for the pages being written:
	// none may touch the pass after it ends.
	defer func() {
		stop()
		for sl := range slots {
			<-sl.done
		}
	}()
	phaseStart := time.Now()
	for sl := range slots {
		<-sl.done
		if err := cmp.Or(sl.pg.err, sl.err, ctx.Err()); err != nil {
			return err // a page may be partly applied: the next pass redoes it
		}
		w.Seen += int64(sl.pg.n)
		if sl.pg.last != "" {
			w.StartingAfter = sl.pg.last
		}
		r.progress.walked(*w, sl.pg.oldest, phaseStart)
		if !p.opts.DryRun {
			if err := r.db.SaveWalk(ctx, *w, r.clock.Now()); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// applyPage applies one page of the walk's phase.
func (p *pass) applyPage(ctx context.Context, phase store.WalkPhase, pg page) error {
	switch phase {
	case store.WalkSessions:
		return p.sessionPage(ctx, pg.sessions)
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
			items = append(items, work{id: d.ID, run: func(ctx context.Context) error { return p.r.applyDispute(ctx, d, p.rep) }})
		}
		p.work.each(ctx, items)
	}
	return ctx.Err()
}

// sessionPage applies one page of listed sessions: their purchases are read
// in one query and compared in memory; those that differ are written
// together, in one transaction (see writeSessions), with no extra call to
// Stripe. Should that transaction fail, each of them is applied on its own,
// so one bad session is recorded and retried without failing its page.
func (p *pass) sessionPage(ctx context.Context, page []*stripe.CheckoutSession) error {
	if len(page) == 0 {
		return nil
	}
	r := p.r
	ids := make([]string, len(page))
	for i, s := range page {
		ids[i] = s.ID
	}
	existing, err := r.db.PurchasesBySessions(ctx, ids)
	if err != nil {
		return err
	}
	now := r.clock.Now()
	var batch []*sessionItem
	var alone []work
	for _, s := range page {
		if p.reconciled(s.ID) {
			continue
		}
		if isOrderSession(s) { // an order's (order.go): applied on its own
			if p.claim(s.ID) {
				alone = append(alone, work{id: s.ID, fresh: true, run: func(ctx context.Context) error {
					return r.applyOrderSession(ctx, s, p.rep)
				}})
			}
			continue
		}
		cur, ok := existing[s.ID]
		f := sessionFacts{s: s, state: stateOf(s), paidAt: paidAt(s)}
		if routedToSubscription(s) {
			// Its subscription is listed with the subscriptions (see
			// subscriptionLists): no call here, only the count of one
			// that is not ours.
			if p.claim(s.ID) {
				p.rep.seen(1)
				if f.state != sessionOpen && !ourSubscriptionSession(s, r.subPrices) {
					p.rep.skip(s.ID, SkipNotPaymentMode)
				}
			}
			continue
		}
		switch {
		case !ok && f.state == sessionOpen:
			p.rep.seen(1)
			continue // nothing to record until it completes or expires
		case ok:
			if next, _ := nextSessionState(cur, f, now); equalPurchases(next, cur) {
				p.rep.seen(1)
				p.claim(s.ID)
				continue // matches: no write, no extra call
			}
		}
		if !p.claimWithData(s.ID) {
			continue
		}
		needsCall := s.LineItems == nil || s.LineItems.HasMore ||
			(s.PaymentIntent != nil && s.PaymentIntent.Status == "" && f.state == sessionUnpaid)
		if needsCall {
			alone = append(alone, work{id: s.ID, fresh: true, run: func(ctx context.Context) error {
				_, err := r.applySessionResult(ctx, s, nil, p.rep, true)
				return err
			}})
			continue
		}
		p.rep.seen(1)
		f.items = s.LineItems.Data
		batch = append(batch, &sessionItem{f: f, a: adopt(s, f.items, r.products)})
	}
	if err := p.writeSessionBatch(ctx, batch, &alone); err != nil {
		return err
	}
	p.work.each(ctx, alone)
	return ctx.Err()
}

// writeSessionBatch writes batch in one transaction (see writeSessions);
// should it fail, each of its sessions is added to alone, to be applied on
// its own.
func (p *pass) writeSessionBatch(ctx context.Context, batch []*sessionItem, alone *[]work) error {
	if len(batch) == 0 {
		return nil
	}
	r := p.r
	err := r.inTx(ctx, p.rep, func(q *store.Queries) error { return r.writeSessions(ctx, q, batch, nil, p.rep, true) })
	switch {
	case err == nil:
		for _, it := range batch {
			if it.res.skipped != "" {
				p.rep.skip(it.f.s.ID, it.res.skipped)
			}
		}
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		r.log.Debug("writing a page of sessions together failed; writing them one by one", "err", err)
		for _, it := range batch {
			s := it.f.s
			*alone = append(*alone, work{id: s.ID, fresh: true, run: func(ctx context.Context) error {
				_, err := r.applySessionResult(ctx, s, nil, p.rep, true)
				return err
			}})
		}
	}
	return nil
}
