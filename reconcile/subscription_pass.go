// Subscriptions in a pass: the deep pass lists subscriptions in every
// status (canceled ones included) with their latest invoices, and the
// invoices, in as few list calls as the pages need; the sweep re-checks
// the subscriptions that have not ended and whose period end, trial end,
// payment retry or end of grace has come, since no signal may ever name
// them.
package reconcile

import (
	"context"
	"sync"

	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/stripe/stripe-go/v76"
)

// subscriptionBatch is how many listed subscriptions are written together
// (a page of the listing).
const subscriptionBatch = 100

// subscriptionLists lists the invoices and then the subscriptions created
// since the pass's since (the deep window by default), and reconciles each
// subscription once with the listed invoices of it, a page at a time (see
// subscriptionPage): up to pageWriters pages are written while the listing
// goes on. A listed invoice of a subscription created earlier has its
// subscription retrieved.
func (p *pass) subscriptionLists(ctx context.Context) error {
	r := p.r
	since := p.opts.Since
	if since.IsZero() {
		since = r.clock.Now().Add(-r.opts.DeepWindow)
	}
	lctx := stripeclient.WithRetry(ctx, listRetry)
	invoices := map[string][]*stripe.Invoice{}
	err := r.stripe.ListInvoices(lctx, since, func(inv *stripe.Invoice) error {
		if inv.Subscription != nil && inv.Subscription.ID != "" {
			invoices[inv.Subscription.ID] = append(invoices[inv.Subscription.ID], inv)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	var (
		batch   []listedSubscription
		writers sync.WaitGroup
		slots   = make(chan struct{}, pageWriters)
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		page := batch
		batch = nil
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		writers.Add(1)
		go func() {
			defer func() { <-slots; writers.Done() }()
			_ = p.subscriptionPage(ctx, page) // its objects' failures are recorded; a cut short pass ends below
		}()
	}
	err = r.stripe.ListSubscriptions(lctx, since, func(s *stripe.Subscription) error {
		listed[s.ID] = true
		if !p.claim(s.ID) {
			return ctx.Err()
		}
		batch = append(batch, listedSubscription{s: s, more: invoices[s.ID]})
		if len(batch) >= subscriptionBatch {
			flush()
		}
		return ctx.Err()
	})
	flush()
	writers.Wait()
	if err != nil {
		return err
	}
	var older []work
	for id, more := range invoices {
		if listed[id] || !p.claim(id) {
			continue
		}
		older = append(older, work{id: id, fresh: true, run: func(ctx context.Context) error {
			return r.subscription(ctx, id, more, p.rep)
		}})
	}
	p.work.each(ctx, older)
	return ctx.Err()
}

// dueChunk is how many due subscriptions the sweep reads at a time.
const dueChunk = 500

// dueSubscriptions re-checks the subscriptions whose next check has come,
// a chunk at a time; each compared is marked checked (by its write), so it
// is not due again until its next check or RecheckAfter.
func (p *pass) dueSubscriptions(ctx context.Context) error {
	r := p.r
	seen := map[string]bool{}
	for ctx.Err() == nil {
		now := r.clock.Now()
		due, err := r.db.DueSubscriptions(ctx, now, now.Add(-r.opts.RecheckAfter), dueChunk)
		if err != nil {
			return err
		}
		items := make([]work, 0, len(due))
		for _, s := range due {
			if seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			items = append(items, work{id: s.StripeSubscriptionID})
		}
		p.work.each(ctx, items)
		if len(due) < dueChunk || len(items) == 0 {
			return nil
		}
	}
	return nil
}
