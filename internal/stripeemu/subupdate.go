// Updating a subscription: cancel at period end (and undo it), price and
// quantity changes with Stripe's proration behaviours, pause_collection,
// moving or ending a trial, metadata. A request is validated whole before
// anything changes, so a bad one changes nothing; a good one records one
// customer.subscription.updated, then any invoice it caused.

package stripeemu

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// subUpdate is a validated-in-form change to a subscription.
type subUpdate struct {
	items             []itemChange
	proration         string // create_prorations (Stripe's default), none, always_invoice
	cancelAtPeriodEnd *bool
	comment, feedback *string
	metadata          func(map[string]string) map[string]string
	description       *string
	pause             *pauseCollectionJSON
	unpause           bool
	trialEnd          int64
	trialEndNow       bool
}

// itemChange is one entry of items[]: with an id it changes or deletes
// that item; without one it adds an item (Stripe does not replace the
// existing price when the id is left out).
type itemChange struct {
	id       string
	price    string
	quantity int64
	hasQty   bool
	deleted  bool
}

// unsupportedUpdateParams are update parameters the emulator does not
// model; they are refused rather than ignored.
var unsupportedUpdateParams = []string{"add_invoice_items", "application_fee_percent", "automatic_tax", "billing_cycle_anchor",
	"billing_thresholds", "cancel_at", "collection_method", "coupon", "days_until_due", "default_payment_method", "default_source",
	"default_tax_rates", "discounts", "invoice_settings", "off_session", "on_behalf_of", "payment_settings",
	"pending_invoice_item_interval", "promotion_code", "proration_date", "transfer_data", "trial_from_plan", "trial_settings"}

// rejectUnsupported returns an error naming the first of names present in f.
func rejectUnsupported(f url.Values, names []string) *apiError {
	for k := range f {
		for _, n := range names {
			if k == n || strings.HasPrefix(k, n+"[") {
				return invalid(n, "", "The Stripe emulator does not support the %s parameter here.", n)
			}
		}
	}
	return nil
}

var cancellationFeedback = []string{"customer_service", "low_quality", "missing_features", "other", "switched_service", "too_complex", "too_expensive", "unused"}

// oneOf checks v against allowed.
func oneOf(param, v string, allowed []string) *apiError {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return invalid(param, "", "Invalid %s: must be one of %s", param, strings.Join(allowed, ", "))
}

// subUpdateFromForm decodes POST /v1/subscriptions/{id}.
func subUpdateFromForm(f url.Values) (subUpdate, *apiError) {
	var u subUpdate
	if ae := rejectUnsupported(f, unsupportedUpdateParams); ae != nil {
		return u, ae
	}
	if pb := f.Get("payment_behavior"); pb != "" && pb != "allow_incomplete" {
		return u, invalid("payment_behavior", "", "The Stripe emulator supports only payment_behavior=allow_incomplete on updates.")
	}
	if v, ok, ae := formBool(f, "cancel_at_period_end"); ae != nil {
		return u, ae
	} else if ok {
		u.cancelAtPeriodEnd = &v
	}
	if f.Has("cancellation_details[comment]") {
		c := f.Get("cancellation_details[comment]")
		u.comment = &c
	}
	if f.Has("cancellation_details[feedback]") {
		fb := f.Get("cancellation_details[feedback]")
		if fb != "" {
			if ae := oneOf("cancellation_details[feedback]", fb, cancellationFeedback); ae != nil {
				return u, ae
			}
		}
		u.feedback = &fb
	}
	if f.Has("metadata") || len(formMap(f, "metadata")) > 0 {
		u.metadata = func(old map[string]string) map[string]string { return applyMetadata(old, f) }
	}
	if f.Has("description") {
		d := f.Get("description")
		u.description = &d
	}
	u.proration = orDefault(f.Get("proration_behavior"), "create_prorations")
	if ae := oneOf("proration_behavior", u.proration, []string{"always_invoice", "create_prorations", "none"}); ae != nil {
		return u, ae
	}
	var ae *apiError
	if u.items, ae = itemChangesFromForm(f); ae != nil {
		return u, ae
	}
	if f.Has("pause_collection") && f.Get("pause_collection") == "" {
		u.unpause = true
	} else if b := f.Get("pause_collection[behavior]"); b != "" || f.Has("pause_collection[resumes_at]") {
		if ae := oneOf("pause_collection[behavior]", b, []string{"keep_as_draft", "mark_uncollectible", "void"}); ae != nil {
			return u, ae
		}
		u.pause = &pauseCollectionJSON{Behavior: b}
		if f.Has("pause_collection[resumes_at]") {
			at, ae := formInt(f, "pause_collection[resumes_at]")
			if ae != nil {
				return u, ae
			}
			u.pause.ResumesAt = &at
		}
	}
	switch te := f.Get("trial_end"); {
	case te == "now":
		u.trialEndNow = true
	case te != "":
		at, ae := formInt(f, "trial_end")
		if ae != nil {
			return u, ae
		}
		u.trialEnd = at
	}
	return u, nil
}

