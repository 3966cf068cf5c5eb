// Subscriptions: the state the emulator keeps for each one, its 2023-10-16
// wire rendering, and the snapshots that give customer.subscription.updated
// its previous_attributes.

package stripeemu

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// subStatus is a subscription's status, as Stripe names it.
type subStatus string

// The subscription statuses of API version 2023-10-16.
const (
	subTrialing          subStatus = "trialing"
	subActive            subStatus = "active"
	subPastDue           subStatus = "past_due"
	subUnpaid            subStatus = "unpaid"
	subCanceled          subStatus = "canceled"
	subIncomplete        subStatus = "incomplete"
	subIncompleteExpired subStatus = "incomplete_expired"
	subPaused            subStatus = "paused"
)

// subStatuses lists every status, for validating list filters.
var subStatuses = []subStatus{subTrialing, subActive, subPastDue, subUnpaid, subCanceled, subIncomplete, subIncompleteExpired, subPaused}

// subscription is a stored subscription.
type subscription struct {
	id          string
	created     int64
	customerID  string
	currency    string
	items       []*subItem
	status      subStatus
	startDate   int64
	description string
	metadata    map[string]string
	defaultPM   string

	// The billing cycle: period n runs from periodBoundary(anchor, n) to
	// periodBoundary(anchor, n+1); a trial is its own period before the
	// anchor.
	anchor      int64
	cycle       int64
	periodStart int64
	periodEnd   int64

	trialStart       int64 // 0: no trial
	trialEnd         int64
	trialEndBehavior string // trial_settings.end_behavior.missing_payment_method

	cancelAtPeriodEnd bool
	cancelAt          int64
	canceledAt        int64
	endedAt           int64
	cancelReason      string
	cancelComment     string
	cancelFeedback    string

	pause         *pauseCollectionJSON
	discount      *subDiscount
	latestInvoice *invoice
	// pending holds proration lines waiting for the next invoice.
	pending []invoiceLine
}

func (s *subscription) sortKey() (int64, string) { return s.created, s.id }

// live reports whether the subscription has not ended.
func (s *subscription) live() bool {
	return s.status != subCanceled && s.status != subIncompleteExpired
}

// subItem is one price of a subscription.
type subItem struct {
	id       string
	created  int64
	priceID  string
	quantity int64
	metadata map[string]string
}

// recurringJSON is a price's recurring.
type recurringJSON struct {
	AggregateUsage any    `json:"aggregate_usage"`
	Interval       string `json:"interval"`
	IntervalCount  int64  `json:"interval_count"`
	UsageType      string `json:"usage_type"`
}

// recurringOf returns a price's recurring terms, or nil for a one-time
// price.
func recurringOf(p *price) *recurringJSON {
	r, _ := p.Recurring.(*recurringJSON)
	return r
}

// cycleOf returns the interval and interval count of a subscription (all
// its items share them).
func (e *Emulator) cycleOf(s *subscription) (string, int64) {
	if len(s.items) > 0 {
		if p, ok := e.prices.get(s.items[0].priceID); ok {
			if r := recurringOf(p); r != nil {
				return r.Interval, r.IntervalCount
			}
		}
	}
	return "month", 1
}

// itemAmount is what one period of an item costs.
func (e *Emulator) itemAmount(it *subItem) int64 {
	if p, ok := e.prices.get(it.priceID); ok {
		return p.UnitAmount * it.quantity
	}
	return 0
}

// productName is the name of a price's product.
func (e *Emulator) productName(priceID string) string {
	if p, ok := e.prices.get(priceID); ok {
		if pr, ok := e.products.get(p.productID); ok {
			return pr.Name
		}
	}
	return priceID
}

// pauseCollectionJSON is a subscription's pause_collection.
type pauseCollectionJSON struct {
	Behavior  string `json:"behavior"`
	ResumesAt *int64 `json:"resumes_at"`
}

// cancellationDetailsJSON is a subscription's cancellation_details.
type cancellationDetailsJSON struct {
	Comment  *string `json:"comment"`
	Feedback *string `json:"feedback"`
	Reason   *string `json:"reason"`
}

// trialSettingsJSON is a subscription's trial_settings.
type trialSettingsJSON struct {
	EndBehavior struct {
		MissingPaymentMethod string `json:"missing_payment_method"`
	} `json:"end_behavior"`
}

