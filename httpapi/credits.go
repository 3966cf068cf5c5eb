// Credits: the caller's balance and ledger for the frontend, and
// consumption for the seller's backend, authenticated with a service token
// (credits.service_tokens) rather than a user's JWT.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/paymentd/paymentd/store"
)

// CreditsConsumer spends credits and schedules what a consumption owes
// (the low-balance notice) in the same transaction (*fulfillment.Credits).
type CreditsConsumer interface {
	Consume(ctx context.Context, c store.Consume) (store.Consumption, error)
}

// Limits of the credits API.
const (
	creditsDefaultLimit = 50
	creditsMaxLimit     = 200
	// maxIdempotencyKey bounds a consume idempotency key, in bytes.
	maxIdempotencyKey = 255
	maxCreditsReason  = 500
	maxCreditsID      = 255
	// consumeTimeout bounds a consumption's transaction. It runs detached
	// from the client's context: a client that times out and retries finds
	// the answer recorded (or waits for it), never a half-done consumption.
	consumeTimeout = 10 * time.Second
)

// mountCredits mounts GET /api/credits (user JWT) and, when service tokens
// are configured, POST /api/credits/consume.
func (a *api) mountCredits(s *Server, consumer CreditsConsumer) {
	s.Handle("GET /api/credits", a.cors.wrap(a.authed(a.getCredits)))
	a.cors.allow("GET /api/credits")
	if len(a.cfg.Credits.ServiceTokens) == 0 {
		// Without tokens there is no consume endpoint. Said explicitly, or
		// the OPTIONS /api/ preflight pattern would make it a 405.
		s.Handle("POST /api/credits/consume", a.handle(func(http.ResponseWriter, *http.Request) error {
			return Errorf(http.StatusNotFound, "not_found", "no such endpoint")
		}))
		return
	}
	tokens := make([][32]byte, len(a.cfg.Credits.ServiceTokens))
	for i, t := range a.cfg.Credits.ServiceTokens {
		tokens[i] = sha256.Sum256([]byte(t))
	}
	s.Handle("POST /api/credits/consume", a.handle(func(w http.ResponseWriter, r *http.Request) error {
		if !serviceTokenOK(r, tokens) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paymentd"`)
			return Errorf(http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <service token>")
		}
		if consumer == nil {
			return unavailable("consuming credits")
		}
		return a.consume(w, r, consumer)
	}))
}

// serviceTokenOK compares the bearer token with every configured token in
// constant time: their SHA-256 digests are compared, so neither the
// position of the first differing byte nor the tokens' lengths show in
// the time taken, and every token is compared whatever the outcome.
func serviceTokenOK(r *http.Request, tokens [][32]byte) bool {
	raw, ok := bearerToken(r)
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(raw))
	match := 0
	for _, t := range tokens {
		match |= subtle.ConstantTimeCompare(got[:], t[:])
	}
	return match == 1
}

// creditEntryView is the public shape of a ledger entry.
type creditEntryView struct {
	ID           int64            `json:"id"`
	Kind         store.CreditKind `json:"kind"`
	Amount       int64            `json:"amount"`
	BalanceAfter int64            `json:"balance_after"`
	Cause        creditCauseView  `json:"cause"`
	Reason       string           `json:"reason,omitempty"`
	CreatedAt    string           `json:"created_at"`
}

type creditCauseView struct {
	Kind store.CauseKind `json:"kind"`
	ID   string          `json:"id"`
}

func viewCreditEntry(e store.CreditEntry) creditEntryView {
	return creditEntryView{ID: e.ID, Kind: e.Kind, Amount: e.Amount, BalanceAfter: e.BalanceAfter,
		Cause: creditCauseView{Kind: e.CauseKind, ID: e.CauseID}, Reason: e.Reason,
		CreatedAt: e.CreatedAt.UTC().Format(time.RFC3339)}
}

