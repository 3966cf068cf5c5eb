// Subscriptions, the decision: what a snapshot of a Stripe subscription
// (and of the invoices read with it) means for its row, given the row as
// recorded. One pure function, decideSubscription, says what to write and
// what the change sets in motion (emails, each once per cause; access;
// outbound webhooks; steps to cancel); the transaction that writes it is
// thin (subscription.go). Level-based: the same snapshot decided twice
// writes nothing the second time, whatever order the signals came in, and a
// terminal status never goes back.
package reconcile

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
)

// Email templates of the subscription lifecycle (internal/mail), and the
// outbound webhook events (the webhook access provider).
const (
	TemplateSubscriptionStarted   = mail.SubscriptionStarted
	TemplateTrialEnding           = mail.TrialEnding
	TemplateInvoiceReceipt        = mail.InvoiceReceipt
	TemplatePaymentFailed         = mail.PaymentFailed
	TemplatePaymentReminder       = mail.PaymentReminder
	TemplateSubscriptionCanceling = mail.SubscriptionCanceling
	TemplateSubscriptionResumed   = mail.SubscriptionResumed
	TemplateSubscriptionEnded     = mail.SubscriptionEnded
	TemplatePlanChanged           = mail.PlanChanged

	WebhookSubscriptionActivated = access.EventSubscriptionActivated
	WebhookSubscriptionUpdated   = access.EventSubscriptionUpdated
	WebhookSubscriptionPastDue   = access.EventSubscriptionPastDue
	WebhookSubscriptionCanceled  = access.EventSubscriptionCanceled
	WebhookSubscriptionEnded     = access.EventSubscriptionEnded
)

// trialReminderLead is how long before a trial ends trial_ending goes out.
const trialReminderLead = 7 * 24 * time.Hour

// SubscriptionEmail is one email a subscription change schedules: a
// template, sent once per Cause (the step's pipeline is named after it), at
// At, cancelable by Tag while it waits. Admin marks the operator's copy.
type SubscriptionEmail struct {
	Template  string    `json:"template"`
	Cause     string    `json:"cause"`
	At        time.Time `json:"at"`
	Tag       string    `json:"tag,omitempty"`
	Admin     bool      `json:"admin,omitempty"`
	InvoiceID string    `json:"invoice_id,omitempty"`
	// TrialEnd is the trial end a trial_ending email is for: it is not
	// sent if the trial end moved. PreviousPrice is the price a
	// plan_changed email changed from (its lookup key).
	TrialEnd      *time.Time `json:"trial_end,omitempty"`
	PreviousPrice string     `json:"previous_price,omitempty"`
}

// SubscriptionCredit is one move of a subscription's plan credits that a
// change schedules: an invoice of the plan newly seen paid (InvoiceID,
// with the plan's product as the subscription has it then), the end of
// the subscription (End, at At), or a plan change to a product without
// credits (Off, at At, with the product it left): what is left of the
// plan's credits expires. The fulfillment applies each once, as the ledger
// stands when its step runs.
type SubscriptionCredit struct {
	InvoiceID  string    `json:"invoice_id,omitempty"`
	ProductKey string    `json:"product_key"`
	End        bool      `json:"end,omitempty"`
	Off        bool      `json:"off,omitempty"`
	At         time.Time `json:"at"`
}

// PlanCreditReason reports whether an invoice of this billing reason moves
// a plan's credits: the first invoice (a trial's, for 0, included), a
// renewal, and a plan change's invoice. Others (manual, threshold) do not.
func PlanCreditReason(reason string) bool {
	switch reason {
	case "subscription_create", "subscription_cycle", "subscription_update":
		return true
	}
	return false
}

// SubscriptionChange is what one write of a subscription set in motion,
// for SubscriptionFulfillment to schedule in the same transaction. Cancel
// lists the tags of the subscription's waiting steps to cancel first.
type SubscriptionChange struct {
	Subscription store.Subscription
	// Cause names the change (its transition number): the access and
	// webhook steps it schedules are unique per cause.
	Cause  string
	Emails []SubscriptionEmail
	Cancel []string
	// Access is store.AccessGranted or store.AccessRevoked when the
	// entitlement changed, "" otherwise.
	Access   store.AccessState
	Webhooks []string
	// Credits are the plan credit moves, for a product with credits.
	Credits []SubscriptionCredit
}

