// The API's routes: what the frontend calls (checkout, claim, purchases,
// GitHub username), what Stripe calls (the webhook) and what an email
// links to (unsubscribe), mounted together by MountAPI.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
)

// APIDeps is what the API routes need. Config and Auth are required.
// Stripe, Prices, Claimer and Access serve particular routes; a route
// whose dependency is nil answers 503 "unavailable", so a partial wiring
// fails loudly on use rather than at a distance.
type APIDeps struct {
	// Config supplies http.cors_origins, http.max_body_bytes,
	// http.checkout_rate, the products,
	// stripe.success_url/cancel_url/webhook_secret/webhook_tolerance,
	// email.unsubscribe_secret and fulfillment.abandoned_requires_consent.
	Config *config.Config
	// Auth verifies bearer tokens on the user-facing routes.
	Auth *Authenticator
	// Stripe finds promotion codes and creates Checkout Sessions
	// (*stripeapi.API).
	Stripe CheckoutCreator
	// Prices resolves a product key to its Stripe price (*catalog.Resolver).
	Prices PriceResolver
	// Claimer confirms a paid session for its buyer (*reconcile.Reconciler).
	Claimer Claimer
	// Access grants access to a user's purchases once they name their
	// GitHub account (the fulfillment package).
	Access AccessRequester
	// Billing creates customers, subscription checkouts and billing portal
	// sessions (*stripeapi.API).
	Billing BillingAPI
	// Credits serves POST /api/credits/consume (*fulfillment.Credits),
	// mounted only when credits.service_tokens lists any.
	Credits CreditsConsumer
	// Orders prices carts and opens their checkouts (*stripeapi.API);
	// with Prices it serves the cart, cart checkouts and the orders.
	Orders OrderStripe
}

// webhookBodyLimit bounds a Stripe webhook delivery; real events are a few KiB.
const webhookBodyLimit = 512 << 10

// api holds the routes' dependencies.
type api struct {
	db      *store.DB
	clock   clock.Clock
	log     *slog.Logger
	metrics *Metrics
	cfg     *config.Config
	auth    *Authenticator
	stripe  CheckoutCreator
	prices  PriceResolver
	claimer Claimer
	access  AccessRequester
	billing BillingAPI
	// orderStripe serves carts and their checkouts (cart.go).
	orderStripe OrderStripe
	cors        *cors
	products    map[string]config.Product
	// hints commits the webhook deliveries in flight together (hintwriter.go).
	hints *hintWriter
}

// MountAPI mounts the API routes on s:
//
//	POST /api/checkout         create a Checkout Session for a product (bearer)
//	POST /api/purchases/claim  confirm a paid session as the caller's (bearer)
//	GET  /api/purchases        the caller's purchases (bearer)
//	PUT  /api/me/github        set the caller's GitHub username (bearer)
//	GET  /api/cart             the caller's cart, priced (bearer)
//	PUT  /api/cart             replace the caller's cart (bearer)
//	GET  /api/orders           the caller's orders (bearer)
//	GET  /api/subscriptions    the caller's subscriptions (bearer)
//	POST /api/billing/portal   a Stripe billing portal session for the caller (bearer)
//	GET  /api/credits          the caller's credit balance and ledger (bearer)
//	POST /api/credits/consume  spend credits (service token; only with credits.service_tokens)
//	POST /api/stripe/webhook   store a signed Stripe event as a hint
//	GET  /unsubscribe          confirm an unsubscribe link (changes nothing)
//	POST /unsubscribe          unsubscribe (the page's form, RFC 8058 one-click)
//
// plus CORS preflight for the bearer routes. It panics when d.Config or
// d.Auth is nil, like http.ServeMux on a bad pattern: that is a wiring bug.
func (s *Server) MountAPI(d APIDeps) {
	if d.Config == nil || d.Auth == nil {
		panic("httpapi: MountAPI needs Config and Auth")
	}
	a := &api{db: s.db, clock: s.clock, log: s.log, metrics: s.metrics, cfg: d.Config, auth: d.Auth,
		stripe: d.Stripe, prices: d.Prices, claimer: d.Claimer, access: d.Access, billing: d.Billing, orderStripe: d.Orders,
		products: map[string]config.Product{}, hints: &hintWriter{db: s.db}}
	for _, p := range d.Config.Products {
		a.products[p.Key] = p
	}
	a.cors = newCORS(d.Config.HTTP.CORSOrigins)

	browser := map[string]http.Handler{
		"POST /api/checkout":        a.authed(a.checkout),
		"POST /api/purchases/claim": a.authed(a.claim),
		"GET /api/purchases":        a.authed(a.listPurchases),
		"PUT /api/me/github":        a.authed(a.setGitHub),
		"GET /api/cart":             a.authed(a.getCart),
		"PUT /api/cart":             a.authed(a.putCart),
		"GET /api/orders":           a.authed(a.listOrders),
		"GET /api/subscriptions":    a.authed(a.listSubscriptions),
		"POST /api/billing/portal":  a.authed(a.portal),
	}
	for pattern, h := range browser {
		s.Handle(pattern, a.cors.wrap(h))
		a.cors.allow(pattern)
	}
	a.mountCredits(s, d.Credits)
	s.Handle("OPTIONS /api/", a.cors.preflight())
	s.Handle("POST /api/stripe/webhook", http.HandlerFunc(a.webhook))
	s.Handle("GET /unsubscribe", http.HandlerFunc(a.unsubscribePage))
	s.Handle("POST /unsubscribe", http.HandlerFunc(a.unsubscribe))
}

// handle adapts a handler that returns an error: the error is written in
// the API's error shape (and logged when it is not an *Error).
func (a *api) handle(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, a.log, err)
		}
	})
}

// unavailable is the error of a route whose dependency was not wired.
func unavailable(what string) error {
	return Errorf(http.StatusServiceUnavailable, "unavailable", "%s is not available on this server", what)
}
