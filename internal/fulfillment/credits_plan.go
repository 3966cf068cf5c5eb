// Plan credits: the seam the subscription code calls (inside the
// reconciler's transaction) when a subscription's invoice is paid or the
// subscription ends. What to write is decided by decidePlanInvoice, a pure
// function of the facts read under the account's lock; the transaction
// around it only reads and writes.
//
// A plan's credits are lots of source "plan" keyed by the subscription id,
// each one expiring at its period's end. Without rollover, a paid period
// resets the plan's part of the balance to the plan's amount: the old
// lots' remainder goes and the reset entry is the difference, so a balance
// made only of the plan equals the amount. Credits from packs are not the
// plan's and survive a reset. With rollover, each paid period adds the
// amount. A plan change is the change's invoice (the proration or update
// invoice) applied the same way with the new plan's amount, from the
// change on. Each invoice applies once (the entry is unique per invoice);
// an invoice whose period starts before one already applied is stale and,
// without rollover, writes nothing, so late or reordered signals cannot
// reset a later period. When the subscription ends, its plan's remainder
// expires (cause: the subscription id) and no later invoice adds to it.
// When its plan changes to a product without credits, the remainder
// expires too (cause: the plan change), and a later change back to a plan
// with credits grants them anew with its paid invoice.
//
// The subscription's decision (reconcile.decideSubscription) says when:
// each invoice of a plan reason newly seen paid, the end, and a change to a
// product without credits. Each is a subscription_credits step on the
// subscription's subject, one pipeline per invoice (credits:<invoice id>),
// one for the end (credits_end) and one per change off the credits
// (credits_off:<when>), so a signal seen twice schedules once; the step
// applies the invoice as it is recorded when it runs, under the
// subscription's row lock.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// StepSubscriptionCredits applies one plan credit move of a subscription:
// a paid invoice, or the end.
const StepSubscriptionCredits = "subscription_credits"

// Pipeline names of a subscription's plan credit moves.
const (
	PrefixSubscriptionCredits = "credits:"     // + the invoice id
	PipelineSubscriptionEnd   = "credits_end"  // the plan's credits expire
	PrefixSubscriptionOff     = "credits_off:" // + when the plan left the credits (RFC 3339): they expire
)

// subscriptionCreditsArgs is the input of a subscription_credits step.
type subscriptionCreditsArgs struct {
	InvoiceID  string `json:"invoice_id,omitempty"`
	ProductKey string `json:"product_key"`
	End        bool   `json:"end,omitempty"`
	// Off is set for a plan change to a product without credits, seen at
	// At; ProductKey is the product it left.
	Off bool      `json:"off,omitempty"`
	At  time.Time `json:"at,omitzero"`
}

// subscriptionCreditPipelines are the pipelines of a subscription's plan
// credit moves: a subscription_credits step per move, for a product that
// grants credits.
func (f *Fulfillment) subscriptionCreditPipelines(subject steps.Subject, moves []reconcile.SubscriptionCredit) []steps.Pipeline {
	var ps []steps.Pipeline
	for _, m := range moves {
		if f.product(m.ProductKey).Credits <= 0 {
			continue
		}
		args := subscriptionCreditsArgs{InvoiceID: m.InvoiceID, ProductKey: m.ProductKey, End: m.End}
		var name string
		switch {
		case m.End:
			name = PipelineSubscriptionEnd
		case m.Off:
			args.Off, args.At = true, m.At.UTC()
			name = PrefixSubscriptionOff + args.At.Format(time.RFC3339Nano)
		default:
			name = PrefixSubscriptionCredits + m.InvoiceID
		}
		st := steps.Step{Name: StepSubscriptionCredits, Args: args}
		ps = append(ps, steps.Pipeline{Subject: subject, Name: name, Anchor: m.At, Steps: []steps.Step{st}})
	}
	return ps
}