// Empty reports whether the change sets nothing in motion.
func (c SubscriptionChange) Empty() bool {
	return len(c.Emails) == 0 && len(c.Cancel) == 0 && c.Access == "" && len(c.Webhooks) == 0 && len(c.Credits) == 0
}

// subPolicy is what the configuration says about subscriptions.
type subPolicy struct {
	// Grace is how long a past_due subscription keeps access after the
	// first failed payment of its earliest unpaid invoice (see entitle);
	// DunningReminder is when an invoice's payment_reminder goes out after
	// its first failed payment.
	Grace, DunningReminder time.Duration
	// Quiet schedules no customer or admin email (a backfill).
	Quiet bool
	// NotifyWindow: a subscription first seen when it started longer ago
	// than this is recorded without email (a first start against an
	// existing account), and a receipt is not sent for an invoice paid
	// longer ago; zero means no limit.
	NotifyWindow time.Duration
	// Credits names the products whose plans grant credits.
	Credits map[string]bool
}

// stale reports whether t is older than the notify window at now.
func (p subPolicy) stale(t *time.Time, now time.Time) bool {
	return p.NotifyWindow > 0 && t != nil && t.Before(now.Add(-p.NotifyWindow))
}

// subDecision is what decideSubscription decided.
type subDecision struct {
	// Next is the row to write; Write says whether it differs from the
	// recorded one (Insert: there is none).
	Next          store.Subscription
	Write, Insert bool
	// Invoices are the invoice rows to write (those that differ).
	Invoices []store.Invoice
	Change   SubscriptionChange
	// What names the change for the report ("" when nothing changed).
	What string
}

// ended reports whether status s means the subscription no longer serves
// its customer (canceled, unpaid, expired): subscription_ended is sent
// when it enters one.
func ended(s store.SubscriptionStatus) bool {
	return s.Terminal() || s == store.SubscriptionUnpaid
}

// decideSubscription decides what the snapshot snap (with the invoices
// read with it, each as Stripe says, FirstFailedAt not yet decided) means
// for the recorded row prev (nil: none) and its recorded invoices
// (prevInv, by id: those read with the snapshot, and those unpaid with a
// failed payment, which the grace counts from), at now. A terminal row
// never changes again; its invoices are still written as Stripe says,
// except that a paid or void invoice stays so (staleInvoice).
func decideSubscription(prev *store.Subscription, snap store.Subscription, invs []store.Invoice,
	prevInv map[string]store.Invoice, pol subPolicy, now time.Time) subDecision {
	var d subDecision
	next := snap
	if prev != nil {
		next = carry(*prev, snap)
	}
	// Invoices: a failure is first seen on an unpaid, attempted invoice.
	failed := map[string]bool{}
	decided := make([]store.Invoice, 0, len(invs))
	for _, inv := range invs {
		old, known := prevInv[inv.ID]
		if known && staleInvoice(old.Status, inv.Status) {
			inv = old // a snapshot older than the row: kept as recorded
		}
		inv.SubscriptionID = next.ID
		if known {
			inv.FirstFailedAt = old.FirstFailedAt
			inv.UpdatedAt = old.UpdatedAt
		}
		if inv.FirstFailedAt == nil && inv.Status.Unpaid() && inv.AttemptCount > 0 && inv.AmountRemaining > 0 {
			at := now
			inv.FirstFailedAt = &at
			failed[inv.ID] = true
		}
		decided = append(decided, inv)
		if !known || !sameInvoice(old, inv) {
			d.Invoices = append(d.Invoices, inv)
		}
	}
	if prev != nil && staleSubscription(*prev, snap) {
		next = *prev // an earlier period's snapshot: the row stands (its entitlement is still decided)
	}
	if prev != nil && prev.Status.Terminal() {
		next = *prev // Stripe never moves it again: a late snapshot changes nothing
	} else {
		var latest *store.Invoice
		if next.LatestInvoiceID != nil {
			if old, ok := prevInv[*next.LatestInvoiceID]; ok {
				latest = &old
			}
			for _, inv := range d.Invoices {
				if inv.ID == *next.LatestInvoiceID {
					latest = &inv
				}
			}
		}
		next = entitle(next, latest, earliestFailure(decided, prevInv), pol, now)
	}
	cpol := pol
	if prev == nil && pol.stale(next.StartedAt, now) {
		cpol.Quiet = true // an existing subscription, found late: recorded, not announced
	}
	d.Change = subscriptionChange(prev, next, decided, prevInv, failed, cpol, now)
	if !d.Change.Empty() {
		next.Transitions++
		d.Change.Cause = "sub:" + strconv.Itoa(next.Transitions)
	}
	d.Change.Subscription = next
	d.Next = next
	d.Insert = prev == nil
	d.Write = prev == nil || !sameSubscription(*prev, next)
	d.What = whatOf(prev, next)
	return d
}

