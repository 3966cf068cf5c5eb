// Subscription-mode Checkout Sessions: the parameters only that mode takes
// (subscription_data, payment_method_collection), the customer parameter
// of both modes, and paying such a session, which creates the customer (if
// none), the subscription and its first invoice, then completes the session
// with subscription set. A declined first payment leaves an incomplete
// subscription behind and the session open, so the customer can try
// another card, as on Stripe.

package stripeemu

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrCardDeclined matches (with errors.Is) a payment the customer's card
// declined.
var ErrCardDeclined = errors.New("stripeemu: card declined")

// declined is the error Stripe answers a declined card with.
func declined() *apiError {
	return &apiError{status: http.StatusPaymentRequired, Type: "card_error", Code: "card_declined", Msg: "Your card was declined."}
}

// subSessionSpec is the subscription part of a session request.
type subSessionSpec struct {
	metadata         map[string]string
	trialDays        int64
	trialEnd         int64
	trialEndBehavior string
	description      string
	pmCollection     string
}

// unsupportedSubscriptionData are subscription_data parameters the
// emulator does not model.
var unsupportedSubscriptionData = []string{"subscription_data[application_fee_percent]", "subscription_data[billing_cycle_anchor]",
	"subscription_data[default_tax_rates]", "subscription_data[invoice_settings]", "subscription_data[on_behalf_of]",
	"subscription_data[proration_behavior]", "subscription_data[transfer_data]"}

// billingSpecFromForm reads the session parameters that depend on the mode:
// customer (both modes), subscription_data and payment_method_collection
// (subscription mode only), and refuses those the mode does not take.
func billingSpecFromForm(f url.Values, mode string, spec *sessionSpec) *apiError {
	spec.mode = mode
	spec.customer = f.Get("customer")
	if spec.customer != "" && f.Get("customer_email") != "" {
		return invalid("customer_email", "", "You may only specify one of these parameters: customer, customer_email.")
	}
	has := func(prefix string) bool {
		for k := range f {
			if k == prefix || strings.HasPrefix(k, prefix+"[") {
				return true
			}
		}
		return false
	}
	if mode != "subscription" {
		for _, p := range []string{"subscription_data", "payment_method_collection"} {
			if has(p) {
				return invalid(p, "", "`%s` can only be used in `subscription` mode.", p)
			}
		}
		return nil
	}
	for _, p := range []string{"payment_intent_data", "customer_creation", "invoice_creation", "submit_type"} {
		if has(p) {
			return invalid(p, "", "`%s` cannot be used in `subscription` mode.", p)
		}
	}
	if ae := rejectUnsupported(f, unsupportedSubscriptionData); ae != nil {
		return ae
	}
	sub := &subSessionSpec{metadata: formMap(f, "subscription_data[metadata]"), description: f.Get("subscription_data[description]")}
	sub.pmCollection = orDefault(f.Get("payment_method_collection"), "always")
	if ae := oneOf("payment_method_collection", sub.pmCollection, []string{"always", "if_required"}); ae != nil {
		return ae
	}
	if f.Has("subscription_data[trial_period_days]") {
		d, ae := formInt(f, "subscription_data[trial_period_days]")
		if ae != nil {
			return ae
		}
		if d < 1 || d > 730 {
			return invalid("subscription_data[trial_period_days]", "", "The trial period must be between 1 and 730 days.")
		}
		sub.trialDays = d
	}
	if f.Has("subscription_data[trial_end]") {
		if sub.trialDays > 0 {
			return invalid("subscription_data[trial_end]", "", "You may only specify one of these parameters: subscription_data[trial_end], subscription_data[trial_period_days].")
		}
		at, ae := formInt(f, "subscription_data[trial_end]")
		if ae != nil {
			return ae
		}
		sub.trialEnd = at
	}
	if b := f.Get("subscription_data[trial_settings][end_behavior][missing_payment_method]"); b != "" {
		if ae := oneOf("subscription_data[trial_settings][end_behavior][missing_payment_method]", b, []string{"cancel", "create_invoice", "pause"}); ae != nil {
			return ae
		}
		sub.trialEndBehavior = b
	}
	spec.sub = sub
	return nil
}

