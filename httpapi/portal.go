// The billing portal: POST /api/billing/portal sends the caller to
// Stripe's portal for their customer, where they cancel, resume, switch
// price or change their card. What they do there reaches paymentd as
// Stripe's events, like everything else.
package httpapi

import (
	"net/http"
)

type portalRequest struct {
	ReturnURL string `json:"return_url"`
}

type portalResponse struct {
	URL string `json:"url"`
}

// portal is POST /api/billing/portal {"return_url"?} -> {"url"}. The
// return URL must be under http.public_url or an allowed CORS origin (400
// invalid_return_url); a user without a Stripe customer gets 404
// no_customer. Each portal session created spends one of the user's
// Stripe lookups (takeStripeLookup); the refusals above do not.
func (a *api) portal(w http.ResponseWriter, r *http.Request, u User) error {
	var req portalRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	if !a.returnURLAllowed(req.ReturnURL) {
		return Errorf(http.StatusBadRequest, "invalid_return_url",
			"return_url must be under http.public_url or an allowed CORS origin")
	}
	if a.billing == nil {
		return unavailable("the billing portal")
	}
	customerID, err := a.db.AccountCustomer(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if customerID == "" {
		return Errorf(http.StatusNotFound, "no_customer", "there is no billing account for this user")
	}
	if err := a.takeStripeLookup(w, r, u); err != nil {
		return err
	}
	ps, err := a.billing.CreatePortalSession(r.Context(), customerID, req.ReturnURL)
	if err != nil {
		a.log.ErrorContext(r.Context(), "create billing portal session", "user_id", u.ID, "err", err)
		return errStripeUnavailable()
	}
	writeJSON(w, http.StatusOK, portalResponse{URL: ps.URL})
	return nil
}
