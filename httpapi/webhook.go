// The Stripe webhook endpoint. A delivery is a hint, not the truth: once
// its signature checks out, only the event's id, type and the id of the
// object it concerns are stored, and Postgres notifies the reconciler,
// which fetches that object from Stripe and acts on what Stripe says now.
// Nothing else in the payload is read, so a delivery that is late,
// repeated, reordered or never arrives costs latency, never correctness.
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76/webhook"
)

// Webhook outcomes, as counted by Metrics.Webhooks.
const (
	webhookStored    = "stored"
	webhookDuplicate = "duplicate"
	webhookIgnored   = "ignored"
	webhookRejected  = "rejected"
)

type webhookAck struct {
	Received  bool `json:"received"`
	Duplicate bool `json:"duplicate,omitempty"`
	Ignored   bool `json:"ignored,omitempty"`
}

// webhook is POST /api/stripe/webhook.
func (a *api) webhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	reject := func(status int, code, msg string, err error) {
		a.metrics.webhook(webhookRejected)
		a.log.WarnContext(ctx, "webhook rejected", "reason", code, "err", err)
		writeError(w, r, a.log, Errorf(status, code, "%s", msg))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhookBodyLimit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reject(http.StatusRequestEntityTooLarge, "body_too_large", "a webhook body may be at most 512 KiB", err)
			return
		}
		reject(http.StatusBadRequest, "unreadable_body", "the request body could not be read", err)
		return
	}
	err = webhook.ValidatePayloadWithTolerance(body, r.Header.Get("Stripe-Signature"), a.cfg.Stripe.WebhookSecret,
		a.cfg.Stripe.WebhookTolerance)
	if err != nil {
		reject(http.StatusBadRequest, "invalid_signature", "the Stripe-Signature header does not verify", err)
		return
	}
	// Only the event's identity is read: no map of the whole payload.
	var event stripeapi.EventRef
	if err := json.Unmarshal(body, &event); err != nil {
		reject(http.StatusBadRequest, "invalid_event", "the body is not a Stripe event", err)
		return
	}
	if event.ID == "" || event.Type == "" {
		reject(http.StatusBadRequest, "invalid_event", "the body is not a Stripe event", errors.New("no id or type"))
		return
	}
	eventType := event.Type
	if !stripeapi.Acts(eventType) {
		a.metrics.webhook(webhookIgnored)
		a.log.DebugContext(ctx, "webhook ignored", "event_id", event.ID, "type", eventType)
		writeJSON(w, http.StatusOK, webhookAck{Received: true, Ignored: true})
		return
	}
	objectID := event.Data.Object.ID
	if objectID == "" {
		reject(http.StatusBadRequest, "invalid_event", "the event names no object", errors.New("no data.object.id"))
		return
	}
	inserted, err := a.hints.insert(ctx, store.NewHint{EventID: event.ID, Type: eventType, ObjectID: objectID,
		ReceivedAt: a.clock.Now()})
	if err != nil {
		// Stripe retries a failed delivery, so the hint is not lost.
		writeError(w, r, a.log, err)
		return
	}
	if !inserted {
		a.metrics.webhook(webhookDuplicate)
		a.log.DebugContext(ctx, "webhook redelivered", "event_id", event.ID, "type", eventType, "object_id", objectID)
		writeJSON(w, http.StatusOK, webhookAck{Received: true, Duplicate: true})
		return
	}
	a.metrics.webhook(webhookStored)
	a.log.InfoContext(ctx, "webhook hint stored", "event_id", event.ID, "type", eventType, "object_id", objectID)
	writeJSON(w, http.StatusOK, webhookAck{Received: true})
}