// billingSessionLocked finishes a new session for its mode: it checks the
// customer and that the prices suit the mode, and in subscription mode
// sets the amounts due today (none during a trial).
func (e *Emulator) billingSessionLocked(s *session, spec sessionSpec) *apiError {
	s.Mode = orDefault(spec.mode, "payment")
	if spec.customer != "" {
		cu, ok := e.customers.get(spec.customer)
		if !ok {
			return invalid("customer", "resource_missing", "No such customer: '%s'", spec.customer)
		}
		s.customerID = cu.ID
	}
	if s.Mode != "subscription" {
		for i, li := range s.lineItems {
			if p, ok := e.prices.get(li.priceID); ok && recurringOf(p) != nil {
				return invalid("line_items["+itoa(int64(i))+"][price]", "",
					"You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.")
			}
		}
		return nil
	}
	items := make([]specItem, len(s.lineItems))
	for i, li := range s.lineItems {
		items[i] = specItem{price: li.priceID, quantity: li.quantity}
	}
	if _, ae := e.validateSubPricesLocked(items, "line_items"); ae != nil {
		if strings.Contains(ae.Msg, "type=one_time") {
			ae.Msg = "You must provide at least one recurring price in `subscription` mode when using prices; the emulator supports only recurring prices in that mode."
		}
		return ae
	}
	sub := spec.sub
	if sub == nil { // a session made with CreateSession, as a Payment Link would
		sub = &subSessionSpec{pmCollection: "always"}
		spec.sub = sub
	}
	if sub.trialEnd != 0 && sub.trialEnd < e.nowUnix()+int64((48*time.Hour).Seconds()) {
		return invalid("subscription_data[trial_end]", "", "The `trial_end` date has to be at least 2 days in the future.")
	}
	s.PaymentMethodCollection = sub.pmCollection
	if sub.trialDays > 0 || sub.trialEnd != 0 {
		s.AmountSubtotal, s.AmountTotal, s.TotalDetails.AmountDiscount = 0, 0, 0
		for i := range s.lineItems {
			s.lineItems[i].amountSubtotal, s.lineItems[i].amountDiscount = 0, 0
		}
	}
	return nil
}

// sessionTrialEnd is when the trial of a subscription started now from s
// ends, or 0 without a trial.
func (e *Emulator) sessionTrialEnd(s *session) int64 {
	sub := s.spec.sub
	switch {
	case sub == nil:
		return 0
	case sub.trialDays > 0:
		return e.nowUnix() + sub.trialDays*24*3600
	}
	return sub.trialEnd
}

// paySubscriptionSessionLocked pays a subscription-mode session; see the
// file comment.
func (e *Emulator) paySubscriptionSessionLocked(s *session, p Pay) *apiError {
	sub := s.spec.sub
	if sub == nil {
		sub = &subSessionSpec{pmCollection: "always"}
	}
	trialEnd := e.sessionTrialEnd(s)
	if p.NoPaymentMethod && (sub.pmCollection != "if_required" || trialEnd == 0) {
		return invalid("payment_method", "", "This Checkout Session requires a payment method (payment_method_collection=%s, amount due today %s).",
			sub.pmCollection, formatAmount(s.AmountTotal, s.Currency))
	}
	if prev, ok := e.bill.sessionSubs[s.ID]; ok {
		return e.retrySessionPaymentLocked(s, prev, p)
	}
	if ae := e.promotionUsableLocked(s); ae != nil {
		return ae
	}
	if p.Decline && trialEnd != 0 {
		return declined() // the card is checked before anything is created
	}
	cu, ok := e.customers.get(s.customerID)
	if !ok {
		cu = e.newCustomerLocked(orDefault(p.Email, ptrValue(s.CustomerEmail)), p.Name, nil, eventRequestJSON{})
		s.customerID = cu.ID
	}
	if !p.NoPaymentMethod {
		e.newSessionCardLocked(cu.ID, p.Decline)
	}
	items := make([]specItem, len(s.lineItems))
	for i, li := range s.lineItems {
		items[i] = specItem{price: li.priceID, quantity: li.quantity}
	}
	spec := subSpec{customerID: cu.ID, items: items, trialEnd: trialEnd, trialEndBehavior: sub.trialEndBehavior, metadata: sub.metadata,
		description: sub.description, couponID: s.spec.coupon, promoID: s.spec.promotionCode}
	ns := e.createSubscriptionLocked(spec, s.Currency, eventRequestJSON{})
	e.bill.sessionSubs[s.ID] = ns
	if ns.status == subIncomplete {
		return declined()
	}
	e.completeSubscriptionSessionLocked(s, ns, cu, p)
	return nil
}