// subItemJSON is a subscription item.
type subItemJSON struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	BillingThresholds any               `json:"billing_thresholds"`
	Created           int64             `json:"created"`
	Metadata          map[string]string `json:"metadata"`
	Price             any               `json:"price"`
	Quantity          int64             `json:"quantity"`
	Subscription      string            `json:"subscription"`
	TaxRates          []any             `json:"tax_rates"`
}

// countedListJSON is a list embedded in an object, with its total_count.
type countedListJSON struct {
	Object     string `json:"object"`
	Data       []any  `json:"data"`
	HasMore    bool   `json:"has_more"`
	TotalCount int    `json:"total_count"`
	URL        string `json:"url"`
}

// subscriptionJSON is a Stripe subscription.
type subscriptionJSON struct {
	ID                            string                  `json:"id"`
	Object                        string                  `json:"object"`
	Application                   any                     `json:"application"`
	ApplicationFeePercent         any                     `json:"application_fee_percent"`
	AutomaticTax                  map[string]any          `json:"automatic_tax"`
	BillingCycleAnchor            int64                   `json:"billing_cycle_anchor"`
	BillingCycleAnchorConfig      any                     `json:"billing_cycle_anchor_config"`
	BillingThresholds             any                     `json:"billing_thresholds"`
	CancelAt                      *int64                  `json:"cancel_at"`
	CancelAtPeriodEnd             bool                    `json:"cancel_at_period_end"`
	CanceledAt                    *int64                  `json:"canceled_at"`
	CancellationDetails           cancellationDetailsJSON `json:"cancellation_details"`
	CollectionMethod              string                  `json:"collection_method"`
	Created                       int64                   `json:"created"`
	Currency                      string                  `json:"currency"`
	CurrentPeriodEnd              int64                   `json:"current_period_end"`
	CurrentPeriodStart            int64                   `json:"current_period_start"`
	Customer                      any                     `json:"customer"`
	DaysUntilDue                  any                     `json:"days_until_due"`
	DefaultPaymentMethod          *string                 `json:"default_payment_method"`
	DefaultSource                 any                     `json:"default_source"`
	DefaultTaxRates               []any                   `json:"default_tax_rates"`
	Description                   *string                 `json:"description"`
	Discount                      any                     `json:"discount"`
	EndedAt                       *int64                  `json:"ended_at"`
	Items                         countedListJSON         `json:"items"`
	LatestInvoice                 any                     `json:"latest_invoice"`
	Livemode                      bool                    `json:"livemode"`
	Metadata                      map[string]string       `json:"metadata"`
	NextPendingInvoiceItemInvoice any                     `json:"next_pending_invoice_item_invoice"`
	OnBehalfOf                    any                     `json:"on_behalf_of"`
	PauseCollection               *pauseCollectionJSON    `json:"pause_collection"`
	PaymentSettings               map[string]any          `json:"payment_settings"`
	PendingInvoiceItemInterval    any                     `json:"pending_invoice_item_interval"`
	PendingSetupIntent            any                     `json:"pending_setup_intent"`
	PendingUpdate                 any                     `json:"pending_update"`
	Schedule                      any                     `json:"schedule"`
	StartDate                     int64                   `json:"start_date"`
	Status                        subStatus               `json:"status"`
	TestClock                     any                     `json:"test_clock"`
	TransferData                  any                     `json:"transfer_data"`
	TrialEnd                      *int64                  `json:"trial_end"`
	TrialSettings                 trialSettingsJSON       `json:"trial_settings"`
	TrialStart                    *int64                  `json:"trial_start"`
}

// optInt returns a pointer to n, or nil (JSON null) when n is zero.
func optInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

