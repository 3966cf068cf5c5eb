package fulfillment_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
)

// webhookBody is what the product's backend receives.
type webhookBody struct {
	Type string       `json:"type"`
	Data access.Grant `json:"data"`
}

func decodeDelivery(t *testing.T, d delivery) webhookBody {
	t.Helper()
	var b webhookBody
	if err := json.Unmarshal(d.body, &b); err != nil {
		t.Fatalf("delivery body %s: %v", d.body, err)
	}
	return b
}

func TestWebhookProductIsGrantedByASignedWebhookAndRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.hook.then(http.StatusInternalServerError)
	p := h.complete(buy{product: "api", userID: "user_1"})
	h.run()

	grant := h.step(p, fulfillment.PipelinePurchase, fulfillment.StepGrantAccess)
	if grant.Status != store.StepPending || grant.Attempts != 1 || len(h.hook.deliveries()) != 1 {
		t.Fatalf("after a 500: grant %s after %d attempts, %d deliveries", grant.Status, grant.Attempts, len(h.hook.deliveries()))
	}
	if n := len(h.mails(mail.AccessGranted)); n != 0 {
		t.Fatalf("access email sent before the backend accepted")
	}
	h.advance(time.Minute)

	got := h.hook.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	wantID := "paymentd:" + p.ID + ":purchase:grant_access"
	for i, d := range got {
		if id := d.header.Get("webhook-id"); id != wantID {
			t.Errorf("delivery %d webhook-id = %q, want %q", i, id, wantID)
		}
	}
	verifier, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Verify(got[1].body, got[1].header); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	body := decodeDelivery(t, got[1])
	if body.Type != access.EventPurchaseCompleted || body.Data.PurchaseID != p.ID || body.Data.AmountTotal != 19900 ||
		body.Data.Email != buyerEmail || body.Data.UserID != "user_1" || body.Data.ProductKey != "api" {
		t.Errorf("delivered %+v", body)
	}
	if cur := h.reload(p); cur.AccessState != store.AccessGranted {
		t.Errorf("access = %s, want granted", cur.AccessState)
	}
	m := h.oneMail(mail.AccessGranted, buyerEmail)
	wantContains(t, "access email", m.Text, "Acme API is now active")

	// A partial refund keeps access and says so; a full one revokes it.
	h.refund(p, "re_1", 5000)
	h.run()
	h.refund(p, "re_2", 14900)
	h.run()
	got = h.hook.deliveries()
	if len(got) != 4 {
		t.Fatalf("%d deliveries, want 4", len(got))
	}
	for i, want := range []string{access.EventPurchasePartiallyRefunded, access.EventPurchaseRefunded} {
		d := got[2+i]
		if err := verifier.Verify(d.body, d.header); err != nil {
			t.Errorf("%s signature: %v", want, err)
		}
		if b := decodeDelivery(t, d); b.Type != want || b.Data.PurchaseID != p.ID {
			t.Errorf("delivery %d = %+v, want %s", 2+i, b, want)
		}
	}
	if cur := h.reload(p); cur.AccessState != store.AccessRevoked {
		t.Errorf("access after the full refund = %s, want revoked", cur.AccessState)
	}
}
