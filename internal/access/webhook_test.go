// Tests of the outbound webhook against an httptest receiver, with the
// signature checked by the independent Standard Webhooks Go library.

package access_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/steps"
)

// testSecret is a Standard Webhooks secret: whsec_ and a base64 key.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// delivery is one request the receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is an httptest webhook endpoint answering queued statuses (then
// 204) and recording every delivery.
type receiver struct {
	srv *httptest.Server

	mu        sync.Mutex
	responses []func(http.ResponseWriter)
	got       []delivery
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body})
		var respond func(http.ResponseWriter)
		if len(rc.responses) > 0 {
			respond, rc.responses = rc.responses[0], rc.responses[1:]
		}
		rc.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) then(respond func(http.ResponseWriter)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.responses = append(rc.responses, respond)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func newTestWebhook(t *testing.T, rc *receiver, clock func() time.Time) *access.Webhook {
	t.Helper()
	wh, err := access.NewWebhook(access.WebhookOptions{
		URL: rc.srv.URL + "/hooks/paymentd", Secret: testSecret, HTTPClient: rc.srv.Client(), Clock: clock,
	})
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return wh
}

func sampleGrant() access.Grant {
	return access.Grant{
		PurchaseID: "pur_1", UserID: "u_1", Email: "alice@example.com", ProductKey: "pro",
		GitHubUsername: "alice", AmountTotal: 4900, Currency: "usd", Event: access.EventPurchaseCompleted,
	}
}

func TestWebhookVerifiedByStandardWebhooks(t *testing.T) {
	rc := newReceiver(t)
	// The library checks the timestamp against the wall clock.
	now := time.Now().Truncate(time.Second)
	wh := newTestWebhook(t, rc, func() time.Time { return now })

	if err := wh.Send(context.Background(), access.EventPurchaseCompleted, "step_42_key", sampleGrant()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	d := got[0]

	verifier, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatalf("standardwebhooks.NewWebhook: %v", err)
	}
	if err := verifier.Verify(d.body, d.header); err != nil {
		t.Fatalf("standard-webhooks rejected our signature: %v", err)
	}
	tampered := bytes.Replace(d.body, []byte("4900"), []byte("9900"), 1)
	if bytes.Equal(tampered, d.body) {
		t.Fatal("tampering did not change the body")
	}
	if err := verifier.Verify(tampered, d.header); err == nil {
		t.Fatal("standard-webhooks accepted a tampered body")
	}
	other, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("another key")))
	if err := other.Verify(d.body, d.header); err == nil {
		t.Fatal("standard-webhooks accepted the signature under another secret")
	}

	// Headers as the spec names them.
	if id := d.header.Get("webhook-id"); id != "step_42_key" {
		t.Errorf("webhook-id = %q", id)
	}
	if ts := d.header.Get("webhook-timestamp"); ts != strconv.FormatInt(now.Unix(), 10) {
		t.Errorf("webhook-timestamp = %q, want %d", ts, now.Unix())
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	// The signature equals the library's own for the same message.
	want, _ := verifier.Sign("step_42_key", now, d.body)
	if sig := d.header.Get("webhook-signature"); sig != want {
		t.Errorf("webhook-signature = %q, library signs %q", sig, want)
	}

	var body struct {
		Type      string       `json:"type"`
		Timestamp string       `json:"timestamp"`
		Data      access.Grant `json:"data"`
	}
	if err := json.Unmarshal(d.body, &body); err != nil {
		t.Fatalf("body %s: %v", d.body, err)
	}
	if body.Type != "purchase.completed" || body.Data != sampleGrant() {
		t.Errorf("body = %+v", body)
	}
	if ts, err := time.Parse(time.RFC3339, body.Timestamp); err != nil || !ts.Equal(now) {
		t.Errorf("timestamp = %q (%v), want %s", body.Timestamp, err, now.Format(time.RFC3339))
	}
}

