package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// event is a Stripe event body; apiVersion is deliberately not the one
// stripe-go v76 expects, since only ids are read.
func event(id, typ, objectID string) []byte {
	data, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2025-01-27.acacia", "type": typ, "created": time.Now().Unix(),
		"livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": map[string]any{"id": objectID, "object": "checkout.session",
			"amount_total": 19900, "metadata": map[string]string{"user_id": "attacker"}}},
	})
	return data
}

// signed signs payload with secret at ts and returns the Stripe-Signature header.
func signed(payload []byte, secret string, ts time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: ts}).Header
}

func (h *apiHarness) deliver(payload []byte, signature string) response {
	h.t.Helper()
	if signature == "" {
		return h.do("POST", "/api/stripe/webhook", "", payload)
	}
	return h.do("POST", "/api/stripe/webhook", "", payload, "Stripe-Signature", signature)
}

func (h *apiHarness) hints() int {
	return h.count(`SELECT count(*) FROM webhook_hints`)
}

func TestWebhookStoresAValidEventOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := h.cfg.Stripe.WebhookSecret
	body := event("evt_1", "checkout.session.completed", "cs_test_paid")

	var acks []map[string]bool
	for range 3 {
		r := h.deliver(body, signed(body, secret, time.Now()))
		if r.status != http.StatusOK {
			t.Fatalf("delivery = %d %s", r.status, r.body)
		}
		var ack map[string]bool
		r.decode(t, &ack)
		acks = append(acks, ack)
	}
	if !acks[0]["received"] || acks[0]["duplicate"] || !acks[1]["duplicate"] || !acks[2]["duplicate"] {
		t.Errorf("acks %v; want received, then duplicate twice", acks)
	}
	var typ, object string
	var handled *time.Time
	if err := h.db.Pool.QueryRow(t.Context(), `SELECT type, object_id, handled_at FROM webhook_hints WHERE event_id = 'evt_1'`).
		Scan(&typ, &object, &handled); err != nil {
		t.Fatal(err)
	}
	if typ != "checkout.session.completed" || object != "cs_test_paid" || handled != nil || h.hints() != 1 {
		t.Errorf("hint %s %s handled %v, %d rows; want one unhandled hint for cs_test_paid", typ, object, handled, h.hints())
	}
	// Nothing from the payload beyond ids reaches the database.
	if n := h.count(`SELECT count(*) FROM purchases`); n != 0 {
		t.Errorf("a webhook created %d purchases", n)
	}
	if s, d := h.counter("paymentd_webhooks_total", "result", "stored"), h.counter("paymentd_webhooks_total", "result", "duplicate"); s != 1 || d != 2 {
		t.Errorf("counted stored %v duplicate %v; want 1 and 2", s, d)
	}
}

func TestWebhookRejectsWhatItCannotTrust(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := h.cfg.Stripe.WebhookSecret
	body := event("evt_bad", "checkout.session.completed", "cs_test_x")
	tampered := bytes.Replace(body, []byte("cs_test_x"), []byte("cs_test_y"), 1)
	notJSON := []byte(`{"id": "evt_nojson", "type": `)
	notEvent := []byte(`{"hello": "world"}`)
	noObject := []byte(`{"id":"evt_noobj","object":"event","type":"charge.refunded","data":{"object":{}}}`)

	for _, c := range []struct {
		name      string
		body      []byte
		signature string
		status    int
		code      string
	}{
		{"missing signature", body, "", 400, "invalid_signature"},
		{"garbage signature", body, "t=abc,v1=zz", 400, "invalid_signature"},
		{"tampered body", tampered, signed(body, secret, time.Now()), 400, "invalid_signature"},
		{"wrong secret", body, signed(body, "whsec_not_ours", time.Now()), 400, "invalid_signature"},
		{"older than tolerance", body, signed(body, secret, time.Now().Add(-h.cfg.Stripe.WebhookTolerance-time.Minute)), 400, "invalid_signature"},
		{"malformed JSON, valid signature", notJSON, signed(notJSON, secret, time.Now()), 400, "invalid_event"},
		{"not an event, valid signature", notEvent, signed(notEvent, secret, time.Now()), 400, "invalid_event"},
		{"no object id", noObject, signed(noObject, secret, time.Now()), 400, "invalid_event"},
	} {
		r := h.deliver(c.body, c.signature)
		if r.status != c.status || r.errorCode() != c.code {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}
	if n := h.hints(); n != 0 {
		t.Errorf("%d hints stored from rejected deliveries", n)
	}
	if got := h.counter("paymentd_webhooks_total", "result", "rejected"); got != 8 {
		t.Errorf("counted %v rejections, want 8", got)
	}
}

func TestWebhookBodyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := h.cfg.Stripe.WebhookSecret
	big := event("evt_big", "checkout.session.completed", "cs_test_big")
	big = append(big[:len(big)-1], []byte(fmt.Sprintf(`,"padding":"%s"}`, bytes.Repeat([]byte("x"), 2<<20)))...)
	r := h.deliver(big, signed(big, secret, time.Now()))
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "body_too_large" {
		t.Errorf("a 2 MiB delivery = %d %s; want 413", r.status, r.body)
	}
	// Just under the limit is fine.
	fits := event("evt_fits", "checkout.session.completed", "cs_test_fits")
	fits = append(fits[:len(fits)-1], []byte(fmt.Sprintf(`,"padding":"%s"}`, bytes.Repeat([]byte("x"), 500<<10)))...)
	if r := h.deliver(fits, signed(fits, secret, time.Now())); r.status != http.StatusOK {
		t.Errorf("a 500 KiB delivery = %d %s; want 200", r.status, r.body)
	}
	if n := h.count(`SELECT count(*) FROM webhook_hints WHERE event_id = 'evt_big'`); n != 0 {
		t.Errorf("the oversized delivery was stored")
	}
}