// staleSubscription reports whether snapshot snap is older than the row
// prev: it is of an earlier period (Stripe's current_period_start never
// goes back; a renewal, a trial's end or a reset billing anchor move it
// forward). Stripe objects carry no updated time, so a snapshot of the
// same period cannot be ordered this way; within a period the rows follow
// the latest snapshot applied.
func staleSubscription(prev, snap store.Subscription) bool {
	return snap.CurrentPeriodStart.Before(prev.CurrentPeriodStart)
}

// staleInvoice reports whether an invoice recorded in status recorded must
// keep it against a snapshot in status s: paid and void are final in
// Stripe (a paid invoice cannot be voided, a void one cannot be paid), so
// a snapshot that says otherwise was read before the row was written (the
// pass lists an account's invoices before its subscriptions, minutes
// earlier under load). Applying it would make a paid invoice owed again,
// send payment_failed for it and count it toward the grace. The other
// moves (draft to open, open to uncollectible and back to paid) carry no
// such order and are applied as Stripe says.
func staleInvoice(recorded, s store.InvoiceStatus) bool {
	return recorded != s && (recorded == store.InvoicePaid || recorded == store.InvoiceVoid)
}

// carry returns the snapshot with what paymentd decided on prev kept: its
// id, its user and organization (Stripe's metadata may not have them, a
// claim may have set them), its access state and transition count, the
// start once seen, and when it was first seen past_due.
func carry(prev, snap store.Subscription) store.Subscription {
	next := snap
	next.ID, next.AccessState, next.Transitions, next.CheckedAt = prev.ID, prev.AccessState, prev.Transitions, prev.CheckedAt
	next.PastDueSince = prev.PastDueSince
	next.CreatedAt, next.UpdatedAt = prev.CreatedAt, prev.UpdatedAt
	if prev.UserID != nil {
		next.UserID = prev.UserID
	}
	if prev.OrganizationID != nil {
		next.OrganizationID = prev.OrganizationID
	}
	if next.CustomerEmail == nil {
		next.CustomerEmail = prev.CustomerEmail
	}
	if prev.StartedAt != nil {
		next.StartedAt = prev.StartedAt
	}
	if prev.ProductKey != "" && next.ProductKey == "" {
		next.ProductKey = prev.ProductKey
	}
	return next
}