// itemChangesFromForm decodes items[N][id|price|quantity|deleted].
func itemChangesFromForm(f url.Values) ([]itemChange, *apiError) {
	var out []itemChange
	for i, g := range formIndexed(f, "items") {
		ch := itemChange{id: g["id"], price: g["price"], deleted: g["deleted"] == "true"}
		if q, ok := g["quantity"]; ok {
			n, err := strconv.ParseInt(q, 10, 64)
			if err != nil || n < 0 {
				return nil, invalid(fmt.Sprintf("items[%d][quantity]", i), "parameter_invalid_integer", "Invalid non-negative integer: %s", q)
			}
			ch.quantity, ch.hasQty = n, true
		}
		for k := range g {
			if strings.HasPrefix(k, "price_data") {
				return nil, invalid(fmt.Sprintf("items[%d][price_data]", i), "", "The Stripe emulator does not support price_data; create a price first.")
			}
		}
		out = append(out, ch)
	}
	return out, nil
}

// onlyBookkeeping reports whether u changes nothing but metadata,
// description and cancellation details: all an ended subscription accepts.
func (u subUpdate) onlyBookkeeping() bool {
	return len(u.items) == 0 && u.cancelAtPeriodEnd == nil && u.pause == nil && !u.unpause && u.trialEnd == 0 && !u.trialEndNow
}

// checkUpdateLocked validates u against s and returns the items s will
// have afterwards (nil when u leaves them alone).
func (e *Emulator) checkUpdateLocked(s *subscription, u subUpdate) ([]*subItem, *apiError) {
	now := e.nowUnix()
	switch {
	case !s.live() && !u.onlyBookkeeping():
		return nil, invalid("", "", "A canceled subscription can only update its cancellation_details and metadata.")
	case s.status == subIncomplete && !u.onlyBookkeeping():
		return nil, invalid("", "", "A subscription in status incomplete can only have its metadata updated until its first invoice is paid.")
	case (u.trialEnd != 0 || u.trialEndNow) && s.status != subTrialing:
		return nil, invalid("trial_end", "", "The Stripe emulator only moves the trial end of a trialing subscription (this one is %s).", s.status)
	case u.trialEnd != 0 && u.trialEnd <= now:
		return nil, invalid("trial_end", "", "Invalid timestamp: must be an integer Unix timestamp in the future, or `now`.")
	case u.pause != nil && u.pause.ResumesAt != nil && *u.pause.ResumesAt <= now:
		return nil, invalid("pause_collection[resumes_at]", "", "pause_collection[resumes_at] must be in the future.")
	}
	if len(u.items) == 0 {
		return nil, nil
	}
	return e.nextItemsLocked(s, u.items)
}

// nextItemsLocked applies item changes to a copy of s's items.
func (e *Emulator) nextItemsLocked(s *subscription, changes []itemChange) ([]*subItem, *apiError) {
	next := make([]*subItem, 0, len(s.items)+len(changes))
	for _, it := range s.items {
		c := *it
		next = append(next, &c)
	}
	now := e.nowUnix()
	for i, ch := range changes {
		param := fmt.Sprintf("items[%d]", i)
		if ch.id == "" {
			if ch.deleted {
				return nil, invalid(param+"[id]", "parameter_missing", "Missing required param: %s[id] (needed to delete an item).", param)
			}
			if ch.price == "" {
				return nil, invalid(param+"[price]", "parameter_missing", "Missing required param: %s[price].", param)
			}
			q := int64(1)
			if ch.hasQty {
				q = ch.quantity
			}
			next = append(next, &subItem{id: e.newIDLocked("si_"), created: now, priceID: ch.price, quantity: q, metadata: map[string]string{}})
			continue
		}
		idx := -1
		for j, it := range next {
			if it.id == ch.id {
				idx = j
			}
		}
		if idx < 0 {
			return nil, invalid(param+"[id]", "resource_missing", "No such subscription item: '%s'", ch.id)
		}
		if ch.deleted {
			next = append(next[:idx], next[idx+1:]...)
			continue
		}
		if ch.price != "" {
			next[idx].priceID = ch.price
		}
		if ch.hasQty {
			next[idx].quantity = ch.quantity
		}
	}
	specs := make([]specItem, len(next))
	for i, it := range next {
		specs[i] = specItem{price: it.priceID, quantity: it.quantity}
	}
	currency, ae := e.validateSubPricesLocked(specs, "items")
	if ae != nil {
		return nil, ae
	}
	if currency != s.currency {
		return nil, invalid("items", "", "The subscription is in %s; its prices cannot change currency to %s.", s.currency, currency)
	}
	return next, nil
}

