package reconcile

// Table tests of decideSubscription: what a subscription snapshot means
// for its row, its invoices, and what it sets in motion.

import (
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

var subNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func tp(t time.Time) *time.Time { return &t }
func sp(s string) *string       { return &s }

// sub is a snapshot of an active monthly subscription whose period began
// a day ago, with latest invoice in_1; edit adjusts it.
func sub(edit func(*store.Subscription)) store.Subscription {
	s := store.Subscription{ID: "5c0d3a4e-0000-4000-8000-000000000001", StripeSubscriptionID: "sub_1",
		UserID: sp("user-1"), StripeCustomerID: "cus_1", ProductKey: "pro", PriceKey: "pro_monthly",
		StripePriceID: "price_m", Status: store.SubscriptionActive, Quantity: 1, Amount: 2900, Currency: "usd",
		Interval: "month", IntervalCount: 1, CurrentPeriodStart: subNow.Add(-24 * time.Hour),
		CurrentPeriodEnd: subNow.Add(29 * 24 * time.Hour), LatestInvoiceID: sp("in_1"),
		StartedAt: tp(subNow.Add(-24 * time.Hour)), AccessState: store.AccessNone,
		CreatedAt: subNow.Add(-24 * time.Hour), UpdatedAt: subNow}
	if edit != nil {
		edit(&s)
	}
	return s
}

// inv is invoice in_1 of sub, paid; edit adjusts it.
func inv(edit func(*store.Invoice)) store.Invoice {
	i := store.Invoice{ID: "in_1", Status: store.InvoicePaid, BillingReason: "subscription_cycle", Currency: "usd",
		AmountDue: 2900, AmountPaid: 2900, AttemptCount: 1, PaidAt: tp(subNow.Add(-time.Hour)),
		CreatedAt: subNow.Add(-2 * time.Hour)}
	if edit != nil {
		edit(&i)
	}
	return i
}

// recorded is what a decision wrote, as the next decision finds it.
func recorded(d subDecision) (*store.Subscription, map[string]store.Invoice) {
	s := d.Next
	m := map[string]store.Invoice{}
	for _, i := range d.Invoices {
		i.SubscriptionID = s.ID
		m[i.ID] = i
	}
	return &s, m
}

func templates(c SubscriptionChange) []string {
	var out []string
	for _, e := range c.Emails {
		name := e.Template
		if e.Admin {
			name = "admin:" + name
		}
		out = append(out, name)
	}
	return out
}

func TestDecideSubscription(t *testing.T) {
	t.Parallel()
	pol := subPolicy{Grace: 7 * 24 * time.Hour, DunningReminder: 3 * 24 * time.Hour}
	trialEnd := subNow.Add(14 * 24 * time.Hour)
	trialing := sub(func(s *store.Subscription) {
		s.Status, s.TrialEnd, s.CurrentPeriodEnd = store.SubscriptionTrialing, tp(trialEnd), trialEnd
	})
	zeroTrialInvoice := inv(func(i *store.Invoice) {
		i.AmountDue, i.AmountPaid, i.BillingReason = 0, 0, "subscription_create"
	})
	activeGranted := sub(func(s *store.Subscription) { s.Entitled, s.AccessState = true, store.AccessGranted })
	failing := inv(func(i *store.Invoice) {
		i.Status, i.AmountPaid, i.AmountRemaining, i.PaidAt = store.InvoiceOpen, 0, 2900, nil
		i.NextPaymentAttempt = tp(subNow.Add(3 * 24 * time.Hour))
	})
	pastDue := sub(func(s *store.Subscription) { s.Status = store.SubscriptionPastDue })
	failedAt := subNow.Add(-8 * 24 * time.Hour)
	failedLongAgo := failing
	failedLongAgo.FirstFailedAt = tp(failedAt)
	pastDueInGrace := sub(func(s *store.Subscription) {
		s.Status, s.Entitled, s.GraceUntil = store.SubscriptionPastDue, true, tp(subNow.Add(7*24*time.Hour))
	})
	pastDueRevoked := sub(func(s *store.Subscription) {
		s.Status, s.Entitled, s.GraceUntil = store.SubscriptionPastDue, false, tp(failedAt.Add(7*24*time.Hour))
	})
	canceled := sub(func(s *store.Subscription) {
		s.Status, s.EndedAt, s.CanceledAt = store.SubscriptionCanceled, tp(subNow), tp(subNow)
	})
	// The next period's invoice of a past_due subscription: open, not
	// attempted yet (a renewal still to be charged, or a send_invoice
	// subscription, which never attempts), latest now.
	unattempted := inv(func(i *store.Invoice) {
		i.ID, i.Status, i.AttemptCount, i.AmountPaid, i.AmountRemaining, i.PaidAt = "in_2", store.InvoiceOpen, 0, 0, 2900, nil
		i.NextPaymentAttempt = tp(subNow.Add(time.Hour))
	})
	pastDueOnIn2 := sub(func(s *store.Subscription) { s.Status, s.LatestInvoiceID = store.SubscriptionPastDue, sp("in_2") })
	failedRecently := withFailure(failing, subNow.Add(-3*24*time.Hour))

	for _, tc := range []struct {
		name    string
		prev    *store.Subscription
		prevInv []store.Invoice
		snap    store.Subscription
		invs    []store.Invoice
		pol     subPolicy
		// want
		emails   []string
		cancel   []string
		access   store.AccessState
		webhooks []string
		entitled bool
		write    bool
		check    func(t *testing.T, d subDecision)
	}{
		{name: "a new trial: welcome, trial reminder 7 days before its end, access, activated",
			snap: trialing, invs: []store.Invoice{zeroTrialInvoice}, pol: pol,
			emails: []string{TemplateSubscriptionStarted, "admin:" + TemplateSubscriptionStarted, TemplateTrialEnding},
			access: store.AccessGranted, webhooks: []string{WebhookSubscriptionActivated}, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				if at := d.Change.Emails[2].At; !at.Equal(trialEnd.Add(-7 * 24 * time.Hour)) {
					t.Errorf("trial reminder at %s", at)
				}
				if d.Next.NextCheckAt == nil || !d.Next.NextCheckAt.Equal(trialEnd) {
					t.Errorf("next check %v, want the trial end", d.Next.NextCheckAt)
				}
				if len(d.Invoices) != 1 || d.Invoices[0].SubscriptionID != d.Next.ID {
					t.Errorf("invoices %+v", d.Invoices)
				}
			}},
		{name: "the trial converts: receipt, trial reminder canceled",
			prev: tp2(trialing, true), prevInv: []store.Invoice{zeroTrialInvoice},
			snap: sub(func(s *store.Subscription) { s.LatestInvoiceID = sp("in_2") }),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.ID = "in_2" })}, pol: pol,
			emails: []string{TemplateInvoiceReceipt}, cancel: []string{tagTrial},
			webhooks: []string{WebhookSubscriptionUpdated}, entitled: true, write: true},
		{name: "the trial end moves: the reminder moves with it",
			prev: tp2(trialing, true), prevInv: []store.Invoice{zeroTrialInvoice},
			snap: sub(func(s *store.Subscription) {
				*s = trialing
				s.TrialEnd = tp(trialEnd.Add(48 * time.Hour))
			}),
			invs: []store.Invoice{zeroTrialInvoice}, pol: pol,
			emails: []string{TemplateTrialEnding}, cancel: []string{tagTrial}, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				if c := d.Change.Emails[0].Cause; c == "trial_ending:"+itoa(trialEnd.Unix()) {
					t.Errorf("moved reminder has the old cause %s", c)
				}
			}},
		{name: "the same snapshot again writes and schedules nothing",
			prev: first(activeGranted, inv(nil)), prevInv: []store.Invoice{inv(nil)},
			snap: activeGranted, invs: []store.Invoice{inv(nil)}, pol: pol, entitled: true},
		{name: "a renewal fails: one email, its reminder, access kept in grace, past_due",
			// The renewal's invoice is new (the last period's, paid, is
			// another one): a paid invoice is never seen open again.
			prev: &activeGranted, snap: pastDue, invs: []store.Invoice{failing}, pol: pol,
			emails:   []string{TemplatePaymentFailed, TemplatePaymentReminder},
			webhooks: []string{WebhookSubscriptionPastDue}, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				if at := d.Change.Emails[1].At; !at.Equal(subNow.Add(3 * 24 * time.Hour)) {
					t.Errorf("reminder at %s", at)
				}
				if g := d.Next.GraceUntil; g == nil || !g.Equal(subNow.Add(7*24*time.Hour)) {
					t.Errorf("grace until %v", g)
				}
				if d.Next.NextCheckAt == nil || !d.Next.NextCheckAt.Equal(*failing.NextPaymentAttempt) {
					t.Errorf("next check %v, want the next payment attempt", d.Next.NextCheckAt)
				}
			}},
		{name: "a retry fails again: no second email",
			prev: &pastDueInGrace, prevInv: []store.Invoice{withFailure(failing, subNow)}, snap: pastDue,
			invs: []store.Invoice{inv(func(i *store.Invoice) {
				*i = failing
				i.AttemptCount = 2
			})}, pol: pol, entitled: true, write: true},
		{name: "past the grace: access revoked",
			prev: &pastDueInGrace, prevInv: []store.Invoice{failedLongAgo}, snap: pastDue,
			invs: []store.Invoice{failedLongAgo}, pol: pol, access: store.AccessRevoked, write: true},
		{name: "past_due, the next invoice not attempted yet: the grace still counts from the old failure, over",
			prev: &pastDueRevoked, prevInv: []store.Invoice{failedLongAgo}, snap: pastDueOnIn2,
			invs: []store.Invoice{unattempted}, pol: pol, write: true,
			check: func(t *testing.T, d subDecision) {
				if g := d.Next.GraceUntil; g == nil || !g.Equal(failedAt.Add(7*24*time.Hour)) {
					t.Errorf("grace until %v, want %s (the old invoice's failure plus the grace)", g, failedAt.Add(7*24*time.Hour))
				}
			}},
		{name: "past_due, the next invoice not attempted yet: the grace still counts from the old failure, in grace",
			prev: &pastDueInGrace, prevInv: []store.Invoice{failedRecently}, snap: pastDueOnIn2,
			invs: []store.Invoice{unattempted}, pol: pol, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				want := failedRecently.FirstFailedAt.Add(7 * 24 * time.Hour)
				if g := d.Next.GraceUntil; g == nil || !g.Equal(want) {
					t.Errorf("grace until %v, want %s", g, want)
				}
				if d.Next.NextCheckAt == nil || !d.Next.NextCheckAt.Equal(*unattempted.NextPaymentAttempt) {
					t.Errorf("next check %v, want the next payment attempt", d.Next.NextCheckAt)
				}
			}},
		{name: "past_due with no failure known: the grace counts from when it was first seen past_due",
			prev: &activeGranted, prevInv: []store.Invoice{inv(nil)}, snap: pastDueOnIn2,
			invs: []store.Invoice{unattempted}, pol: pol, webhooks: []string{WebhookSubscriptionPastDue}, entitled: true,
			write: true,
			check: func(t *testing.T, d subDecision) {
				want := subNow.Add(7 * 24 * time.Hour)
				if g := d.Next.GraceUntil; g == nil || !g.Equal(want) {
					t.Errorf("grace until %v, want %s", g, want)
				}
				if p := d.Next.PastDueSince; p == nil || !p.Equal(subNow) {
					t.Errorf("past_due since %v, want now", p)
				}
				// Later passes, the same snapshot: the grace does not move.
				prev, invs := recorded(d)
				invs["in_1"] = inv(nil)
				for _, tc := range []struct {
					after    time.Duration
					entitled bool
					access   store.AccessState
				}{{6 * 24 * time.Hour, true, ""}, {8 * 24 * time.Hour, false, store.AccessRevoked}} {
					later := decideSubscription(prev, pastDueOnIn2, []store.Invoice{unattempted}, invs, pol, subNow.Add(tc.after))
					if later.Next.Entitled != tc.entitled || later.Change.Access != tc.access {
						t.Errorf("%s later: entitled %v, access %q; want %v, %q", tc.after, later.Next.Entitled,
							later.Change.Access, tc.entitled, tc.access)
					}
					if g := later.Next.GraceUntil; g == nil || !g.Equal(want) {
						t.Errorf("%s later: grace until %v, want %s", tc.after, g, want)
					}
				}
			}},
		{name: "past_due, the old invoice paid since and the new one failing: the grace counts from the new failure",
			prev: &pastDueInGrace, prevInv: []store.Invoice{failedLongAgo}, snap: pastDueOnIn2,
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.AttemptCount = 3 }), inv(func(i *store.Invoice) {
				*i = failing
				i.ID = "in_2"
			})}, pol: pol,
			emails: []string{TemplateInvoiceReceipt, TemplatePaymentFailed, TemplatePaymentReminder},
			cancel: []string{"dunning:in_1"}, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				if g := d.Next.GraceUntil; g == nil || !g.Equal(subNow.Add(7*24*time.Hour)) {
					t.Errorf("grace until %v, want a week from now", g)
				}
			}},
		{name: "both invoices paid after the grace: active, entitled again, the grace forgotten",
			prev: &pastDueRevoked, prevInv: []store.Invoice{failedLongAgo, unattempted},
			snap: sub(func(s *store.Subscription) { s.LatestInvoiceID = sp("in_2") }),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.AttemptCount = 3 }), inv(func(i *store.Invoice) { i.ID = "in_2" })},
			pol:  pol, emails: []string{TemplateInvoiceReceipt, TemplateInvoiceReceipt}, cancel: []string{"dunning:in_1"},
			access: store.AccessGranted, webhooks: []string{WebhookSubscriptionUpdated}, entitled: true, write: true,
			check: func(t *testing.T, d subDecision) {
				if d.Next.GraceUntil != nil || d.Next.PastDueSince != nil {
					t.Errorf("grace until %v, past_due since %v on an active subscription", d.Next.GraceUntil,
						d.Next.PastDueSince)
				}
			}},
		{name: "grace 0 revokes at once",
			prev: &activeGranted, snap: pastDue, invs: []store.Invoice{failing},
			pol:      subPolicy{DunningReminder: pol.DunningReminder},
			emails:   []string{TemplatePaymentFailed, TemplatePaymentReminder},
			webhooks: []string{WebhookSubscriptionPastDue}, access: store.AccessRevoked, write: true},
		{name: "paid on a retry: receipt, reminder canceled, access restored",
			prev: &pastDueRevoked, prevInv: []store.Invoice{failedLongAgo}, snap: sub(nil),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.AttemptCount = 3 })}, pol: pol,
			emails: []string{TemplateInvoiceReceipt}, cancel: []string{"dunning:in_1"}, access: store.AccessGranted,
			webhooks: []string{WebhookSubscriptionUpdated}, entitled: true, write: true},
		{name: "paid seen before the failure: a receipt, no failure email",
			prev: &activeGranted, snap: sub(nil),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.AttemptCount = 2 })}, pol: pol,
			emails: []string{TemplateInvoiceReceipt}, entitled: true, write: true},
		{name: "cancel at period end: a note, access kept until the end",
			prev: &activeGranted, prevInv: []store.Invoice{inv(nil)},
			snap: sub(func(s *store.Subscription) { s.CancelAtPeriodEnd, s.CanceledAt = true, tp(subNow) }),
			invs: []store.Invoice{inv(nil)}, pol: pol, emails: []string{TemplateSubscriptionCanceling},
			webhooks: []string{WebhookSubscriptionCanceled}, entitled: true, write: true},
		{name: "resumed before the end",
			prev:    tp2(sub(func(s *store.Subscription) { s.CancelAtPeriodEnd = true }), true),
			prevInv: []store.Invoice{inv(nil)}, snap: sub(nil), invs: []store.Invoice{inv(nil)}, pol: pol,
			emails: []string{TemplateSubscriptionResumed}, webhooks: []string{WebhookSubscriptionUpdated},
			entitled: true, write: true},
		{name: "the period really ends: ended, admin told, access revoked",
			prev:    tp2(sub(func(s *store.Subscription) { s.CancelAtPeriodEnd = true }), true),
			prevInv: []store.Invoice{inv(nil)},
			snap:    sub(func(s *store.Subscription) { *s = canceled; s.CancelAtPeriodEnd = true }),
			invs:    []store.Invoice{inv(nil)}, pol: pol,
			emails: []string{TemplateSubscriptionEnded, "admin:" + TemplateSubscriptionEnded}, cancel: []string{tagTrial},
			access: store.AccessRevoked, webhooks: []string{WebhookSubscriptionEnded}, write: true,
			check: func(t *testing.T, d subDecision) {
				if d.Next.NextCheckAt != nil {
					t.Errorf("an ended subscription is checked again at %v", d.Next.NextCheckAt)
				}
			}},
		{name: "a late active snapshot after canceled changes nothing",
			prev: &canceled, prevInv: []store.Invoice{inv(nil)}, snap: activeGranted, invs: []store.Invoice{inv(nil)},
			pol: pol},
		{name: "retries exhausted: unpaid ends it",
			prev: &pastDueInGrace, prevInv: []store.Invoice{withFailure(failing, subNow)},
			snap: sub(func(s *store.Subscription) { s.Status = store.SubscriptionUnpaid }),
			invs: []store.Invoice{withFailure(failing, subNow)}, pol: pol,
			emails: []string{TemplateSubscriptionEnded, "admin:" + TemplateSubscriptionEnded}, cancel: []string{tagTrial},
			access: store.AccessRevoked, webhooks: []string{WebhookSubscriptionEnded}, write: true},
		{name: "a price change",
			prev: &activeGranted, prevInv: []store.Invoice{inv(nil)},
			snap: sub(func(s *store.Subscription) { s.StripePriceID, s.PriceKey, s.Amount = "price_y", "pro_yearly", 29000 }),
			invs: []store.Invoice{inv(nil)}, pol: pol, emails: []string{TemplatePlanChanged},
			webhooks: []string{WebhookSubscriptionUpdated}, entitled: true, write: true},
		{name: "backfill of an active subscription: access, no email",
			snap: sub(nil), invs: []store.Invoice{inv(nil)}, pol: subPolicy{Grace: pol.Grace, Quiet: true},
			access: store.AccessGranted, webhooks: []string{WebhookSubscriptionActivated}, entitled: true, write: true},
		{name: "backfill of a canceled subscription: recorded, no email, no access",
			snap: canceled, invs: []store.Invoice{inv(nil)}, pol: subPolicy{Grace: pol.Grace, Quiet: true},
			webhooks: []string{WebhookSubscriptionCanceled, WebhookSubscriptionEnded}, write: true},
		{name: "first seen long after it started (a first start): access, no email",
			snap: sub(func(s *store.Subscription) { s.StartedAt = tp(subNow.AddDate(0, -5, 0)) }),
			invs: []store.Invoice{inv(nil)}, pol: subPolicy{Grace: pol.Grace, NotifyWindow: 72 * time.Hour},
			access: store.AccessGranted, webhooks: []string{WebhookSubscriptionActivated}, entitled: true, write: true},
		{name: "an invoice paid long ago found late: no receipt",
			prev: &activeGranted, snap: sub(nil),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.PaidAt = tp(subNow.AddDate(0, -2, 0)) })},
			pol:  subPolicy{Grace: pol.Grace, NotifyWindow: 72 * time.Hour}, entitled: true, write: true},
		// A snapshot older than the row (a list of invoices read minutes
		// before a hint recorded the payment): a paid invoice stays paid,
		// and no payment_failed goes out for it.
		{name: "a stale open invoice after a recorded paid: no change, no payment_failed",
			prev: first(sub(nil), inv(nil)), prevInv: []store.Invoice{ofSub(inv(nil))},
			snap: sub(nil), invs: []store.Invoice{failing}, pol: pol, entitled: true,
			check: func(t *testing.T, d subDecision) {
				if len(d.Invoices) != 0 {
					t.Errorf("invoices written %+v, want the paid one kept", d.Invoices)
				}
			}},
		{name: "a stale draft invoice after a recorded void: no change",
			prev: first(sub(nil), inv(nil)), prevInv: []store.Invoice{ofSub(inv(nil)), ofSub(inv(func(i *store.Invoice) {
				i.ID, i.Status, i.AmountPaid, i.PaidAt = "in_0", store.InvoiceVoid, 0, nil
			}))},
			snap: sub(nil), invs: []store.Invoice{inv(nil), inv(func(i *store.Invoice) {
				i.ID, i.Status, i.AmountPaid, i.AmountRemaining, i.PaidAt = "in_0", store.InvoiceDraft, 0, 2900, nil
			})}, pol: pol, entitled: true,
			check: func(t *testing.T, d subDecision) {
				if len(d.Invoices) != 0 {
					t.Errorf("invoices written %+v, want the void one kept", d.Invoices)
				}
			}},
		{name: "a stale uncollectible invoice after a recorded paid: no change, no payment_failed",
			prev: first(sub(nil), inv(nil)), prevInv: []store.Invoice{ofSub(inv(nil))},
			snap: sub(nil), invs: []store.Invoice{inv(func(i *store.Invoice) {
				i.Status, i.AmountPaid, i.AmountRemaining, i.PaidAt = store.InvoiceUncollectible, 0, 2900, nil
			})}, pol: pol, entitled: true,
			check: func(t *testing.T, d subDecision) {
				if len(d.Invoices) != 0 {
					t.Errorf("invoices written %+v, want the paid one kept", d.Invoices)
				}
			}},
		// A subscription snapshot of an earlier period than the row's
		// (current_period_start never goes back in Stripe) is older than
		// the row: the row stays, nothing is announced.
		{name: "a snapshot of the previous period, past_due and canceling: the row stays",
			prev: first(sub(nil), inv(nil)), prevInv: []store.Invoice{ofSub(inv(nil))},
			snap: sub(func(s *store.Subscription) {
				s.Status, s.CancelAtPeriodEnd = store.SubscriptionPastDue, true
				s.CurrentPeriodStart, s.CurrentPeriodEnd = subNow.AddDate(0, -1, -1), subNow.Add(-24*time.Hour)
			}),
			invs: []store.Invoice{inv(nil)}, pol: pol, entitled: true},
		{name: "incomplete: recorded, nothing set in motion",
			snap: sub(func(s *store.Subscription) { s.Status, s.StartedAt = store.SubscriptionIncomplete, nil }),
			invs: []store.Invoice{failing}, pol: pol, write: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prevInv := map[string]store.Invoice{}
			for _, i := range tc.prevInv {
				prevInv[i.ID] = i
			}
			d := decideSubscription(tc.prev, tc.snap, tc.invs, prevInv, tc.pol, subNow)
			if got := templates(d.Change); !slices.Equal(got, tc.emails) {
				t.Errorf("emails %v, want %v", got, tc.emails)
			}
			if !slices.Equal(d.Change.Cancel, tc.cancel) {
				t.Errorf("cancel %v, want %v", d.Change.Cancel, tc.cancel)
			}
			if d.Change.Access != tc.access {
				t.Errorf("access %q, want %q", d.Change.Access, tc.access)
			}
			if !slices.Equal(d.Change.Webhooks, tc.webhooks) {
				t.Errorf("webhooks %v, want %v", d.Change.Webhooks, tc.webhooks)
			}
			if d.Next.Entitled != tc.entitled {
				t.Errorf("entitled %v, want %v", d.Next.Entitled, tc.entitled)
			}
			if d.Write != tc.write {
				t.Errorf("write %v, want %v", d.Write, tc.write)
			}
			if tc.prev != nil && tc.prev.Status.Terminal() && !sameSubscription(d.Next, *tc.prev) {
				t.Errorf("a terminal row changed: %+v", d.Next)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
			// Deciding what was just written again changes nothing.
			prev, invs := recorded(d)
			for id, i := range prevInv {
				if _, ok := invs[id]; !ok {
					invs[id] = i
				}
			}
			again := decideSubscription(prev, tc.snap, tc.invs, invs, tc.pol, subNow)
			if again.Write || len(again.Invoices) > 0 || !again.Change.Empty() {
				t.Errorf("the same snapshot again: write %v, invoices %v, change %+v", again.Write, again.Invoices, again.Change)
			}
		})
	}
}