// newSessionCardLocked gives the customer the card just entered on the
// checkout page: it becomes the card renewals charge.
func (e *Emulator) newSessionCardLocked(customerID string, declines bool) {
	e.bill.cards[customerID] = e.newIDLocked("pm_")
	if declines {
		e.bill.declining[customerID] = true
	} else {
		delete(e.bill.declining, customerID)
	}
}

// retrySessionPaymentLocked pays the incomplete subscription an earlier,
// declined attempt on s created, with the card entered now.
func (e *Emulator) retrySessionPaymentLocked(s *session, sub *subscription, p Pay) *apiError {
	if sub.status != subIncomplete {
		return invalid("", "", "This Checkout Session is no longer active (its subscription is %s).", sub.status)
	}
	e.newSessionCardLocked(sub.customerID, p.Decline)
	sub.defaultPM = e.bill.cards[sub.customerID]
	if !e.attemptLocked(sub.latestInvoice, false, eventRequestJSON{}) {
		return declined()
	}
	cu, _ := e.customers.get(sub.customerID)
	e.completeSubscriptionSessionLocked(s, sub, cu, p)
	return nil
}

// completeSubscriptionSessionLocked completes s for sub and records
// checkout.session.completed.
func (e *Emulator) completeSubscriptionSessionLocked(s *session, sub *subscription, cu *customer, p Pay) {
	s.customerID = cu.ID
	s.CustomerDetails = &customerDetailsJSON{Email: cu.Email, Name: optString(orDefault(p.Name, ptrValue(cu.Name))), TaxExempt: "none", TaxIDs: []any{}}
	if s.ConsentCollection != nil || p.ConsentPromotions != "" {
		s.Consent = &consentJSON{Promotions: optString(p.ConsentPromotions)}
		if s.ConsentCollection != nil && s.ConsentCollection.TermsOfService == "required" {
			s.Consent.TermsOfService = optString("accepted")
		}
	}
	s.Status = "complete"
	s.PaymentStatus = "no_payment_required"
	if inv := sub.latestInvoice; inv != nil && inv.amountPaid > 0 {
		s.PaymentStatus = "paid"
	}
	s.Subscription = sub.id
	_ = e.redeemLocked(s) // checked before the subscription was created
	e.recordLocked("checkout.session.completed", e.renderSession(s, nil), eventRequestJSON{}, nil)
}

// promotionUsableLocked checks, before anything is created, that the
// session's promotion code can still be redeemed; it is counted when the
// session completes.
func (e *Emulator) promotionUsableLocked(s *session) *apiError {
	if s.spec.promotionCode == "" {
		return nil
	}
	p, ok := e.promos.get(s.spec.promotionCode)
	if !ok {
		return invalid(promoParam, "resource_missing", "No such promotion code: '%s'", s.spec.promotionCode)
	}
	return e.promotionRefusalLocked(p)
}

// subscriptionPageTermsLocked describes a subscription session's terms for
// the hosted page: what is billed each period, the trial, and whether the
// trial may start without a card.
func (e *Emulator) subscriptionPageTermsLocked(s *session) (recurring, trial string, skipCard bool) {
	var amount int64
	interval := ""
	for _, li := range s.lineItems {
		if p, ok := e.prices.get(li.priceID); ok {
			amount += p.UnitAmount * li.quantity
			interval = e.intervalLabel(p.ID)
		}
	}
	recurring = "Then " + formatAmount(amount, s.Currency) + " every " + interval
	if sub := s.spec.sub; sub != nil {
		switch {
		case sub.trialDays > 0:
			trial = fmt.Sprintf("%d days free", sub.trialDays)
		case sub.trialEnd != 0:
			trial = "Free until " + formatDate(sub.trialEnd)
		}
		skipCard = trial != "" && sub.pmCollection == "if_required"
	}
	return recurring, trial, skipCard
}