// entitle decides whether s gives access now, until when a past_due one
// keeps it, and when to look again without a signal. failed is the first
// failed payment of its earliest unpaid invoice (nil: none known). The
// grace counts from that failure, or from when s was first seen past_due
// (kept on the row), whichever came first: never from the latest invoice
// or from now, or it would begin again with the next period's invoice (not
// charged yet, or never: send_invoice) and with every pass, and access
// would come back every period while nothing is paid.
func entitle(s store.Subscription, latest *store.Invoice, failed *time.Time, pol subPolicy, now time.Time) store.Subscription {
	if s.StartedAt == nil && s.Status.Started() {
		t := now
		s.StartedAt = &t
	}
	s.GraceUntil = nil
	if s.Status != store.SubscriptionPastDue {
		s.PastDueSince = nil
	} else if s.PastDueSince == nil {
		t := now
		s.PastDueSince = &t
	}
	switch s.Status {
	case store.SubscriptionTrialing, store.SubscriptionActive:
		s.Entitled = true
	case store.SubscriptionPastDue:
		from := *s.PastDueSince
		if failed != nil && failed.Before(from) {
			from = *failed
		}
		until := from.Add(pol.Grace)
		s.GraceUntil = &until
		s.Entitled = now.Before(until)
	default:
		s.Entitled = false
	}
	s.NextCheckAt = nil
	if s.Status.Terminal() {
		return s
	}
	next := s.CurrentPeriodEnd
	consider := func(t *time.Time) {
		if t != nil && t.After(now) && t.Before(next) {
			next = *t
		}
	}
	consider(s.TrialEnd)
	if s.Entitled {
		consider(s.GraceUntil)
	}
	if latest != nil && latest.Status.Unpaid() {
		consider(latest.NextPaymentAttempt)
	}
	s.NextCheckAt = &next
	return s
}

// earliestFailure returns the earliest first failed payment of the unpaid
// invoices among decided (as this snapshot says) and the recorded ones in
// prevInv it does not hold (as recorded), nil when none shows a failure.
func earliestFailure(decided []store.Invoice, prevInv map[string]store.Invoice) *time.Time {
	var at *time.Time
	consider := func(i store.Invoice) {
		if i.Status.Unpaid() && i.FirstFailedAt != nil && (at == nil || i.FirstFailedAt.Before(*at)) {
			at = i.FirstFailedAt
		}
	}
	seen := make(map[string]bool, len(decided))
	for _, i := range decided {
		seen[i.ID] = true
		consider(i)
	}
	for id, i := range prevInv {
		if !seen[id] {
			consider(i)
		}
	}
	return at
}

// subscriptionChange decides the emails, access and webhooks the move from
// prev (nil: first seen) to next sets in motion; failed names the invoices
// whose first failure this snapshot found.
func subscriptionChange(prev *store.Subscription, next store.Subscription, invs []store.Invoice,
	prevInv map[string]store.Invoice, failed map[string]bool, pol subPolicy, now time.Time) SubscriptionChange {
	if prev != nil && prev.Status.Terminal() {
		return SubscriptionChange{}
	}
	b := &changeBuilder{quiet: pol.Quiet, now: now}
	wasStarted := prev != nil && prev.Status.Started()
	n := strconv.Itoa(next.Transitions + 1)
	if !wasStarted && next.Status.Started() && !ended(next.Status) {
		b.email(SubscriptionEmail{Template: TemplateSubscriptionStarted, Cause: "started"})
		b.admin(TemplateSubscriptionStarted, "started")
		b.webhook(WebhookSubscriptionActivated)
	}
	b.trial(prev, next)
	b.invoices(next, invs, prevInv, failed, pol)
	if prev != nil && !ended(next.Status) {
		b.updated(*prev, next, n)
	}
	// End: once per entry into an ended status, of a subscription that
	// had started.
	wasEnded := prev != nil && ended(prev.Status)
	if ended(next.Status) && !wasEnded && (wasStarted || (prev == nil && next.StartedAt != nil)) {
		b.ended(prev, next, n)
	}
	c := b.c
	c.Credits = planCredits(prev, next, invs, prevInv, pol, now)
	// Access follows the entitlement.
	switch {
	case next.Entitled && (prev == nil || !prev.Entitled):
		c.Access = store.AccessGranted
	case !next.Entitled && prev != nil && prev.Entitled:
		c.Access = store.AccessRevoked
	}
	c.Webhooks, c.Cancel = compactStrings(c.Webhooks), compactStrings(c.Cancel)
	return c
}

// changeBuilder collects a SubscriptionChange, one cause at a time; a quiet
// one (a backfill) keeps no email.
type changeBuilder struct {
	c     SubscriptionChange
	quiet bool
	now   time.Time
}