// tp2 is the row as a decision of s leaves it: entitlement decided.
func tp2(s store.Subscription, entitled bool) *store.Subscription {
	s.Entitled = entitled
	if entitled {
		s.AccessState = store.AccessGranted
	}
	return &s
}

// first is the row as the first decision of snapshot s writes it.
func first(s store.Subscription, invs ...store.Invoice) *store.Subscription {
	d := decideSubscription(nil, s, invs, nil, subPolicy{Grace: 7 * 24 * time.Hour}, subNow)
	return &d.Next
}

// ofSub is invoice i as recorded for sub's row.
func ofSub(i store.Invoice) store.Invoice {
	i.SubscriptionID = sub(nil).ID
	return i
}

func withFailure(i store.Invoice, at time.Time) store.Invoice {
	i.FirstFailedAt = &at
	return i
}

func itoa(n int64) string { return time.Unix(n, 0).UTC().Format(time.RFC3339) }

// TestDecidePlanCredits: a product with credits gets one credit move per
// invoice of a plan reason newly seen paid (a trial's 0 included), none for
// an unpaid, repeated or manual one, and the end once, on entering a
// terminal status; a product without credits gets none.
func TestDecidePlanCredits(t *testing.T) {
	t.Parallel()
	pol := subPolicy{Grace: 7 * 24 * time.Hour, Credits: map[string]bool{"pro": true}}
	active := sub(func(s *store.Subscription) { s.Entitled, s.AccessState = true, store.AccessGranted })
	failing := inv(func(i *store.Invoice) {
		i.ID, i.Status, i.AmountPaid, i.AmountRemaining, i.PaidAt = "in_2", store.InvoiceOpen, 0, 2900, nil
	})
	paid2 := inv(func(i *store.Invoice) { i.ID = "in_2" })
	endedAt := subNow.Add(-time.Minute)
	canceled := sub(func(s *store.Subscription) {
		s.Status, s.EndedAt, s.CanceledAt = store.SubscriptionCanceled, tp(endedAt), tp(endedAt)
	})
	later := subNow.Add(48 * time.Hour)
	incomplete := sub(func(s *store.Subscription) { s.Status, s.StartedAt = store.SubscriptionIncomplete, nil })
	expired := sub(func(s *store.Subscription) {
		s.Status, s.StartedAt, s.EndedAt = store.SubscriptionIncompleteExpired, nil, tp(endedAt)
	})
	basic := func(s store.Subscription) store.Subscription {
		s.ProductKey, s.PriceKey, s.StripePriceID = "basic", "basic_monthly", "price_basic"
		return s
	}
	ptr := func(s store.Subscription) *store.Subscription { return &s }
	for _, tc := range []struct {
		name    string
		prev    *store.Subscription
		prevInv []store.Invoice
		snap    store.Subscription
		invs    []store.Invoice
		pol     subPolicy
		want    []SubscriptionCredit
	}{
		{name: "first invoice paid", snap: active,
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.BillingReason = "subscription_create" })}, pol: pol,
			want: []SubscriptionCredit{{InvoiceID: "in_1", ProductKey: "pro", At: subNow}}},
		{name: "a trial's first invoice pays 0 and counts",
			snap: sub(func(s *store.Subscription) { s.Status, s.TrialEnd = store.SubscriptionTrialing, tp(later) }),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.BillingReason, i.AmountDue, i.AmountPaid = "subscription_create", 0, 0 })},
			pol:  pol, want: []SubscriptionCredit{{InvoiceID: "in_1", ProductKey: "pro", At: subNow}}},
		{name: "renewal paid", prev: &active, prevInv: []store.Invoice{inv(nil)}, snap: active,
			invs: []store.Invoice{inv(nil), paid2}, pol: pol,
			want: []SubscriptionCredit{{InvoiceID: "in_2", ProductKey: "pro", At: subNow}}},
		{name: "plan change invoice, with the new plan's product", prev: &active, prevInv: []store.Invoice{inv(nil)},
			snap: sub(func(s *store.Subscription) {
				s.Entitled, s.AccessState, s.StripePriceID = true, store.AccessGranted, "price_y"
			}),
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.ID, i.BillingReason = "in_3", "subscription_update" })}, pol: pol,
			want: []SubscriptionCredit{{InvoiceID: "in_3", ProductKey: "pro", At: subNow}}},
		{name: "failed renewal: nothing", prev: &active, prevInv: []store.Invoice{inv(nil)},
			snap: sub(func(s *store.Subscription) { s.Status = store.SubscriptionPastDue }),
			invs: []store.Invoice{failing}, pol: pol},
		{name: "failed renewal paid on retry", prev: &active, prevInv: []store.Invoice{failing}, snap: active,
			invs: []store.Invoice{paid2}, pol: pol,
			want: []SubscriptionCredit{{InvoiceID: "in_2", ProductKey: "pro", At: subNow}}},
		{name: "paid invoice seen again: nothing", prev: &active, prevInv: []store.Invoice{paid2}, snap: active,
			invs: []store.Invoice{paid2}, pol: pol},
		{name: "a manual invoice: nothing", snap: active,
			invs: []store.Invoice{inv(func(i *store.Invoice) { i.BillingReason = "manual" })}, pol: pol},
		{name: "ended: the end once, now", prev: &active, prevInv: []store.Invoice{inv(nil)}, snap: canceled,
			invs: []store.Invoice{inv(nil)}, pol: pol,
			want: []SubscriptionCredit{{End: true, ProductKey: "pro", At: subNow}}},
		{name: "first seen ended, its invoice paid: both", snap: canceled, invs: []store.Invoice{inv(nil)}, pol: pol,
			want: []SubscriptionCredit{{InvoiceID: "in_1", ProductKey: "pro", At: subNow},
				{End: true, ProductKey: "pro", At: subNow}}},
		{name: "expired incomplete, never started: no end", prev: &incomplete, snap: expired, pol: pol},
		{name: "ended seen again: nothing", prev: &canceled, prevInv: []store.Invoice{inv(nil)}, snap: canceled,
			invs: []store.Invoice{inv(nil), paid2}, pol: pol},
		{name: "a product without credits: nothing", snap: active, invs: []store.Invoice{inv(nil)},
			pol: subPolicy{Grace: pol.Grace}},
		{name: "plan changed to a product without credits: the old plan's expire, now", prev: &active,
			prevInv: []store.Invoice{inv(nil)}, snap: basic(active),
			invs: []store.Invoice{inv(nil), inv(func(i *store.Invoice) { i.ID, i.BillingReason = "in_3", "subscription_update" })},
			pol:  pol, want: []SubscriptionCredit{{Off: true, ProductKey: "pro", At: subNow}}},
		{name: "plan changed to a product without credits as it ended: the old plan's expire", prev: &active,
			prevInv: []store.Invoice{inv(nil)}, snap: basic(canceled), invs: []store.Invoice{inv(nil)}, pol: pol,
			want: []SubscriptionCredit{{Off: true, ProductKey: "pro", At: subNow}}},
		{name: "a product without credits ends: nothing", prev: ptr(basic(active)), prevInv: []store.Invoice{inv(nil)},
			snap: basic(canceled), invs: []store.Invoice{inv(nil)}, pol: pol},
		{name: "back to a product with credits: its plan change invoice grants them", prev: ptr(basic(active)),
			prevInv: []store.Invoice{inv(nil)}, snap: active,
			invs: []store.Invoice{inv(nil), inv(func(i *store.Invoice) { i.ID, i.BillingReason = "in_4", "subscription_update" })},
			pol:  pol, want: []SubscriptionCredit{{InvoiceID: "in_4", ProductKey: "pro", At: subNow}}},
		{name: "quiet (a backfill) moves credits all the same", snap: active, invs: []store.Invoice{inv(nil)},
			pol:  subPolicy{Grace: pol.Grace, Quiet: true, Credits: pol.Credits},
			want: []SubscriptionCredit{{InvoiceID: "in_1", ProductKey: "pro", At: subNow}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prevInv := map[string]store.Invoice{}
			for _, i := range tc.prevInv {
				prevInv[i.ID] = i
			}
			d := decideSubscription(tc.prev, tc.snap, tc.invs, prevInv, tc.pol, subNow)
			if !slices.Equal(d.Change.Credits, tc.want) {
				t.Errorf("credits %+v, want %+v", d.Change.Credits, tc.want)
			}
			if len(tc.want) > 0 && d.Change.Empty() {
				t.Error("a change with credit moves is empty")
			}
			again := d
			prev, inv := recorded(d)
			for id, i := range prevInv {
				if _, ok := inv[id]; !ok {
					inv[id] = i
				}
			}
			again = decideSubscription(prev, tc.snap, tc.invs, inv, tc.pol, subNow)
			if len(again.Change.Credits) != 0 {
				t.Errorf("decided again: credits %+v", again.Change.Credits)
			}
		})
	}
}
