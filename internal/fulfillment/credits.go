// Credits: what moves a credit ledger besides the consume endpoint. A paid
// purchase of a product with credits grants its pack through a durable
// step on the purchase; a full refund (or a lost dispute) claws back what
// is left of that pack through another, and a refund that fails afterwards
// gives it back through a third. Consumption (the HTTP API) and
// the plans seam (credits_plan.go) write the ledger in one transaction
// with the steps they owe: the credits.granted, credits.reset and
// credits.low webhooks and the credits_low email.
//
// Credits hook into the reconciler without adding to its interface:
// Credits.Wrap returns the Fulfillment with Completed, Refunded,
// RefundReversed and DisputeLost extended to schedule the credit steps in the same
// transaction.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// Credit step and pipeline names.
const (
	StepCreditsGrant    = "credits_grant"    // purchase: grant the pack
	StepCreditsClawback = "credits_clawback" // purchase: claw back what is left of it
	StepCreditsGiveBack = "credits_giveback" // purchase: give back what the clawback took, paid for again
	StepCreditsWebhook  = "credits_webhook"  // global: credits.granted, credits.reset or credits.low
	StepCreditsLow      = "credits_low"      // global: the credits_low email

	PipelineCredits = "credits"
	// PrefixCreditsClawback + the refund or lost dispute's id: the
	// clawback it caused. (Before clawbacks were per refund, the pipeline
	// was named "credits_clawback", one per purchase.)
	PrefixCreditsClawback = "credits_clawback:"
	// PrefixCreditsGiveBack + the failed refund's id: the clawback given
	// back.
	PrefixCreditsGiveBack = "credits_giveback:"
	// PrefixCreditsEntry + entry id: the webhook of one ledger entry.
	PrefixCreditsEntry = "credits:"
	// PrefixCreditsLow + account id + ":" + period cause: the low-balance
	// notice of one period.
	PrefixCreditsLow = "credits_low:"
)

// Outbound webhook events about credits.
const (
	EventCreditsGranted = "credits.granted"
	EventCreditsReset   = "credits.reset"
	EventCreditsLow     = "credits.low"
)

// Credits runs the credit steps of a Fulfillment and serves consumption.
type Credits struct {
	f *Fulfillment
}

// NewCredits returns the credits side of f.
func NewCredits(f *Fulfillment) *Credits { return &Credits{f: f} }

// Register registers the credit step handlers on f's engine.
func (c *Credits) Register() {
	c.f.engine.Register(StepCreditsGrant, c.grant)
	c.f.engine.Register(StepCreditsClawback, c.clawback)
	c.f.engine.Register(StepCreditsGiveBack, c.giveBack)
	c.f.engine.Register(StepCreditsWebhook, c.webhook)
	c.f.engine.Register(StepCreditsLow, c.lowEmail)
	c.f.engine.Register(StepSubscriptionCredits, c.subscriptionCredits)
}

// Credited is a Fulfillment whose purchase transitions also schedule the
// credit steps. It implements reconcile.Fulfillment.
type Credited struct {
	*Fulfillment
	credits *Credits
}

// Wrap returns c's Fulfillment extended with the credit steps, for the
// reconciler.
func (c *Credits) Wrap() *Credited { return &Credited{Fulfillment: c.f, credits: c} }

// Completed schedules the purchase pipelines and, for each product with
// credits, the pack's grant, together.
func (w *Credited) Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, walk bool) error {
	if err := w.Fulfillment.Completed(ctx, q, ps, walk); err != nil {
		return err
	}
	var packs []steps.Pipeline
	for _, p := range ps {
		if w.product(p.ProductKey).Credits > 0 {
			packs = append(packs, steps.Pipeline{PurchaseID: p.ID, Name: PipelineCredits,
				Steps: []steps.Step{{Name: StepCreditsGrant}}})
		}
	}
	if len(packs) == 0 {
		return nil
	}
	_, err := w.engine.ScheduleAll(ctx, q, packs)
	return err
}

// Refunded schedules the refund pipeline and, when the refund is full and
// the product has credits, the pack's clawback. A partial refund leaves
// the credits alone.
func (w *Credited) Refunded(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	if err := w.Fulfillment.Refunded(ctx, q, p, r); err != nil {
		return err
	}
	if p.AmountRefunded < p.AmountTotal {
		return nil
	}
	return w.credits.schedule(ctx, q, p, PrefixCreditsClawback, StepCreditsClawback, r.ID)
}

