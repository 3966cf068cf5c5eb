// The subscription lifecycle: starting (with or without a trial), the end
// of each period (renewal, trial end, cancellation at period end, pause for
// a trial without a payment method), cancellation, expiry of incomplete
// subscriptions, and resuming a paused one. Each records the events Stripe
// sends, in the order it sends them, with snapshots taken at that moment.

package stripeemu

import (
	"fmt"
	"time"
)

// subSpec is a validated request to start a subscription.
type subSpec struct {
	customerID       string
	items            []specItem
	trialEnd         int64 // 0: no trial
	trialEndBehavior string
	metadata         map[string]string
	description      string
	couponID         string // a coupon applied for its duration
	promoID          string // or the promotion code that carries it
}

// maxSubItems is Stripe's limit of items per subscription.
const maxSubItems = 20

// validateSubPricesLocked checks the prices of a subscription: each exists,
// is active and recurring, and all share one currency and one billing
// interval. It returns the currency.
func (e *Emulator) validateSubPricesLocked(items []specItem, param string) (string, *apiError) {
	if len(items) == 0 {
		return "", invalid(param, "parameter_missing", "Missing required param: %s.", param)
	}
	if len(items) > maxSubItems {
		return "", invalid(param, "", "A subscription may have at most %d items.", maxSubItems)
	}
	var currency, cycle string
	seen := map[string]bool{}
	for i, it := range items {
		pp := fmt.Sprintf("%s[%d][price]", param, i)
		p, ok := e.prices.get(it.price)
		switch {
		case !ok:
			return "", invalid(pp, "resource_missing", "No such price: '%s'", it.price)
		case !p.Active:
			return "", invalid(pp, "", "The price specified is inactive. This field only accepts active prices.")
		case recurringOf(p) == nil:
			return "", invalid(pp, "", "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.")
		case it.quantity < 0:
			return "", invalid(fmt.Sprintf("%s[%d][quantity]", param, i), "", "Quantity must be at least 0.")
		case seen[p.ID]:
			return "", invalid(pp, "", "Cannot add multiple subscription items with the same price: %s.", p.ID)
		}
		seen[p.ID] = true
		r := recurringOf(p)
		c := fmt.Sprintf("%d %s", r.IntervalCount, r.Interval)
		if currency == "" {
			currency, cycle = p.Currency, c
			continue
		}
		if p.Currency != currency || c != cycle {
			return "", invalid(pp, "", "Currency and interval fields must match across all prices on a subscription (%s every %s, then %s every %s).",
				currency, cycle, p.Currency, c)
		}
	}
	return currency, nil
}

// createSubscriptionLocked starts a subscription for validated spec, at the
// clock's time: it records customer.subscription.created, creates and
// finalizes the first invoice (a zero one during a trial) and tries to pay
// it. A declined first payment leaves the subscription incomplete; it
// expires 23 hours later unless paid.
func (e *Emulator) createSubscriptionLocked(spec subSpec, currency string, req eventRequestJSON) *subscription {
	now := e.nowUnix()
	s := &subscription{
		id: e.newIDLocked("sub_"), created: now, customerID: spec.customerID, currency: currency, status: subIncomplete,
		startDate: now, description: spec.description, metadata: cloneMeta(spec.metadata), trialEndBehavior: spec.trialEndBehavior,
		defaultPM: e.bill.cards[spec.customerID],
	}
	for _, it := range spec.items {
		s.items = append(s.items, &subItem{id: e.newIDLocked("si_"), created: now, priceID: it.price, quantity: it.quantity, metadata: map[string]string{}})
	}
	interval, count := e.cycleOf(s)
	trial := spec.trialEnd > now
	if trial {
		s.status, s.trialStart, s.trialEnd = subTrialing, now, spec.trialEnd
		s.anchor, s.periodStart, s.periodEnd = spec.trialEnd, now, spec.trialEnd
	} else {
		s.anchor, s.periodStart, s.periodEnd = now, now, periodBoundary(now, interval, count, 1)
	}
	s.discount = e.newSubDiscountLocked(s, spec.couponID, spec.promoID)
	e.bill.subs.add(s)
	e.bill.subsByCustomer[s.customerID] = append(e.bill.subsByCustomer[s.customerID], s)

	inv := e.newInvoiceLocked(s, reasonCreate, e.itemLines(s, s.periodStart, s.periodEnd, trial), now, now)
	s.latestInvoice = inv
	e.recordSubLocked("customer.subscription.created", s, req, nil)
	e.recordInvoiceLocked("invoice.created", inv, req)
	e.scheduleCycleLocked(s)
	if trial {
		e.scheduleTrialWillEndLocked(s)
	} else {
		e.scheduleLocked(now+int64(incompleteWindow/time.Second), jobExpireIncomplete, s, nil, 0)
	}
	e.finalizeAndCollectLocked(inv, req)
	return s
}