// email adds e, due now unless e says when.
func (b *changeBuilder) email(e SubscriptionEmail) {
	if b.quiet {
		return
	}
	if e.At.IsZero() {
		e.At = b.now
	}
	b.c.Emails = append(b.c.Emails, e)
}

// admin adds the admin's copy of template, for cause.
func (b *changeBuilder) admin(template, cause string) {
	b.email(SubscriptionEmail{Template: template, Cause: cause + ":admin", Admin: true})
}

func (b *changeBuilder) webhook(event string) { b.c.Webhooks = append(b.c.Webhooks, event) }

func (b *changeBuilder) cancel(tag string) { b.c.Cancel = append(b.c.Cancel, tag) }

// trial decides the trial reminder: one per trial end, 7 days before it;
// moved when the trial end moves; canceled once the trial is over
// (converted or not).
func (b *changeBuilder) trial(prev *store.Subscription, next store.Subscription) {
	wasTrial := prev != nil && prev.Status == store.SubscriptionTrialing && prev.TrialEnd != nil
	isTrial := next.Status == store.SubscriptionTrialing && next.TrialEnd != nil && next.TrialEnd.After(b.now)
	switch {
	case isTrial && (!wasTrial || !prev.TrialEnd.Equal(*next.TrialEnd)):
		if wasTrial {
			b.cancel(tagTrial)
		}
		at := next.TrialEnd.Add(-trialReminderLead)
		if at.Before(b.now) {
			at = b.now
		}
		b.email(SubscriptionEmail{Template: TemplateTrialEnding,
			Cause: "trial_ending:" + strconv.FormatInt(next.TrialEnd.Unix(), 10), At: at, Tag: tagTrial, TrialEnd: next.TrialEnd})
	case wasTrial && !isTrial:
		b.cancel(tagTrial)
	}
}

// invoices decides a receipt per paid invoice with something paid, and one
// failure email per invoice, then its reminder unless it is paid by then.
func (b *changeBuilder) invoices(next store.Subscription, invs []store.Invoice, prevInv map[string]store.Invoice,
	failed map[string]bool, pol subPolicy) {
	for _, inv := range invs {
		old, known := prevInv[inv.ID]
		if inv.Status == store.InvoicePaid && inv.AmountPaid > 0 && (!known || old.Status != store.InvoicePaid) &&
			!pol.stale(inv.PaidAt, b.now) {
			b.email(SubscriptionEmail{Template: TemplateInvoiceReceipt, Cause: "invoice_receipt:" + inv.ID, InvoiceID: inv.ID})
		}
		if failed[inv.ID] && next.Status.Started() && !ended(next.Status) {
			b.email(SubscriptionEmail{Template: TemplatePaymentFailed, Cause: "payment_failed:" + inv.ID, InvoiceID: inv.ID})
			b.email(SubscriptionEmail{Template: TemplatePaymentReminder, Cause: "payment_reminder:" + inv.ID,
				At: inv.FirstFailedAt.Add(pol.DunningReminder), Tag: tagDunning(inv.ID), InvoiceID: inv.ID})
		}
		if known && old.FirstFailedAt != nil && old.Status.Unpaid() && !inv.Status.Unpaid() {
			b.cancel(tagDunning(inv.ID))
		}
	}
}

// updated decides what a subscription that has not ended says about a
// change: a cancellation scheduled or taken back, a plan change, past due,
// another status (n numbers the transition).
func (b *changeBuilder) updated(prev, next store.Subscription, n string) {
	switch {
	case !prev.CancelAtPeriodEnd && next.CancelAtPeriodEnd:
		b.email(SubscriptionEmail{Template: TemplateSubscriptionCanceling, Cause: "canceling:" + n})
		b.webhook(WebhookSubscriptionCanceled)
	case prev.CancelAtPeriodEnd && !next.CancelAtPeriodEnd:
		b.email(SubscriptionEmail{Template: TemplateSubscriptionResumed, Cause: "resumed:" + n})
		b.webhook(WebhookSubscriptionUpdated)
	}
	if prev.StripePriceID != next.StripePriceID {
		b.email(SubscriptionEmail{Template: TemplatePlanChanged, Cause: "plan_changed:" + n, PreviousPrice: prev.PriceKey})
		b.webhook(WebhookSubscriptionUpdated)
	}
	if prev.Status != store.SubscriptionPastDue && next.Status == store.SubscriptionPastDue {
		b.webhook(WebhookSubscriptionPastDue)
	}
	if prev.Status != next.Status && prev.Status.Started() && next.Status != store.SubscriptionPastDue {
		b.webhook(WebhookSubscriptionUpdated) // active again, paused, trial converted
	}
}