// RefundReversed schedules the reversal's pipeline and, when the purchase
// is paid for again and its product has credits, the pack's clawback given
// back.
func (w *Credited) RefundReversed(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	if err := w.Fulfillment.RefundReversed(ctx, q, p, r); err != nil {
		return err
	}
	if !p.Status.Entitled() {
		return nil
	}
	return w.credits.schedule(ctx, q, p, PrefixCreditsGiveBack, StepCreditsGiveBack, r.ID)
}

// DisputeLost handles a lost dispute as a full refund, credits included.
func (w *Credited) DisputeLost(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error {
	if err := w.Fulfillment.DisputeLost(ctx, q, p, d); err != nil {
		return err
	}
	return w.credits.schedule(ctx, q, p, PrefixCreditsClawback, StepCreditsClawback, d.ID)
}

// clawbackArgs is the input of a clawback or its giving back: the refund or
// lost dispute that caused it ("" for a clawback scheduled before
// clawbacks were per refund).
type clawbackArgs struct {
	ObjectID string `json:"object_id,omitempty"`
}

// schedule schedules step, in pipeline prefix + objectID, for a purchase
// of a product with credits.
func (c *Credits) schedule(ctx context.Context, q *store.Queries, p store.Purchase, prefix, step, objectID string) error {
	if c.f.product(p.ProductKey).Credits <= 0 {
		return nil
	}
	_, err := c.f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: prefix + objectID,
		Steps: []steps.Step{{Name: step, Args: clawbackArgs{ObjectID: objectID}}}})
	return err
}

// creditsResult is the recorded result of a grant or clawback step.
type creditsResult struct {
	EntryID      int64  `json:"entry_id,omitempty"`
	Amount       int64  `json:"amount"`
	BalanceAfter int64  `json:"balance_after"`
	Skipped      string `json:"skipped,omitempty"`
}

// packHolder is the account a purchase's credits go to: its user, no
// organization.
func packHolder(p store.Purchase) (store.CreditHolder, bool) {
	if p.UserID == nil || *p.UserID == "" {
		return store.CreditHolder{}, false
	}
	return store.CreditHolder{UserID: *p.UserID}, true
}

// errNoUserYet is the grant's retry while its purchase has no user.
var errNoUserYet = errors.New("the purchase has no user to credit yet (a Payment Link purchase not claimed)")

// grant grants a paid purchase's pack: credits × quantity, once per
// purchase, decided on the purchase as it is now under its row lock (the
// lock a refund takes too, so a clawback either finds the grant or the
// grant finds the refund). credits.granted follows through its own step.
func (c *Credits) grant(ctx context.Context, job *steps.Job) (any, error) {
	res := creditsResult{}
	err := c.f.db.InTx(ctx, func(q *store.Queries) error {
		p, err := q.LockPurchase(ctx, job.PurchaseID)
		if errors.Is(err, store.ErrNotFound) {
			return steps.Permanent(fmt.Errorf("purchase %s not found", job.PurchaseID))
		}
		if err != nil {
			return err
		}
		prod := c.f.product(p.ProductKey)
		holder, ok := packHolder(p)
		switch {
		case prod.Credits <= 0:
			res.Skipped = "the product grants no credits"
			return nil
		case !p.Status.Entitled():
			res.Skipped = "the purchase is " + string(p.Status)
			return nil
		case !ok:
			// A Payment Link purchase is claimed by its buyer (the claim
			// sets the user) usually minutes after it is paid: retry with
			// the backoff, and past the last attempt the operator is
			// alerted (paymentd steps retry grants it once claimed).
			return errNoUserYet
		}
		qty := int64(max(p.Quantity, 1))
		now := c.f.clock.Now()
		acct, err := q.LockCreditAccount(ctx, holder, now)
		if err != nil {
			return err
		}
		e, _, err := q.ApplyCreditChange(ctx, store.CreditChange{AccountID: acct.ID, Kind: store.CreditGrant,
			CauseKind: store.CausePurchase, CauseID: p.ID,
			Lot:    &store.NewLot{Source: store.LotPack, SourceID: p.ID, Amount: prod.Credits * qty},
			Period: true, LowThreshold: prod.CreditsLowThreshold}, now)
		if err != nil {
			return err
		}
		res = creditsResult{EntryID: e.ID, Amount: e.Amount, BalanceAfter: e.BalanceAfter}
		return c.scheduleEntryWebhook(ctx, q, e, EventCreditsGranted)
	})
	if err != nil {
		return nil, fmt.Errorf("grant credits: %w", err)
	}
	return res, nil
}