// scheduleCycleLocked schedules the end of s's current period and, ahead
// of it, invoice.upcoming.
func (e *Emulator) scheduleCycleLocked(s *subscription) {
	e.scheduleLocked(s.periodEnd, jobRenew, s, nil, s.periodEnd)
	if notice := e.bill.upcomingNotice(); notice > 0 {
		if at := s.periodEnd - int64(notice/time.Second); at > e.nowUnix() {
			e.scheduleLocked(at, jobUpcoming, s, nil, s.periodEnd)
		}
	}
}

// scheduleTrialWillEndLocked schedules trial_will_end three days before the
// trial ends, or records it now for a shorter trial.
func (e *Emulator) scheduleTrialWillEndLocked(s *subscription) {
	at := s.trialEnd - int64(trialWillEndNotice/time.Second)
	if at <= e.nowUnix() {
		e.recordSubLocked("customer.subscription.trial_will_end", s, eventRequestJSON{}, nil)
		return
	}
	e.scheduleLocked(at, jobTrialWillEnd, s, nil, s.trialEnd)
}

// periodEndLocked applies the end of s's current period.
func (e *Emulator) periodEndLocked(s *subscription) {
	if s.cancelAtPeriodEnd {
		e.endSubscriptionLocked(s, "", true, eventRequestJSON{})
		return
	}
	if s.status == subTrialing && e.bill.cards[s.customerID] == "" {
		switch s.trialEndBehavior {
		case "pause":
			e.pauseLocked(s)
			return
		case "cancel":
			e.endSubscriptionLocked(s, "", false, eventRequestJSON{})
			return
		}
	}
	e.renewLocked(s, e.subSnapshotLocked(s), reasonCycle, false, eventRequestJSON{})
}

// renewLocked starts s's next period (the first after a trial) and creates
// its invoice: pending prorations first, then one line per item for the new
// service period. A renewal invoice stays a draft for an hour before it is
// finalized and charged; immediate ones (a trial ended through the API) are
// charged at once; an unpaid subscription's invoices stay drafts. before is
// the snapshot the recorded customer.subscription.updated compares with.
func (e *Emulator) renewLocked(s *subscription, before subSnapshot, reason string, immediate bool, req eventRequestJSON) {
	oldStart, oldEnd := s.periodStart, s.periodEnd
	interval, count := e.cycleOf(s)
	if s.status == subTrialing {
		s.status, s.cycle = subActive, 0
	} else {
		s.cycle++
	}
	s.periodStart = periodBoundary(s.anchor, interval, count, s.cycle)
	s.periodEnd = periodBoundary(s.anchor, interval, count, s.cycle+1)
	if s.cancelAtPeriodEnd {
		s.cancelAt = s.periodEnd
	}
	lines := append(s.pending, e.itemLines(s, s.periodStart, s.periodEnd, false)...)
	s.pending = nil
	inv := e.newInvoiceLocked(s, reason, lines, oldStart, oldEnd)
	s.latestInvoice = inv
	e.subChangedLocked(s, before, req)
	e.recordInvoiceLocked("invoice.created", inv, req)
	e.scheduleCycleLocked(s)
	switch {
	case s.status == subUnpaid || s.pause != nil && s.pause.Behavior == "keep_as_draft":
		inv.autoAdvance = false
	case immediate:
		e.finalizeAndCollectLocked(inv, req)
	default:
		e.scheduleLocked(e.nowUnix()+e.bill.draftDelay(), jobFinalize, s, inv, 0)
	}
}