func TestWebhookServerErrorRetriesWithSameID(t *testing.T) {
	rc := newReceiver(t)
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	wh := newTestWebhook(t, rc, clock)
	rc.then(func(w http.ResponseWriter) { http.Error(w, "database down", http.StatusInternalServerError) })

	err := wh.Send(context.Background(), access.EventPurchaseRefunded, "refund:pur_1", sampleGrant())
	assertPlain(t, "Send after 500", err)

	now = now.Add(time.Minute) // the retry happens later
	if err := wh.Send(context.Background(), access.EventPurchaseRefunded, "refund:pur_1", sampleGrant()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	if a, b := got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"); a != "refund:pur_1" || a != b {
		t.Fatalf("webhook-id across retries = %q, %q; want both refund:pur_1", a, b)
	}
	verifier, _ := standardwebhooks.NewWebhook(testSecret)
	if err := verifier.Verify(got[1].body, got[1].header); err != nil {
		t.Fatalf("retry's signature: %v", err)
	}
}

func TestWebhookStatuses(t *testing.T) {
	retryAt := time.Date(2024, 3, 1, 12, 5, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		respond   func(http.ResponseWriter)
		wantErr   bool
		wantDelay time.Duration // 0: no RetryAfter
	}{
		{"200", func(w http.ResponseWriter) { w.WriteHeader(200) }, false, 0},
		{"202", func(w http.ResponseWriter) { w.WriteHeader(202) }, false, 0},
		{"429 seconds", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, true, 120 * time.Second},
		{"503 date", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", retryAt.Format(http.TimeFormat))
			w.WriteHeader(503)
		}, true, 5 * time.Minute},
		{"429 without Retry-After", func(w http.ResponseWriter) { w.WriteHeader(429) }, true, 0},
		{"400", func(w http.ResponseWriter) { w.WriteHeader(400) }, true, 0},
		{"410", func(w http.ResponseWriter) { w.WriteHeader(410) }, true, 0},
		{"302 not followed", func(w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere") // answered 204 if followed
			w.WriteHeader(302)
		}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t)
			wh := newTestWebhook(t, rc, testNow)
			rc.then(tc.respond)
			err := wh.Send(context.Background(), access.EventPurchasePartiallyRefunded, "k", sampleGrant())
			switch {
			case !tc.wantErr:
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
			case tc.wantDelay != 0:
				d, ok := steps.RetryDelay(err)
				if !ok || d != tc.wantDelay || steps.IsPermanent(err) {
					t.Fatalf("Send = %v (delay %v), want RetryAfter %v", err, d, tc.wantDelay)
				}
			default:
				assertPlain(t, "Send", err)
			}
		})
	}
}

func TestWebhookTransportErrorIsRetryable(t *testing.T) {
	rc := newReceiver(t)
	wh := newTestWebhook(t, rc, nil)
	rc.srv.Close()
	assertPlain(t, "Send to a closed receiver", wh.Send(context.Background(), access.EventPurchaseCompleted, "k", sampleGrant()))
}

func TestWebhookRejectsBadInput(t *testing.T) {
	rc := newReceiver(t)
	wh := newTestWebhook(t, rc, nil)
	ctx := context.Background()
	for name, err := range map[string]error{
		"no event":      wh.Send(ctx, "", "k", sampleGrant()),
		"no id":         wh.Send(ctx, access.EventPurchaseCompleted, "", sampleGrant()),
		"newline in id": wh.Send(ctx, access.EventPurchaseCompleted, "a\nb", sampleGrant()),
		"bad payload":   wh.Send(ctx, access.EventPurchaseCompleted, "k", func() {}),
	} {
		if !steps.IsPermanent(err) {
			t.Errorf("%s: Send = %v, want permanent", name, err)
		}
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("%d deliveries for bad input", n)
	}

	for _, opts := range []access.WebhookOptions{
		{URL: rc.srv.URL, Secret: "whsec_not base64!"},
		{URL: rc.srv.URL, Secret: ""},
		{URL: "example.com/hook", Secret: testSecret},
	} {
		if _, err := access.NewWebhook(opts); err == nil {
			t.Errorf("NewWebhook(%+v) succeeded", opts)
		}
	}
}
