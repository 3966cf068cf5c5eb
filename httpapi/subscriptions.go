// Subscriptions at the API: a checkout for a subscription product (a
// subscription-mode Checkout Session for the user's one Stripe customer,
// with paymentd's metadata on the session and on the subscription it
// creates), and the caller's subscriptions. The subscription row itself is
// the reconciler's: it is recorded once Stripe has the subscription.
package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// BillingAPI creates what selling subscriptions needs at Stripe: the
// user's customer (found again by its metadata when the account lost it),
// subscription-mode Checkout Sessions and billing portal sessions;
// *stripeapi.API satisfies it.
type BillingAPI interface {
	CreateCustomer(ctx context.Context, c stripeapi.CustomerSpec, idempotencyKey string) (*stripe.Customer, error)
	CustomersByMetadata(ctx context.Context, key, value string) ([]*stripe.Customer, error)
	CreateSubscriptionCheckoutSession(ctx context.Context, r stripeapi.SubscriptionCheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error)
	CreatePortalSession(ctx context.Context, customerID, returnURL string) (*stripe.BillingPortalSession, error)
}

// organizationIDRE is what an organization id (the seller's opaque tenant
// id) may be: 1-64 letters, digits and _ . : -.
var organizationIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// checkSubscriptionFields validates the checkout fields only a
// subscription product takes (price, organization_id), and refuses them
// for a one-time product.
func checkSubscriptionFields(product config.Product, req checkoutRequest) error {
	if !product.IsSubscription() {
		if req.Price != "" || req.OrganizationID != "" {
			return Errorf(http.StatusBadRequest, "unsupported_field",
				`"price" and "organization_id" are for subscription products; %s is bought once`, product.Key)
		}
		return nil
	}
	if req.Price != "" {
		if _, ok := product.Price(req.Price); !ok {
			return Errorf(http.StatusBadRequest, "unknown_price", "%s has no price %q", product.Key, req.Price)
		}
	}
	if req.OrganizationID != "" && !organizationIDRE.MatchString(req.OrganizationID) {
		return Errorf(http.StatusBadRequest, "invalid_organization_id",
			"organization_id is 1-64 letters, digits, underscores, dots, colons or hyphens")
	}
	if req.Quantity != nil && *req.Quantity != 1 {
		return Errorf(http.StatusBadRequest, "invalid_quantity", "a subscription is for a quantity of 1")
	}
	if req.GitHubUsername != "" && !validGitHubUsername(req.GitHubUsername) {
		return Errorf(http.StatusBadRequest, "invalid_github_username",
			"a GitHub username has 1-39 letters, digits or single hyphens, and does not start or end with a hyphen")
	}
	return nil
}

// subscriptionCheckout creates a subscription-mode Checkout Session for a
// validated order: the chosen price (the product's first by default),
// the user's Stripe customer, the product's trial, the promotion code as a
// one-time checkout resolves it, and paymentd's metadata (user_id,
// product, price, subscription_id, organization_id) on both the session
// and the subscription. A caller who already has a subscription to the
// product that has not ended, in the same organization, is refused with
// 409 already_subscribed before any Stripe request and with nothing
// written; the trial is only for a user who never had one to the product
// (see subscriptionTermsFor). An open Checkout Session is not recorded
// anywhere, so a second one opened before the first is paid is not seen.
func (a *api) subscriptionCheckout(w http.ResponseWriter, r *http.Request, u User, order checkoutOrder) error {
	if a.billing == nil || a.prices == nil || a.stripe == nil {
		return unavailable("subscription checkout")
	}
	customer, err := a.db.AccountCustomer(r.Context(), u.ID)
	if err != nil {
		return err
	}
	subscriber := store.Subscriber{UserID: u.ID, CustomerID: customer, OrganizationID: order.organizationID}
	had, err := a.db.ProductSubscriptionsOf(r.Context(), subscriber, order.product.Key)
	if err != nil {
		return err
	}
	terms := subscriptionTermsFor(had, subscriber)
	if terms.open != nil {
		return &Error{Status: http.StatusConflict, Code: "already_subscribed", Product: order.product.Key,
			Message: fmt.Sprintf("you already have a %s subscription (%s) that has not ended; change or cancel it "+
				"in the billing portal, or pay its open invoice", order.product.Key, terms.open.Status)}
	}
	trialDays := int64(order.product.TrialDays)
	if !terms.trial {
		trialDays = 0
	}
	priceKey := order.price
	if priceKey == "" {
		priceKey = order.product.Prices[0].Key
	}
	lookup, cancel := context.WithTimeout(r.Context(), checkoutLookupBudget)
	defer cancel()
	priceID, _, err := a.resolvePrice(lookup, config.Product{Key: priceKey, Name: order.product.Name})
	if err != nil {
		return err
	}
	promotionCodeID, err := a.resolvePromotionCode(lookup, order.promotionCode)
	if err != nil {
		return err
	}
	customerID, err := a.customerFor(lookup, u, customer, order.githubUsername)
	if err != nil {
		return err
	}
	subscriptionID := uuid.NewString()
	meta := map[string]string{"user_id": u.ID, "product": order.product.Key, "price": priceKey,
		reconcile.MetaSubscriptionID: subscriptionID}
	if order.organizationID != "" {
		meta["organization_id"] = order.organizationID
	}
	sess, err := a.billing.CreateSubscriptionCheckoutSession(r.Context(), stripeapi.SubscriptionCheckoutRequest{
		PriceID: priceID, Quantity: 1, SuccessURL: a.cfg.Stripe.SuccessURL, CancelURL: a.cfg.Stripe.CancelURL,
		Metadata: meta, SubscriptionMetadata: meta, ClientReferenceID: u.ID, CustomerID: customerID,
		TrialDays: trialDays, PromotionCodeID: promotionCodeID,
	}, "paymentd-subscription-checkout-"+subscriptionID)
	if err != nil {
		return a.checkoutError(r, promotionCodeID != "", err)
	}
	a.log.InfoContext(r.Context(), "subscription checkout session created", "subscription_id", subscriptionID,
		"stripe_session_id", sess.ID, "product", order.product.Key, "price", priceKey, "user_id", u.ID,
		"promotion_code_id", promotionCodeID, "trial_days", trialDays)
	writeJSON(w, http.StatusOK, checkoutResponse{URL: sess.URL, SessionID: sess.ID})
	return nil
}