// clawback takes back what is left of a purchase's pack once it is no
// longer paid for, never below zero, unless a clawback is already in
// effect on it. A purchase paid again (the refund reversed) before it runs
// keeps its credits; one never granted has nothing to take.
func (c *Credits) clawback(ctx context.Context, job *steps.Job) (any, error) {
	var args clawbackArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	return c.packChange(ctx, job, "claw back credits", func(q *store.Queries, p store.Purchase, acct store.CreditAccount) (*store.CreditChange, string, error) {
		if p.Status.Entitled() {
			return nil, "the purchase is " + string(p.Status) + " again", nil
		}
		if _, clawed, err := q.PackClawback(ctx, acct.ID, p.ID); err != nil || clawed {
			return nil, "the pack is clawed back already", err
		}
		cause, causeID := store.CauseRefund, store.RefundCause(p.ID, args.ObjectID)
		if args.ObjectID == "" {
			cause, causeID = store.CausePurchase, p.ID
		}
		return &store.CreditChange{Kind: store.CreditRefundClawback, CauseKind: cause, CauseID: causeID,
			Close: &store.LotRef{Source: store.LotPack, SourceID: p.ID}}, "", nil
	})
}

// giveBack gives back the clawback in effect on a purchase's pack once the
// purchase is paid for again (a refund failed): what it took returns to the
// pack, and a later full refund claws it back again. A pack the clawback
// found all spent is only marked open again.
func (c *Credits) giveBack(ctx context.Context, job *steps.Job) (any, error) {
	return c.packChange(ctx, job, "give back clawed-back credits", func(q *store.Queries, p store.Purchase, acct store.CreditAccount) (*store.CreditChange, string, error) {
		if !p.Status.Entitled() {
			return nil, "the purchase is " + string(p.Status), nil
		}
		cb, clawed, err := q.PackClawback(ctx, acct.ID, p.ID)
		switch {
		case err != nil:
			return nil, "", err
		case !clawed:
			return nil, "no clawback in effect on the pack", nil
		case cb.Taken <= 0:
			return nil, "the clawback took nothing", q.ClearClawback(ctx, acct.ID, cb)
		}
		return &store.CreditChange{Kind: store.CreditClawbackReversal, CauseKind: store.CauseClawback,
			CauseID: strconv.FormatInt(cb.EntryID, 10), GiveBack: &cb}, "", nil
	})
}

