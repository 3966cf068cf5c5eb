// Stripe's events feeds. A feed's cursor is the newest event applied; each
// pass reads what is newer, oldest first, and moves the cursor past a batch
// once each object it names has reconciled or been recorded for a retry.
//
// A feed without a cursor (a new install, or a cursor older than Stripe
// keeps events) first walks its history: newest first, page by page, back
// to the start of what Stripe keeps. Since an event only names an object to
// fetch afresh, the order in which its history is applied does not matter,
// so each page is applied as it comes and the walk's place is saved after
// it: a walk cut short by a failed call or a restart resumes where it
// stopped instead of listing thirty days again, which under a degraded
// Stripe would never finish. The cursor is set to the newest event when
// the walk begins, so what happens meanwhile is read from it.
package reconcile

import (
	"context"
	"time"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// eventBatch is how many events are reconciled together before the
// events cursor moves past them.
const eventBatch = 100

// historySuffix names, after a feed's cursor kind, the place of its history
// walk in reconcile_cursors: Cursor is the oldest event applied so far (""
// before the first page), Position the time the walk goes back to.
const historySuffix = "_history"

// eventFeed is one of Stripe's events feeds as a pass reads it.
type eventFeed struct {
	kind string // its cursor in reconcile_cursors
	// after lists, oldest first, the events newer than a cursor.
	after func(ctx context.Context, afterID string, fn func(*stripe.Event) error) error
	// page lists a page of events at or after since, newest first.
	page func(ctx context.Context, startingAfter string, since time.Time) ([]*stripe.Event, bool, error)
	// uses reports whether an event type names an object to reconcile.
	uses func(string) bool
	// run, when set, reconciles an object instead of Reconciler.Object.
	run func(id string) func(context.Context) error
}

// events reads the events feed from the stored cursor, oldest first, and
// reconciles the objects the events name (never their payload), a batch
// at a time: the cursor moves past a batch once each of its objects has
// reconciled or been recorded for a retry.
func (p *pass) events(ctx context.Context) error {
	return p.feed(ctx, eventFeed{kind: "events", after: p.r.stripe.EventsAfter, page: p.r.stripe.EventsPage,
		uses: func(t string) bool { return stripeapi.UsesEventType(t) || stripeapi.UsesSubscriptionEventType(t) }})
}

// feed reads one events feed: its history first while it has one to walk,
// then what is newer than its cursor.
func (p *pass) feed(ctx context.Context, f eventFeed) error {
	r := p.r
	now := r.clock.Now()
	cur, err := r.db.GetCursor(ctx, f.kind)
	if err != nil {
		return err
	}
	hist, err := r.db.GetCursor(ctx, f.kind+historySuffix)
	if err != nil {
		return err
	}
	if cur.Position != nil && now.Sub(*cur.Position) > 25*24*time.Hour {
		r.log.Warn("the events cursor is older than 25 days; Stripe keeps events for 30: run a deep pass (paymentd reconcile --since) soon",
			"cursor", cur.Cursor, "position", cur.Position)
	}
	lctx := stripeclient.WithRetry(ctx, listRetry)
	var first *eventPage
	if cur.Cursor == "" {
		if cur, hist, first, err = p.startHistory(lctx, f, now.Add(-eventsRetention), hist); err != nil {
			return err
		}
	}
	if hist.Position != nil {
		if err := p.walkHistory(ctx, f, hist, first); err != nil {
			return err
		}
	}
	if cur.Cursor == "" {
		return nil // no event yet
	}
	err = p.feedAfter(ctx, f, cur)
	if err != nil && isNotFound(err) {
		// The cursor's event is gone (older than Stripe keeps): walk back
		// from the newest event to its time instead.
		r.log.Warn("events cursor no longer exists at Stripe; walking back to its time", "cursor", cur.Cursor)
		from := now.Add(-eventsRetention)
		if cur.Position != nil {
			from = cur.Position.Add(-r.opts.Overlap)
		}
		if _, hist, first, err = p.startHistory(lctx, f, from, store.Cursor{}); err != nil {
			return err
		}
		return p.walkHistory(ctx, f, hist, first)
	}
	return err
}

// eventPage is a page of a feed's history, newest first.
type eventPage struct {
	events []*stripe.Event
	more   bool
}

// startHistory begins a history walk back to since: it reads the newest
// page of events, makes the newest event the cursor, and records the walk
// (keeping one already under way, from an earlier attempt, as it is). It
// returns the cursor, the walk and, when the walk starts from the top, the
// page read, its first; with no event at all, no cursor.
func (p *pass) startHistory(ctx context.Context, f eventFeed, since time.Time, hist store.Cursor) (
	cur, _ store.Cursor, first *eventPage, err error) {
	events, more, err := f.page(ctx, "", since)
	if err != nil || len(events) == 0 {
		return store.Cursor{}, hist, nil, err
	}
	created := time.Unix(events[0].Created, 0).UTC()
	cur = store.Cursor{Kind: f.kind, Cursor: events[0].ID, Position: &created}
	if hist.Position == nil {
		hist = store.Cursor{Kind: f.kind + historySuffix, Position: &since}
	}
	if hist.Cursor == "" {
		first = &eventPage{events, more}
	}
	if p.opts.DryRun {
		return cur, hist, first, nil
	}
	now := p.r.clock.Now()
	err = p.r.db.InTx(ctx, func(q *store.Queries) error {
		if err := q.SetCursor(ctx, hist, now); err != nil {
			return err
		}
		return q.SetCursor(ctx, cur, now)
	})
	return cur, hist, first, err
}

// walkHistory applies a feed's history page by page, newest first (from
// first when it is not nil), saving its place after each page, and forgets
// the walk once it reaches its end.
func (p *pass) walkHistory(ctx context.Context, f eventFeed, hist store.Cursor, first *eventPage) error {
	r := p.r
	lctx := stripeclient.WithRetry(ctx, listRetry)
	for {
		pg := first
		first = nil
		if pg == nil {
			events, more, err := f.page(lctx, hist.Cursor, *hist.Position)
			if err != nil {
				return err
			}
			pg = &eventPage{events, more}
		}
		p.work.each(ctx, p.eventWork(f, pg.events))
		if err := ctx.Err(); err != nil {
			return err // not all done: the walk stays before this page
		}
		if !pg.more || len(pg.events) == 0 {
			if !p.movesCursors() {
				return nil
			}
			return r.db.DeleteCursor(ctx, hist.Kind)
		}
		hist.Cursor = pg.events[len(pg.events)-1].ID
		if p.movesCursors() {
			if err := r.db.SetCursor(ctx, hist, r.clock.Now()); err != nil {
				return err
			}
		}
	}
}

// movesCursors reports whether the pass may save how far it read: a dry run
// writes nothing, and once an object failed without a record of it, what
// follows must be listed again.
func (p *pass) movesCursors() bool {
	return !p.opts.DryRun && !p.unrecorded.Load()
}

// eventWork is the work of the events that name an object to reconcile,
// each object once.
func (p *pass) eventWork(f eventFeed, events []*stripe.Event) []work {
	queued := map[string]bool{}
	var batch []work
	for _, ev := range events {
		id, ok := ev.Data.Object["id"].(string)
		if !ok || !f.uses(string(ev.Type)) || queued[id] {
			continue
		}
		queued[id] = true
		w := work{id: id}
		if f.run != nil {
			w.run = f.run(id)
		}
		batch = append(batch, w)
	}
	return batch
}

// feedAfter reads the events newer than cur, oldest first, a batch at a
// time, moving the cursor past each batch once it is done.
func (p *pass) feedAfter(ctx context.Context, f eventFeed, cur store.Cursor) error {
	r := p.r
	var batch []*stripe.Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		p.work.each(ctx, p.eventWork(f, batch))
		if err := ctx.Err(); err != nil {
			return err // not all done: the cursor stays before this batch
		}
		last := batch[len(batch)-1]
		batch = batch[:0]
		if !p.movesCursors() {
			return nil
		}
		created := time.Unix(last.Created, 0).UTC()
		return r.db.SetCursor(ctx, store.Cursor{Kind: f.kind, Cursor: last.ID, Position: &created}, r.clock.Now())
	}
	err := f.after(stripeclient.WithRetry(ctx, listRetry), cur.Cursor, func(ev *stripe.Event) error {
		batch = append(batch, ev)
		if len(batch) >= eventBatch {
			return flush()
		}
		return ctx.Err()
	})
	if ferr := flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}