// subscriptionCredits applies a subscription's plan credit move under its
// row lock: the invoice as recorded now (paid or not) through InvoicePaid,
// with its service period (the subscription's current one when Stripe gave
// none), or the end through SubscriptionEnded. The holder is the
// subscription's user (and organization); one without a user yet retries.
func (c *Credits) subscriptionCredits(ctx context.Context, job *steps.Job) (any, error) {
	var args subscriptionCreditsArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	res := creditsResult{}
	err := c.f.db.InTx(ctx, func(q *store.Queries) error {
		s, err := q.LockSubscription(ctx, job.Subject.ID)
		if errors.Is(err, store.ErrNotFound) {
			return steps.Permanent(fmt.Errorf("subscription %s not found", job.Subject.ID))
		}
		if err != nil {
			return err
		}
		if s.UserID == nil || *s.UserID == "" {
			return errors.New("the subscription has no user to credit yet")
		}
		holder := store.CreditHolder{UserID: *s.UserID, OrganizationID: deref(s.OrganizationID)}
		var (
			e       store.CreditEntry
			created bool
		)
		switch {
		case args.End:
			e, created, err = c.SubscriptionEnded(ctx, q, holder, s.ID)
		case args.Off:
			e, created, err = c.PlanLeftCredits(ctx, q, holder, s.ID, args.At)
		default:
			e, created, err = c.applyInvoice(ctx, q, s, holder, args)
		}
		switch {
		case err != nil:
			return err
		case !created:
			res.Skipped = "no change to the credits"
		default:
			res = creditsResult{EntryID: e.ID, Amount: e.Amount, BalanceAfter: e.BalanceAfter}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply plan credits: %w", err)
	}
	return res, nil
}

// applyInvoice hands a recorded invoice of s to InvoicePaid.
func (c *Credits) applyInvoice(ctx context.Context, q *store.Queries, s store.Subscription, holder store.CreditHolder,
	args subscriptionCreditsArgs) (store.CreditEntry, bool, error) {
	inv, err := q.GetInvoice(ctx, args.InvoiceID)
	if errors.Is(err, store.ErrNotFound) {
		return store.CreditEntry{}, false, steps.Permanent(fmt.Errorf("invoice %s not found", args.InvoiceID))
	}
	if err != nil {
		return store.CreditEntry{}, false, err
	}
	start, end := s.CurrentPeriodStart, s.CurrentPeriodEnd
	if inv.PeriodStart != nil && inv.PeriodEnd != nil && inv.PeriodEnd.After(*inv.PeriodStart) {
		start, end = *inv.PeriodStart, *inv.PeriodEnd
	}
	return c.InvoicePaid(ctx, q, PlanInvoice{Holder: holder, SubscriptionID: s.ID, InvoiceID: inv.ID,
		ProductKey: args.ProductKey, PeriodStart: start, PeriodEnd: end,
		Paid: inv.Status == store.InvoicePaid && inv.SubscriptionID == s.ID})
}

// PlanInvoice is one invoice of a subscription whose product grants
// credits, as the subscription code passes it.
type PlanInvoice struct {
	Holder         store.CreditHolder
	SubscriptionID string
	InvoiceID      string
	// ProductKey is the plan's product: the new plan's for a plan change.
	ProductKey string
	// PeriodStart and PeriodEnd are the period the invoice pays for; for a
	// plan change, from the change to the period's end.
	PeriodStart, PeriodEnd time.Time
	// Paid is set when the invoice is paid; any other invoice changes
	// nothing.
	Paid bool
}

// planFacts is what decides a plan invoice's entry.
type planFacts struct {
	Paid     bool
	Amount   int64 // the plan's credits per period
	Rollover bool
	// Applied is set when the invoice already has an entry.
	Applied bool
	// Ended is set when the subscription's credits expired.
	Ended bool
	// PeriodStart is the invoice's; LatestStart the latest period applied
	// (zero for none).
	PeriodStart, LatestStart time.Time
}

// planAction is a plan invoice's entry, as decided: Kind "" writes
// nothing, for the reason in Skip.
type planAction struct {
	Kind store.CreditKind
	// ClosePlan expires what is left of the plan's earlier lots.
	ClosePlan bool
	Skip      string
}

// decidePlanInvoice decides what a plan invoice writes: a reset to the
// amount (no rollover) or a top-up grant (rollover), unless the invoice is
// unpaid, already applied, after the subscription's end, or (no rollover)
// for a period older than one applied.
func decidePlanInvoice(f planFacts) planAction {
	switch {
	case !f.Paid:
		return planAction{Skip: "the invoice is not paid"}
	case f.Amount <= 0:
		return planAction{Skip: "the plan grants no credits"}
	case f.Applied:
		return planAction{Skip: "the invoice was applied already"}
	case f.Ended:
		return planAction{Skip: "the subscription's credits have expired"}
	case f.Rollover:
		return planAction{Kind: store.CreditGrant}
	case !f.LatestStart.IsZero() && f.PeriodStart.Before(f.LatestStart):
		return planAction{Skip: "a later period was applied"}
	}
	return planAction{Kind: store.CreditReset, ClosePlan: true}
}

// InvoicePaid applies a subscription's invoice to its holder's credits in
// q's transaction, as decidePlanInvoice decides, and schedules
// credits.reset (or credits.granted for a rollover top-up). It returns the
// entry written, and false when it wrote none. Call it for every invoice
// the reconciler sees paid, in any order and as often as it likes.
func (c *Credits) InvoicePaid(ctx context.Context, q *store.Queries, inv PlanInvoice) (store.CreditEntry, bool, error) {
	what := fmt.Sprintf("apply invoice %s of %s to credits", inv.InvoiceID, inv.SubscriptionID)
	if inv.InvoiceID == "" || inv.SubscriptionID == "" {
		return store.CreditEntry{}, false, fmt.Errorf("%s: invoice and subscription ids are required", what)
	}
	prod := c.f.product(inv.ProductKey)
	if prod.Credits <= 0 || !inv.Paid {
		return store.CreditEntry{}, false, nil
	}
	now := c.f.clock.Now()
	acct, err := q.LockCreditAccount(ctx, inv.Holder, now)
	if err != nil {
		return store.CreditEntry{}, false, fmt.Errorf("%s: %w", what, err)
	}
	plan, err := q.PlanCredits(ctx, acct.ID, inv.SubscriptionID)
	if err != nil {
		return store.CreditEntry{}, false, fmt.Errorf("%s: %w", what, err)
	}
	applied := false
	for _, kind := range []store.CreditKind{store.CreditReset, store.CreditGrant} {
		_, err := q.CreditEntryByCause(ctx, acct.ID, kind, store.CauseInvoice, inv.InvoiceID)
		if err == nil {
			applied = true
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.CreditEntry{}, false, fmt.Errorf("%s: %w", what, err)
		}
	}
	act := decidePlanInvoice(planFacts{Paid: inv.Paid, Amount: prod.Credits, Rollover: prod.CreditsRollover,
		Applied: applied, Ended: plan.Ended, PeriodStart: inv.PeriodStart, LatestStart: plan.LatestPeriodStart})
	if act.Kind == "" {
		c.f.log.Debug("plan invoice changes no credits", "stripe_invoice_id", inv.InvoiceID,
			"subscription_id", inv.SubscriptionID, "reason", act.Skip)
		return store.CreditEntry{}, false, nil
	}
	change := store.CreditChange{AccountID: acct.ID, Kind: act.Kind, CauseKind: store.CauseInvoice, CauseID: inv.InvoiceID,
		Lot: &store.NewLot{Source: store.LotPlan, SourceID: inv.SubscriptionID, Amount: prod.Credits,
			PeriodStart: inv.PeriodStart, ExpiresAt: inv.PeriodEnd},
		Period: true, LowThreshold: prod.CreditsLowThreshold}
	if act.ClosePlan {
		change.Close = &store.LotRef{Source: store.LotPlan, SourceID: inv.SubscriptionID}
	}
	e, created, err := q.ApplyCreditChange(ctx, change, now)
	if err != nil || !created {
		return e, false, err
	}
	event := EventCreditsReset
	if act.Kind == store.CreditGrant {
		event = EventCreditsGranted
	}
	if err := c.scheduleEntryWebhook(ctx, q, e, event); err != nil {
		return e, false, fmt.Errorf("%s: %w", what, err)
	}
	return e, true, nil
}

// SubscriptionEnded expires what is left of a subscription's plan credits
// for its holder, in q's transaction: call it at the end of the last
// period, when the subscription has ended. It is written once per
// subscription; later invoices of the subscription add nothing.
func (c *Credits) SubscriptionEnded(ctx context.Context, q *store.Queries, holder store.CreditHolder, subscriptionID string) (store.CreditEntry, bool, error) {
	if subscriptionID == "" {
		return store.CreditEntry{}, false, errors.New("expire plan credits: subscription id is required")
	}
	return c.expirePlan(ctx, q, holder, subscriptionID, store.CauseSubscription, subscriptionID)
}

// PlanLeftCredits expires what is left of a subscription's plan credits for
// its holder, in q's transaction: call it when the plan changed, at at, to
// a product without credits. It is written once per change; unlike the
// end, it does not stop a later paid invoice of a plan with credits from
// granting them.
func (c *Credits) PlanLeftCredits(ctx context.Context, q *store.Queries, holder store.CreditHolder, subscriptionID string,
	at time.Time) (store.CreditEntry, bool, error) {
	if subscriptionID == "" || at.IsZero() {
		return store.CreditEntry{}, false, errors.New("expire plan credits: subscription id and time of the change are required")
	}
	return c.expirePlan(ctx, q, holder, subscriptionID, store.CausePlanChange, store.PlanChangeCause(subscriptionID, at))
}

// expirePlan writes the expiry of what is left of subscriptionID's plan
// credits, caused as given, unless it was written before.
func (c *Credits) expirePlan(ctx context.Context, q *store.Queries, holder store.CreditHolder, subscriptionID string,
	cause store.CauseKind, causeID string) (store.CreditEntry, bool, error) {
	now := c.f.clock.Now()
	acct, err := q.LockCreditAccount(ctx, holder, now)
	if err != nil {
		return store.CreditEntry{}, false, fmt.Errorf("expire plan credits of %s: %w", subscriptionID, err)
	}
	return q.ApplyCreditChange(ctx, store.CreditChange{AccountID: acct.ID, Kind: store.CreditExpire,
		CauseKind: cause, CauseID: causeID,
		Close: &store.LotRef{Source: store.LotPlan, SourceID: subscriptionID}}, now)
}