// packChange applies to the account of the job's purchase's pack the
// change decide returns, deciding under the purchase's and the account's
// locks; decide returns no change, and why, when there is nothing to do.
func (c *Credits) packChange(ctx context.Context, job *steps.Job, what string,
	decide func(q *store.Queries, p store.Purchase, acct store.CreditAccount) (*store.CreditChange, string, error)) (any, error) {
	res := creditsResult{}
	err := c.f.db.InTx(ctx, func(q *store.Queries) error {
		p, acct, skipped, err := c.lockPack(ctx, q, job.PurchaseID)
		if err != nil || skipped != "" {
			res.Skipped = skipped
			return err
		}
		change, skipped, err := decide(q, p, acct)
		if err != nil || change == nil {
			res.Skipped = skipped
			return err
		}
		change.AccountID = acct.ID
		e, _, err := q.ApplyCreditChange(ctx, *change, c.f.clock.Now())
		if err != nil {
			return err
		}
		res = creditsResult{EntryID: e.ID, Amount: e.Amount, BalanceAfter: e.BalanceAfter}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return res, nil
}

// lockPack locks purchase purchaseID and the credit account its pack went
// to, in q's transaction. skipped says why there is nothing to do: no user,
// or no pack granted.
func (c *Credits) lockPack(ctx context.Context, q *store.Queries, purchaseID string) (store.Purchase, store.CreditAccount, string, error) {
	var acct store.CreditAccount
	p, err := q.LockPurchase(ctx, purchaseID)
	if errors.Is(err, store.ErrNotFound) {
		return p, acct, "", steps.Permanent(fmt.Errorf("purchase %s not found", purchaseID))
	}
	if err != nil {
		return p, acct, "", err
	}
	holder, ok := packHolder(p)
	if !ok {
		return p, acct, "the purchase has no user", nil
	}
	if _, err := q.GetCreditAccount(ctx, holder); errors.Is(err, store.ErrNotFound) {
		return p, acct, "no credits were granted for the purchase", nil
	} else if err != nil {
		return p, acct, "", err
	}
	if acct, err = q.LockCreditAccount(ctx, holder, c.f.clock.Now()); err != nil {
		return p, acct, "", err
	}
	if _, err := q.CreditEntryByCause(ctx, acct.ID, store.CreditGrant, store.CausePurchase, p.ID); errors.Is(err, store.ErrNotFound) {
		return p, acct, "no credits were granted for the purchase", nil
	} else if err != nil {
		return p, acct, "", err
	}
	return p, acct, "", nil
}

// creditsWebhookArgs is the input of a credits_webhook step: the event,
// and the entry it reports or, for credits.low, the notice.
type creditsWebhookArgs struct {
	Event   string `json:"event"`
	EntryID int64  `json:"entry_id,omitempty"`
	// Low notices: the account, its balance and the threshold it fell below.
	AccountID int64 `json:"account_id,omitempty"`
	Balance   int64 `json:"balance,omitempty"`
	Threshold int64 `json:"threshold,omitempty"`
}

// CreditsEvent is the data of a credits webhook: whose balance, what it
// is after the event, and the entry that moved it (none for credits.low).
type CreditsEvent struct {
	UserID         string `json:"user_id"`
	OrganizationID string `json:"organization_id,omitempty"`
	Balance        int64  `json:"balance"`
	// Kind, Amount, Cause and EntryID describe the ledger entry.
	Kind    store.CreditKind `json:"kind,omitempty"`
	Amount  int64            `json:"amount,omitempty"`
	Cause   *CreditCause     `json:"cause,omitempty"`
	EntryID int64            `json:"entry_id,omitempty"`
	// Threshold is the low-balance threshold (credits.low).
	Threshold *int64 `json:"threshold,omitempty"`
}

// CreditCause is an entry's cause as the API and webhooks show it.
type CreditCause struct {
	Kind store.CauseKind `json:"kind"`
	ID   string          `json:"id"`
}

// scheduleEntryWebhook schedules event about entry e, once per entry.
func (c *Credits) scheduleEntryWebhook(ctx context.Context, q *store.Queries, e store.CreditEntry, event string) error {
	_, err := c.f.engine.Schedule(ctx, q, steps.Pipeline{Name: PrefixCreditsEntry + strconv.FormatInt(e.ID, 10),
		Steps: []steps.Step{{Name: StepCreditsWebhook, Args: creditsWebhookArgs{Event: event, EntryID: e.ID}}}})
	return err
}

// webhook sends a credits event to the access webhook endpoint, with the
// step's idempotency key as message id. The balance is the one the entry
// left (or the notice saw), so a retry sends the same body.
func (c *Credits) webhook(ctx context.Context, job *steps.Job) (any, error) {
	var args creditsWebhookArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if c.f.webhook == nil {
		return map[string]string{"skipped": "no access webhook configured (access_webhook.url)"}, nil
	}
	ev, err := c.event(ctx, args)
	if err != nil {
		return nil, err
	}
	if err := c.f.webhook.Send(ctx, args.Event, job.IdempotencyKey, ev); err != nil {
		return nil, err
	}
	return map[string]any{"sent": true, "event": args.Event, "balance": ev.Balance}, nil
}

// event builds a webhook's data from the ledger.
func (c *Credits) event(ctx context.Context, args creditsWebhookArgs) (CreditsEvent, error) {
	accountID := args.AccountID
	var ev CreditsEvent
	if args.EntryID != 0 {
		e, err := c.f.db.GetCreditEntry(ctx, args.EntryID)
		if errors.Is(err, store.ErrNotFound) {
			return ev, steps.Permanent(fmt.Errorf("credit entry %d not found", args.EntryID))
		}
		if err != nil {
			return ev, fmt.Errorf("load credit entry: %w", err)
		}
		accountID = e.AccountID
		ev = CreditsEvent{Balance: e.BalanceAfter, Kind: e.Kind, Amount: e.Amount, EntryID: e.ID,
			Cause: &CreditCause{Kind: e.CauseKind, ID: e.CauseID}}
	} else {
		ev = CreditsEvent{Balance: args.Balance, Threshold: &args.Threshold}
	}
	a, err := c.creditAccount(ctx, accountID)
	if err != nil {
		return ev, err
	}
	ev.UserID, ev.OrganizationID = a.UserID, a.OrganizationID
	return ev, nil
}

// creditAccount loads a step's account; a missing one cannot appear later.
func (c *Credits) creditAccount(ctx context.Context, id int64) (store.CreditAccount, error) {
	a, err := c.f.db.GetCreditAccountByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return a, steps.Permanent(fmt.Errorf("credit account %d not found", id))
	}
	if err != nil {
		return a, fmt.Errorf("load credit account %d: %w", id, err)
	}
	return a, nil
}

// Consume spends credits as store.ConsumeCredits does (its own
// transaction) and, when the consumption may have left the balance below
// its period's threshold, confirms that under the account's lock and
// schedules the notice in the same transaction that marks it sent: the
// credits_low email and the credits.low webhook, once per period. Should
// that second transaction not happen (a crash between the two), the next
// consumption still below the threshold owes the notice again, so it is
// never lost for good. res.Low is the notice scheduled, if any.
func (c *Credits) Consume(ctx context.Context, req store.Consume) (store.Consumption, error) {
	res, err := c.f.db.ConsumeCredits(ctx, req, c.f.clock.Now())
	if err != nil || res.Low == nil {
		return res, err
	}
	accountID := res.Low.AccountID
	res.Low = nil
	err = c.f.db.InTx(ctx, func(q *store.Queries) error {
		n, err := q.NoteLowBalance(ctx, accountID)
		if err != nil || n == nil {
			return err
		}
		res.Low = n
		return c.scheduleLow(ctx, q, *n)
	})
	if err != nil {
		// The consumption is committed: answer it, and let the next one
		// owe the notice.
		c.f.log.Error("schedule the low-balance notice", "err", err, "credit_account_id", accountID)
		res.Low = nil
	}
	return res, nil
}

// lowArgs is the input of a credits_low email step.
type lowArgs struct {
	AccountID   int64  `json:"account_id"`
	PeriodCause string `json:"period_cause"`
	Balance     int64  `json:"balance"`
	Threshold   int64  `json:"threshold"`
}

func (c *Credits) scheduleLow(ctx context.Context, q *store.Queries, n store.LowNotice) error {
	list := []steps.Step{{Name: StepCreditsWebhook, Args: creditsWebhookArgs{Event: EventCreditsLow,
		AccountID: n.AccountID, Balance: n.Balance, Threshold: n.Threshold}}}
	if !c.f.quiet {
		list = append(list, steps.Step{Name: StepCreditsLow, Args: lowArgs{AccountID: n.AccountID,
			PeriodCause: n.PeriodCause, Balance: n.Balance, Threshold: n.Threshold}})
	}
	_, err := c.f.engine.Schedule(ctx, q, steps.Pipeline{
		Name:  PrefixCreditsLow + strconv.FormatInt(n.AccountID, 10) + ":" + n.PeriodCause,
		Steps: list})
	return err
}

// lowEmail sends credits_low to the account's user, naming the product
// of the period's pack when the period began with one.
func (c *Credits) lowEmail(ctx context.Context, job *steps.Job) (any, error) {
	var args lowArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	a, err := c.creditAccount(ctx, args.AccountID)
	if err != nil {
		return nil, err
	}
	user, err := c.f.db.GetAccount(ctx, a.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && deref(user.Email) == "") {
		return skipMail("the user has no email address on record")
	}
	if err != nil {
		return nil, fmt.Errorf("load account: %w", err)
	}
	d := mail.Data{CustomerEmail: *user.Email, CreditsBalance: args.Balance, CreditsThreshold: args.Threshold}
	if id, ok := strings.CutPrefix(args.PeriodCause, string(store.CausePurchase)+":"); ok {
		if p, err := c.f.db.GetPurchase(ctx, id); err == nil {
			d.ProductName = c.f.product(p.ProductKey).Name
		}
	}
	return c.f.send(ctx, job, mail.CreditsLow, d)
}