// subscriptionTerms is what a user's subscriptions to a product allow a
// new checkout for it.
type subscriptionTerms struct {
	// open is the caller's subscription in the checkout's organization
	// that has not ended (nil: none): a checkout is refused while there is
	// one, so one account cannot hold the product (and its plan credits)
	// several times over.
	open *store.Subscription
	// trial says whether the checkout may start with the product's trial:
	// only when neither the user (in any organization) nor the
	// organization (anyone's) ever had a subscription to it, in any
	// status.
	trial bool
}

// subscriptionTermsFor decides subscriptionTerms from ss, the
// subscriber's subscriptions to the product (ProductSubscriptionsOf). A
// subscription has not ended unless its status is Terminal (canceled,
// incomplete_expired): trialing, active, past_due, unpaid, incomplete (its
// first invoice can still be paid) and paused (it can be resumed) all
// count. It is the caller's when it names them, or names no user and is on
// their Stripe customer; it is in the checkout's organization when its
// organization_id is the request's, none matching none. The trial is per
// user across organizations, and per organization across users, because
// an organization id is the caller's to choose: were it per user and
// organization, every new id would be a new trial.
func subscriptionTermsFor(ss []store.Subscription, sub store.Subscriber) subscriptionTerms {
	terms := subscriptionTerms{trial: len(ss) == 0}
	for i, s := range ss {
		mine := (s.UserID != nil && *s.UserID == sub.UserID) ||
			(s.UserID == nil && sub.CustomerID != "" && s.StripeCustomerID == sub.CustomerID)
		org := ""
		if s.OrganizationID != nil {
			org = *s.OrganizationID
		}
		if mine && org == sub.OrganizationID && !s.Status.Terminal() {
			terms.open = &ss[i]
			break
		}
	}
	return terms
}

// customerFor returns the user's Stripe customer: the one on their
// account (id, read by the caller; "" when none); else one Stripe finds by the user's metadata (the account row
// was lost); else a new one, created with an idempotency key derived from
// the user id, so a retried or concurrent checkout cannot make a second.
// The account remembers it (with the GitHub username, when given).
func (a *api) customerFor(ctx context.Context, u User, id, githubUsername string) (string, error) {
	if id != "" {
		return id, a.rememberGitHub(ctx, u, githubUsername)
	}
	found, err := a.billing.CustomersByMetadata(ctx, "user_id", u.ID)
	if err != nil {
		a.log.WarnContext(ctx, "search customer by metadata", "user_id", u.ID, "err", err)
		return "", errStripeUnavailable()
	}
	for _, c := range found {
		if c.Metadata["user_id"] == u.ID && !c.Deleted {
			id = c.ID
			break
		}
	}
	if id == "" {
		c, err := a.billing.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: u.Email,
			Metadata: map[string]string{"user_id": u.ID}}, "paymentd-customer-"+u.ID)
		if err != nil {
			a.log.ErrorContext(ctx, "create customer", "user_id", u.ID, "err", err)
			return "", errStripeUnavailable()
		}
		id = c.ID
	}
	now := a.clock.Now()
	kept, err := a.db.SetAccountCustomer(ctx, u.ID, u.Email, id, now)
	if err != nil {
		return "", err
	}
	return kept, a.rememberGitHub(ctx, u, githubUsername)
}