// ended decides the end of a subscription that had started.
func (b *changeBuilder) ended(prev *store.Subscription, next store.Subscription, n string) {
	b.email(SubscriptionEmail{Template: TemplateSubscriptionEnded, Cause: "ended:" + n})
	b.admin(TemplateSubscriptionEnded, "ended:"+n)
	if next.Status == store.SubscriptionCanceled && (prev == nil || !prev.CancelAtPeriodEnd) {
		b.webhook(WebhookSubscriptionCanceled)
	}
	b.webhook(WebhookSubscriptionEnded)
	if prev != nil {
		b.cancel(tagTrial)
	}
}

// planCredits decides the plan credit moves of the move from prev to next
// (never called for a prev that is terminal): each invoice of a plan
// reason newly seen paid, whatever it paid (a trial's first invoice pays
// 0 and grants the plan from the trial's start), and the end once, on
// entering a terminal status, at the time it ended, for a subscription
// that had started (one that expired incomplete never paid for a
// period). A quiet pass (a backfill) moves credits all the same: they are
// no email. An unpaid invoice moves nothing; it does once it is paid. A
// plan that moves from a product with credits to one without expires what
// is left of them, once, now (the subscription may come back to a plan
// with credits: its next paid invoice grants them anew); nothing else
// about a product without credits moves any.
func planCredits(prev *store.Subscription, next store.Subscription, invs []store.Invoice,
	prevInv map[string]store.Invoice, pol subPolicy, now time.Time) []SubscriptionCredit {
	if !pol.Credits[next.ProductKey] {
		if prev != nil && pol.Credits[prev.ProductKey] {
			return []SubscriptionCredit{{Off: true, ProductKey: prev.ProductKey, At: now}}
		}
		return nil
	}
	var out []SubscriptionCredit
	for _, inv := range invs {
		old, known := prevInv[inv.ID]
		if inv.Status == store.InvoicePaid && PlanCreditReason(inv.BillingReason) && (!known || old.Status != store.InvoicePaid) {
			out = append(out, SubscriptionCredit{InvoiceID: inv.ID, ProductKey: next.ProductKey, At: now})
		}
	}
	if next.Status.Terminal() && (prev == nil || !prev.Status.Terminal()) && next.StartedAt != nil {
		at := now
		if next.EndedAt != nil && next.EndedAt.After(now) {
			at = *next.EndedAt
		}
		out = append(out, SubscriptionCredit{End: true, ProductKey: next.ProductKey, At: at})
	}
	return out
}

// Step tags of a subscription's waiting emails.
const tagTrial = "trial_ending"

func tagDunning(invoiceID string) string { return "dunning:" + invoiceID }

// compactStrings drops repeated values, keeping the first of each.
func compactStrings(vs []string) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// whatOf names a subscription's change for the report.
func whatOf(prev *store.Subscription, next store.Subscription) string {
	switch {
	case prev == nil:
		return "subscription_" + string(next.Status)
	case prev.Status != next.Status:
		return "subscription_" + string(next.Status)
	case !sameSubscription(*prev, next):
		return "subscription_updated"
	}
	return ""
}

// sameSubscription compares what Stripe and the decision set, ignoring the
// bookkeeping times; times compare by instant.
func sameSubscription(a, b store.Subscription) bool {
	a.UpdatedAt, b.UpdatedAt, a.CheckedAt, b.CheckedAt = time.Time{}, time.Time{}, nil, nil
	return sameJSON(a, b)
}

// sameInvoice is sameSubscription for invoices.
func sameInvoice(a, b store.Invoice) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return sameJSON(a, b)
}

func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