// updateSubscriptionLocked validates and applies u to s.
func (e *Emulator) updateSubscriptionLocked(s *subscription, u subUpdate, req eventRequestJSON) *apiError {
	items, ae := e.checkUpdateLocked(s, u)
	if ae != nil {
		return ae
	}
	now := e.nowUnix()
	before := e.subSnapshotLocked(s)
	if u.metadata != nil {
		s.metadata = u.metadata(s.metadata)
	}
	if u.description != nil {
		s.description = *u.description
	}
	if c := u.cancelAtPeriodEnd; c != nil && *c != s.cancelAtPeriodEnd {
		s.cancelAtPeriodEnd = *c
		if *c {
			s.canceledAt, s.cancelReason = now, "cancellation_requested"
		} else {
			s.canceledAt, s.cancelAt, s.cancelReason, s.cancelComment, s.cancelFeedback = 0, 0, "", "", ""
		}
	}
	if u.comment != nil {
		s.cancelComment = *u.comment
	}
	if u.feedback != nil {
		s.cancelFeedback = *u.feedback
	}
	if u.unpause {
		s.pause = nil
	}
	if u.pause != nil {
		p := *u.pause
		s.pause = &p
		if p.ResumesAt != nil {
			e.scheduleLocked(*p.ResumesAt, jobResumeCollection, s, nil, *p.ResumesAt)
		}
	}
	var inv *invoice
	if items != nil {
		inv = e.changeItemsLocked(s, items, u.proration)
	}
	if u.trialEnd != 0 {
		s.trialEnd, s.anchor, s.periodEnd = u.trialEnd, u.trialEnd, u.trialEnd
		e.scheduleCycleLocked(s)
		e.scheduleTrialWillEndLocked(s)
	}
	if u.trialEndNow {
		e.recordSubLocked("customer.subscription.trial_will_end", s, req, nil)
		s.trialEnd, s.anchor, s.periodEnd = now, now, now
		e.renewLocked(s, before, reasonUpdate, true, req)
		return nil
	}
	if s.cancelAtPeriodEnd {
		s.cancelAt = s.periodEnd
	}
	e.subChangedLocked(s, before, req)
	if inv != nil {
		e.recordInvoiceLocked("invoice.created", inv, req)
		e.finalizeAndCollectLocked(inv, req)
	}
	return nil
}

// changeItemsLocked gives s its new items and bills the change. During a
// trial or a pause nothing is billed. A change of billing interval starts
// a new cycle now and invoices it at once, crediting the unused time of
// the old items unless proration is none. Otherwise create_prorations
// queues credit and debit lines for the next invoice, always_invoice
// invoices them now, and none bills nothing until the next renewal. It
// returns the invoice to finalize now, if any.
func (e *Emulator) changeItemsLocked(s *subscription, next []*subItem, proration string) *invoice {
	now := e.nowUnix()
	oldInterval, oldCount := e.cycleOf(s)
	old := s.items
	s.items = next
	if s.status == subTrialing || s.status == subPaused {
		return nil
	}
	newInterval, newCount := e.cycleOf(s)
	credits, debits := e.prorationLines(s, old, next, now)
	if proration == "none" {
		credits, debits = nil, nil
	}
	if newInterval != oldInterval || newCount != oldCount {
		oldStart := s.periodStart
		s.anchor, s.cycle = now, 0
		s.periodStart, s.periodEnd = now, periodBoundary(now, newInterval, newCount, 1)
		lines := append(append(credits, s.pending...), e.itemLines(s, s.periodStart, s.periodEnd, false)...)
		s.pending = nil
		inv := e.newInvoiceLocked(s, reasonUpdate, lines, oldStart, now)
		s.latestInvoice = inv
		e.scheduleCycleLocked(s)
		return inv
	}
	switch proration {
	case "create_prorations":
		s.pending = append(s.pending, append(credits, debits...)...)
	case "always_invoice":
		lines := append(append(s.pending, credits...), debits...)
		if len(lines) == 0 {
			return nil
		}
		s.pending = nil
		inv := e.newInvoiceLocked(s, reasonUpdate, lines, now, now)
		s.latestInvoice = inv
		return inv
	}
	return nil
}

// prorationLines returns the credit for the unused time of each item that
// changed or went away, and the charge for the remaining time of each item
// that changed or arrived, over s's current period.
func (e *Emulator) prorationLines(s *subscription, old, next []*subItem, now int64) (credits, debits []invoiceLine) {
	byID := func(items []*subItem, id string) *subItem {
		for _, it := range items {
			if it.id == id {
				return it
			}
		}
		return nil
	}
	same := func(a, b *subItem) bool {
		return a != nil && b != nil && a.priceID == b.priceID && a.quantity == b.quantity
	}
	line := func(it *subItem, sign int64, what string) invoiceLine {
		return invoiceLine{
			amount:      sign * prorate(e.itemAmount(it), s.periodStart, s.periodEnd, now),
			description: fmt.Sprintf("%s time on %d × %s after %s", what, it.quantity, e.productName(it.priceID), formatDate(now)),
			priceID:     it.priceID, quantity: it.quantity, periodStart: now, periodEnd: s.periodEnd, proration: true,
			subItemID: it.id, invoiceItemID: e.newIDLocked("ii_"),
		}
	}
	for _, o := range old {
		if n := byID(next, o.id); !same(o, n) {
			credits = append(credits, line(o, -1, "Unused"))
		}
	}
	for _, n := range next {
		if o := byID(old, n.id); !same(o, n) {
			debits = append(debits, line(n, 1, "Remaining"))
		}
	}
	return credits, debits
}