// renderSubscription renders s; customer, latest_invoice (and below it)
// and items.data.price.product are expandable. Item prices are always
// objects, as on Stripe.
func (e *Emulator) renderSubscription(s *subscription, x expander) subscriptionJSON {
	w := subscriptionJSON{
		ID: s.id, Object: "subscription", AutomaticTax: map[string]any{"enabled": false, "liability": nil},
		BillingCycleAnchor: s.anchor, CancelAt: optInt(s.cancelAt), CancelAtPeriodEnd: s.cancelAtPeriodEnd,
		CanceledAt: optInt(s.canceledAt), CollectionMethod: "charge_automatically", Created: s.created, Currency: s.currency,
		CurrentPeriodEnd: s.periodEnd, CurrentPeriodStart: s.periodStart, DefaultPaymentMethod: optString(s.defaultPM),
		DefaultTaxRates: []any{}, Description: optString(s.description), EndedAt: optInt(s.endedAt), Metadata: cloneMeta(s.metadata),
		PauseCollection: s.pause, Discount: e.renderSubDiscount(s),
		PaymentSettings: map[string]any{"payment_method_options": nil, "payment_method_types": nil, "save_default_payment_method": "off"},
		StartDate:       s.startDate, Status: s.status, TrialEnd: optInt(s.trialEnd), TrialStart: optInt(s.trialStart),
		CancellationDetails: cancellationDetailsJSON{Comment: optString(s.cancelComment), Feedback: optString(s.cancelFeedback),
			Reason: optString(s.cancelReason)},
	}
	w.TrialSettings.EndBehavior.MissingPaymentMethod = orDefault(s.trialEndBehavior, "create_invoice")
	w.Customer = e.ref(s.customerID, x, "customer", func(id string, _ expander) any {
		if c, ok := e.customers.get(id); ok {
			return c.render()
		}
		return nil
	})
	if s.latestInvoice != nil {
		w.LatestInvoice = e.ref(s.latestInvoice.id, x, "latest_invoice", func(string, expander) any {
			return e.renderInvoice(s.latestInvoice, x.sub("latest_invoice"))
		})
	}
	px := x.sub("items").sub("data").sub("price")
	data := make([]any, len(s.items))
	for i, it := range s.items {
		var pr any = it.priceID
		if p, ok := e.prices.get(it.priceID); ok {
			pr = e.renderPrice(p, px)
		}
		data[i] = subItemJSON{ID: it.id, Object: "subscription_item", Created: it.created, Metadata: cloneMeta(it.metadata),
			Price: pr, Quantity: it.quantity, Subscription: s.id, TaxRates: []any{}}
	}
	w.Items = countedListJSON{Object: "list", Data: data, TotalCount: len(data), URL: "/v1/subscription_items?subscription=" + s.id}
	return w
}

// subSnapshot is a subscription's rendering at one moment: its encoding,
// and its top-level fields for comparison.
type subSnapshot struct {
	raw    []byte
	fields map[string]json.RawMessage
}

// snapshot renders v and splits it into top-level fields. The encoding is
// deterministic (struct order, sorted map keys), so equal values have equal
// bytes.
func snapshot(v any) subSnapshot {
	raw := mustJSON(v)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		panic("stripeemu: split snapshot: " + err.Error())
	}
	return subSnapshot{raw: raw, fields: fields}
}

// previousAttributes returns the top-level fields of before that differ in
// after, with their old values, as Stripe's data.previous_attributes.
func previousAttributes(before, after subSnapshot) map[string]any {
	prev := map[string]any{}
	for k, old := range before.fields {
		if cur, ok := after.fields[k]; !ok || !bytes.Equal(old, cur) {
			prev[k] = old
		}
	}
	return prev
}

// subSnapshotLocked captures s before a change.
func (e *Emulator) subSnapshotLocked(s *subscription) subSnapshot {
	return snapshot(e.renderSubscription(s, nil))
}

// subChangedLocked records customer.subscription.updated with the fields
// that changed since before, or nothing when none did.
func (e *Emulator) subChangedLocked(s *subscription, before subSnapshot, req eventRequestJSON) {
	after := e.subSnapshotLocked(s)
	prev := previousAttributes(before, after)
	if len(prev) == 0 {
		return
	}
	e.recordLocked("customer.subscription.updated", json.RawMessage(after.raw), req, prev)
}

// recordSubLocked records an event whose object is s as it is now.
func (e *Emulator) recordSubLocked(typ string, s *subscription, req eventRequestJSON, prev map[string]any) {
	e.recordLocked(typ, e.renderSubscription(s, nil), req, prev)
}

// subscriptionStatusFilter decodes the status filter of a subscription
// list. Without one, Stripe lists every subscription that has not been
// canceled; "ended" is canceled or incomplete_expired; "all" is everything.
func subscriptionStatusFilter(v string) (func(subStatus) bool, *apiError) {
	switch v {
	case "":
		return func(s subStatus) bool { return s != subCanceled }, nil
	case "all":
		return nil, nil
	case "ended":
		return func(s subStatus) bool { return s == subCanceled || s == subIncompleteExpired }, nil
	}
	for _, st := range subStatuses {
		if string(st) == v {
			return func(s subStatus) bool { return s == st }, nil
		}
	}
	names := make([]string, len(subStatuses))
	for i, st := range subStatuses {
		names[i] = string(st)
	}
	return nil, invalid("status", "", "Invalid status: must be one of all, ended, %s", strings.Join(names, ", "))
}

// itoa formats n in decimal.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