func TestWebhookIgnoresUnusedTypes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	body := event("evt_cust", "customer.created", "cus_1")
	r := h.deliver(body, signed(body, h.cfg.Stripe.WebhookSecret, time.Now()))
	var ack map[string]bool
	r.decode(t, &ack)
	if r.status != http.StatusOK || !ack["received"] || !ack["ignored"] {
		t.Errorf("unused type = %d %s; want 200 received+ignored", r.status, r.body)
	}
	if n := h.hints(); n != 0 {
		t.Errorf("an unused event type stored %d hints", n)
	}
	if got := h.counter("paymentd_webhooks_total", "result", "ignored"); got != 1 {
		t.Errorf("counted %v ignored, want 1", got)
	}
}

// Deliveries in flight together are committed together (hintwriter.go),
// yet each is answered as if alone: every event is stored once, exactly one
// of its concurrent deliveries is answered as new and the others as
// duplicates, and a delivery whose hint cannot be stored fails alone.
func TestWebhookConcurrentDeliveriesEachAnsweredAsAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	secret := h.cfg.Stripe.WebhookSecret
	const events, copies = 40, 3
	type delivery struct {
		event string
		body  []byte
	}
	var deliveries []delivery
	for i := range events {
		id := fmt.Sprintf("evt_burst_%02d", i)
		for range copies {
			deliveries = append(deliveries, delivery{id, event(id, "checkout.session.completed", "cs_test_burst")})
		}
	}
	// PostgreSQL refuses a NUL in text: this hint cannot be stored.
	deliveries = append(deliveries, delivery{"bad", event("evt_bad_\x00", "checkout.session.completed", "cs_test_burst")})

	type answer struct {
		event  string
		status int
		ack    map[string]bool
	}
	answers := make([]answer, len(deliveries))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range deliveries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/stripe/webhook", bytes.NewReader(d.body))
			req.Header.Set("Stripe-Signature", signed(d.body, secret, time.Now()))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				answers[i] = answer{event: d.event}
				return
			}
			defer res.Body.Close()
			var ack map[string]bool
			json.NewDecoder(res.Body).Decode(&ack)
			answers[i] = answer{d.event, res.StatusCode, ack}
		}()
	}
	close(start)
	wg.Wait()

	fresh := map[string]int{}
	for _, a := range answers {
		switch {
		case a.event == "bad":
			if a.status != http.StatusInternalServerError {
				t.Errorf("the delivery that cannot be stored = %d; want 500 (Stripe retries it)", a.status)
			}
		case a.status != http.StatusOK || !a.ack["received"]:
			t.Errorf("%s answered %d %v; want 200 received", a.event, a.status, a.ack)
		case !a.ack["duplicate"]:
			fresh[a.event]++
		}
	}
	for i := range events {
		if id := fmt.Sprintf("evt_burst_%02d", i); fresh[id] != 1 {
			t.Errorf("%s answered as new %d times; want once", id, fresh[id])
		}
	}
	if n := h.hints(); n != events {
		t.Errorf("%d hints stored; want %d", n, events)
	}
	if s, d := h.counter("paymentd_webhooks_total", "result", "stored"), h.counter("paymentd_webhooks_total", "result", "duplicate"); s != events || d != events*(copies-1) {
		t.Errorf("counted stored %v duplicate %v; want %d and %d", s, d, events, events*(copies-1))
	}
}