// rememberGitHub stores the GitHub username given at checkout on the
// account (the access provider grants to it).
func (a *api) rememberGitHub(ctx context.Context, u User, githubUsername string) error {
	if githubUsername == "" {
		return nil
	}
	return a.db.UpsertAccount(ctx, u.ID, u.Email, githubUsername, a.clock.Now())
}

// subscriptionView is GET /api/subscriptions' shape of a subscription.
type subscriptionView struct {
	ID                   string                   `json:"id"`
	StripeSubscriptionID string                   `json:"stripe_subscription_id"`
	Product              string                   `json:"product"`
	Price                string                   `json:"price"`
	Status               store.SubscriptionStatus `json:"status"`
	AccessState          store.AccessState        `json:"access_state"`
	Quantity             int64                    `json:"quantity"`
	Amount               int64                    `json:"amount"`
	Currency             string                   `json:"currency"`
	Interval             string                   `json:"interval"`
	CurrentPeriodEnd     time.Time                `json:"current_period_end"`
	TrialEnd             *time.Time               `json:"trial_end"`
	CancelAtPeriodEnd    bool                     `json:"cancel_at_period_end"`
	CanceledAt           *time.Time               `json:"canceled_at"`
	EndedAt              *time.Time               `json:"ended_at"`
	OrganizationID       *string                  `json:"organization_id"`
	LatestInvoice        *invoiceView             `json:"latest_invoice"`
}

// invoiceView is a subscription's latest invoice.
type invoiceView struct {
	ID               string              `json:"id"`
	Status           store.InvoiceStatus `json:"status"`
	AmountDue        int64               `json:"amount_due"`
	AmountPaid       int64               `json:"amount_paid"`
	HostedInvoiceURL *string             `json:"hosted_invoice_url"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func viewSubscription(s store.Subscription, latest *store.Invoice) subscriptionView {
	v := subscriptionView{ID: s.ID, StripeSubscriptionID: s.StripeSubscriptionID, Product: s.ProductKey, Price: s.PriceKey,
		Status: s.Status, AccessState: s.AccessState, Quantity: s.Quantity, Amount: s.Amount, Currency: s.Currency,
		Interval: s.Interval, CurrentPeriodEnd: s.CurrentPeriodEnd.UTC(), TrialEnd: utcPtr(s.TrialEnd),
		CancelAtPeriodEnd: s.CancelAtPeriodEnd, CanceledAt: utcPtr(s.CanceledAt), EndedAt: utcPtr(s.EndedAt),
		OrganizationID: s.OrganizationID}
	if latest != nil {
		v.LatestInvoice = &invoiceView{ID: latest.ID, Status: latest.Status, AmountDue: latest.AmountDue,
			AmountPaid: latest.AmountPaid, HostedInvoiceURL: latest.HostedInvoiceURL}
	}
	return v
}

// listSubscriptions is GET /api/subscriptions: the caller's subscriptions,
// newest first, each with its latest invoice.
func (a *api) listSubscriptions(w http.ResponseWriter, r *http.Request, u User) error {
	ss, err := a.db.UserSubscriptions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range ss {
		if s.LatestInvoiceID != nil {
			ids = append(ids, *s.LatestInvoiceID)
		}
	}
	invs, err := a.db.InvoicesByIDs(r.Context(), ids)
	if err != nil {
		return err
	}
	views := make([]subscriptionView, 0, len(ss))
	for _, s := range ss {
		var latest *store.Invoice
		if s.LatestInvoiceID != nil {
			if inv, ok := invs[*s.LatestInvoiceID]; ok {
				latest = &inv
			}
		}
		views = append(views, viewSubscription(s, latest))
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": views})
	return nil
}

// claimedSubscription is POST /api/purchases/claim's answer for a
// subscription-mode session.
type claimedSubscription struct {
	Status         store.SubscriptionStatus `json:"status"`
	Product        string                   `json:"product"`
	AlreadyClaimed bool                     `json:"already_claimed"`
	SubscriptionID string                   `json:"subscription_id"`
}

func writeClaimedSubscription(w http.ResponseWriter, res reconcile.ClaimResult) {
	s := res.Subscription
	writeJSON(w, http.StatusOK, claimedSubscription{Status: s.Status, Product: s.ProductKey,
		AlreadyClaimed: res.AlreadyClaimed, SubscriptionID: s.ID})
}

// returnURLAllowed reports whether a portal return URL is under
// http.public_url or on an allowed CORS origin.
func (a *api) returnURLAllowed(u string) bool {
	if u == "" {
		return true
	}
	if strings.ContainsAny(u, "\\\r\n\t ") {
		return false
	}
	under := func(base string) bool {
		base = strings.TrimRight(base, "/")
		return base != "" && (u == base || strings.HasPrefix(u, base+"/") || strings.HasPrefix(u, base+"?"))
	}
	if under(a.cfg.HTTP.PublicURL) {
		return true
	}
	for _, o := range a.cfg.HTTP.CORSOrigins {
		if under(o) {
			return true
		}
	}
	return false
}