// endSubscriptionLocked cancels s now and records
// customer.subscription.deleted. atPeriodEnd keeps canceled_at at the time
// cancellation was requested, as Stripe does for cancel_at_period_end. Open
// invoices are no longer retried, and a renewal draft still in its hour is
// not charged.
func (e *Emulator) endSubscriptionLocked(s *subscription, reason string, atPeriodEnd bool, req eventRequestJSON) {
	now := e.nowUnix()
	s.status = subCanceled
	s.endedAt = now
	if !atPeriodEnd || s.canceledAt == 0 {
		s.canceledAt = now
	}
	if reason != "" {
		s.cancelReason = reason
	}
	s.pending = nil
	for _, inv := range e.bill.invoicesBySub[s.id] {
		if inv.status == invOpen || inv.status == invDraft {
			inv.autoAdvance = false
			inv.nextPaymentAttempt = 0
		}
	}
	e.recordSubLocked("customer.subscription.deleted", s, req, nil)
}

// expireIncompleteLocked ends a subscription whose first invoice was not
// paid within 23 hours: the invoice is voided and the subscription becomes
// incomplete_expired (an update, not a deletion).
func (e *Emulator) expireIncompleteLocked(s *subscription) {
	before := e.subSnapshotLocked(s)
	now := e.nowUnix()
	if inv := s.latestInvoice; inv != nil && (inv.status == invOpen || inv.status == invUncollectible) {
		e.voidInvoiceLocked(inv, eventRequestJSON{})
	}
	s.status = subIncompleteExpired
	s.endedAt, s.canceledAt = now, now
	e.subChangedLocked(s, before, eventRequestJSON{})
}

// pauseLocked pauses s at the end of a trial without a payment method
// (trial_settings.end_behavior.missing_payment_method=pause).
func (e *Emulator) pauseLocked(s *subscription) {
	before := e.subSnapshotLocked(s)
	s.status = subPaused
	e.subChangedLocked(s, before, eventRequestJSON{})
	e.recordSubLocked("customer.subscription.paused", s, eventRequestJSON{}, nil)
}

// resumeLocked resumes a paused subscription with a new billing cycle
// starting now, and charges its first period at once.
func (e *Emulator) resumeLocked(s *subscription, req eventRequestJSON) *apiError {
	if s.status != subPaused {
		return invalid("", "", "Only a paused subscription can be resumed; %s is %s.", s.id, s.status)
	}
	before := e.subSnapshotLocked(s)
	now := e.nowUnix()
	oldStart, oldEnd := s.periodStart, s.periodEnd
	interval, count := e.cycleOf(s)
	s.status, s.anchor, s.cycle = subActive, now, 0
	s.periodStart, s.periodEnd = now, periodBoundary(now, interval, count, 1)
	if s.cancelAtPeriodEnd {
		s.cancelAt = s.periodEnd
	}
	inv := e.newInvoiceLocked(s, reasonUpdate, e.itemLines(s, s.periodStart, s.periodEnd, false), oldStart, oldEnd)
	s.latestInvoice = inv
	e.subChangedLocked(s, before, req)
	e.recordSubLocked("customer.subscription.resumed", s, req, nil)
	e.recordInvoiceLocked("invoice.created", inv, req)
	e.scheduleCycleLocked(s)
	e.finalizeAndCollectLocked(inv, req)
	return nil
}
