// The parts of a pass that cover orders: the PaymentIntent events feed,
// the list of PaymentIntents (embedded orders; hosted ones come with the
// sessions' list), and the sweep of open orders, which also cancels the
// intents of embedded orders past their expiry and prunes expired carts.
package reconcile

import (
	"context"
	"errors"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// paymentIntentsCursor is the cursor kind of the PaymentIntent events feed.
const paymentIntentsCursor = "events_payment_intents"

// orderEvents reads the PaymentIntent events feed from its cursor, when
// an embedded order was created within the time Stripe keeps events
// (without one, no event there can concern an order, and a seller without
// carts pays nothing for the feed). An intent of a known purchase is
// skipped: the sessions' events cover it.
func (p *pass) orderEvents(ctx context.Context) error {
	switch any, err := p.r.db.HasEmbeddedOrdersSince(ctx, p.r.clock.Now().Add(-eventsRetention)); {
	case err != nil:
		return err
	case !any:
		return nil
	}
	return p.feed(ctx, eventFeed{kind: paymentIntentsCursor, after: p.r.stripe.PaymentIntentEventsAfter,
		page: p.r.stripe.PaymentIntentEventsPage, uses: stripeapi.UsesPaymentIntentEventType,
		run: func(id string) func(context.Context) error {
			return func(ctx context.Context) error {
				switch _, err := p.r.db.PurchaseByPaymentIntent(ctx, id); {
				case err == nil:
					return nil
				case !errors.Is(err, store.ErrNotFound):
					return err
				}
				return p.r.Object(ctx, id, p.rep)
			}
		}})
}

// orderIntents lists the PaymentIntents created since the pass's Since
// (or the deep window) and reconciles those that name an order in their
// metadata. Intents without one are Checkout's or someone else's: the
// sessions' list covers the former. Without an embedded order created in
// that time (an order row is written before its intent), none can be an
// order's, and nothing is listed: a seller without carts pays nothing.
func (p *pass) orderIntents(ctx context.Context) error {
	r := p.r
	since := p.opts.Since
	if since.IsZero() {
		since = r.clock.Now().Add(-r.opts.DeepWindow)
	}
	// Orders created within the overlap before since may have intents
	// created just after it.
	switch any, err := r.db.HasEmbeddedOrdersSince(ctx, since.Add(-r.opts.Overlap)); {
	case err != nil:
		return err
	case !any:
		return nil
	}
	var items []work
	err := r.stripe.ListPaymentIntents(stripeclient.WithRetry(ctx, listRetry), since, func(pi *stripe.PaymentIntent) error {
		p.rep.seen(1)
		if orderIDOf(pi.Metadata) != "" && !p.reconciled(pi.ID) {
			items = append(items, work{id: pi.ID})
		}
		if len(items) >= eventBatch {
			p.work.each(ctx, items)
			items = items[:0]
		}
		return ctx.Err()
	})
	p.work.each(ctx, items)
	return err
}

// openOrders re-checks open orders no signal may mention: those past their
// expiry (an embedded order's intent is canceled then) and those not
// compared for RecheckAfter, a chunk at a time; then prunes expired carts.
func (p *pass) openOrders(ctx context.Context) error {
	r := p.r
	seen := map[string]bool{}
	for ctx.Err() == nil {
		now := r.clock.Now()
		due, err := r.db.DueOpenOrders(ctx, now, now.Add(-r.opts.RecheckAfter), pendingChunk)
		if err != nil {
			return err
		}
		items := make([]work, 0, len(due))
		for _, o := range due {
			if seen[o.ID] {
				continue
			}
			seen[o.ID] = true
			id := o.ID
			items = append(items, work{id: id, then: func(ctx context.Context, ok bool) {
				if !ok || p.opts.DryRun {
					return
				}
				if err := r.db.MarkOrderChecked(ctx, id, r.clock.Now()); err != nil {
					p.rep.fail("orders", id, err)
				}
			}})
		}
		p.work.each(ctx, items)
		if len(due) < pendingChunk || len(items) == 0 {
			break
		}
	}
	if p.opts.DryRun || ctx.Err() != nil {
		return ctx.Err()
	}
	for {
		n, err := r.db.PruneCarts(ctx, r.clock.Now(), 1000)
		if err != nil || n < 1000 {
			return err
		}
	}
}