// getCredits answers the caller's balance and entries, newest first:
// ?organization_id= for the balance within an organization, ?limit=
// (1..200, default 50) and ?starting_after=<entry id> to page.
func (a *api) getCredits(w http.ResponseWriter, r *http.Request, u User) error {
	qv := r.URL.Query()
	holder := store.CreditHolder{UserID: u.ID, OrganizationID: qv.Get("organization_id")}
	if len(holder.OrganizationID) > maxCreditsID {
		return Errorf(http.StatusBadRequest, "invalid_organization_id", "organization_id is longer than %d bytes", maxCreditsID)
	}
	limit := creditsDefaultLimit
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > creditsMaxLimit {
			return Errorf(http.StatusBadRequest, "invalid_limit", "limit must be a whole number from 1 to %d", creditsMaxLimit)
		}
		limit = n
	}
	var after int64
	if v := qv.Get("starting_after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return Errorf(http.StatusBadRequest, "invalid_starting_after", "starting_after must be an entry id")
		}
		after = n
	}
	acct, err := a.db.GetCreditAccount(r.Context(), holder)
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusOK, map[string]any{"balance": 0, "entries": []creditEntryView{}, "has_more": false})
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := a.db.CreditEntries(r.Context(), acct.ID, limit+1, after)
	if err != nil {
		return err
	}
	views := make([]creditEntryView, 0, len(entries))
	for _, e := range entries[:min(len(entries), limit)] {
		views = append(views, viewCreditEntry(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"balance": acct.Balance, "entries": views, "has_more": len(entries) > limit})
	return nil
}

// consumeRequest is POST /api/credits/consume's body. Amount is raw so a
// non-integer is an invalid_amount, not an invalid_json.
type consumeRequest struct {
	Amount         json.RawMessage `json:"amount"`
	IdempotencyKey string          `json:"idempotency_key"`
	UserID         string          `json:"user_id"`
	OrganizationID string          `json:"organization_id"`
	Reason         string          `json:"reason"`
}

// consumeAnswer is the body of a 200.
type consumeAnswer struct {
	Balance        int64  `json:"balance"`
	Amount         int64  `json:"amount"`
	EntryID        int64  `json:"entry_id"`
	IdempotencyKey string `json:"idempotency_key"`
}

// consume validates the request, spends the credits once per idempotency
// key, and answers as the key was first answered: 200 with the balance
// after, or 409 insufficient_credits with the balance then.
func (a *api) consume(w http.ResponseWriter, r *http.Request, consumer CreditsConsumer) error {
	var req consumeRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	c, err := req.validate()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), consumeTimeout)
	defer cancel()
	res, err := consumer.Consume(ctx, c)
	if errors.Is(err, store.ErrIdempotencyKeyReused) {
		return Errorf(http.StatusConflict, "idempotency_key_reused",
			"this idempotency_key was used for another amount or user")
	}
	if err != nil {
		return err
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if res.Outcome == store.ConsumeInsufficient {
		writeJSON(w, http.StatusConflict, map[string]any{"balance": res.Balance,
			"error": Errorf(http.StatusConflict, "insufficient_credits", "the balance is below the amount")})
		return nil
	}
	writeJSON(w, http.StatusOK, consumeAnswer{Balance: res.Balance, Amount: res.Amount, EntryID: res.EntryID,
		IdempotencyKey: res.Key})
	return nil
}

// validate turns a consume request into a store.Consume, or a 400.
func (req consumeRequest) validate() (store.Consume, error) {
	var n json.Number // a JSON number; json.Number would also take a string, hence the quote check
	if len(req.Amount) == 0 || req.Amount[0] == '"' || json.Unmarshal(req.Amount, &n) != nil {
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_amount", "amount must be a positive whole number of credits")
	}
	amount, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || amount <= 0 {
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_amount", "amount must be a positive whole number of credits")
	}
	switch {
	case req.IdempotencyKey == "" || len(req.IdempotencyKey) > maxIdempotencyKey:
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_idempotency_key",
			"idempotency_key is required, at most %d bytes", maxIdempotencyKey)
	case req.UserID == "" || len(req.UserID) > maxCreditsID:
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_user_id", "user_id is required, at most %d bytes", maxCreditsID)
	case len(req.OrganizationID) > maxCreditsID:
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_organization_id", "organization_id is longer than %d bytes", maxCreditsID)
	case len(req.Reason) > maxCreditsReason:
		return store.Consume{}, Errorf(http.StatusBadRequest, "invalid_reason", "reason is longer than %d bytes", maxCreditsReason)
	}
	return store.Consume{Holder: store.CreditHolder{UserID: req.UserID, OrganizationID: req.OrganizationID},
		Amount: amount, Key: req.IdempotencyKey, Reason: req.Reason}, nil
}
