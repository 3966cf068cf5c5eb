// Tests of the PostHog capture client against an httptest endpoint.

package access_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/paymentd/paymentd/internal/access"
)

type captured struct {
	method, path, contentType string
	body                      map[string]any
}

func newPostHogServer(t *testing.T, status int) (*httptest.Server, func() []captured) {
	t.Helper()
	var mu sync.Mutex
	var got []captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		c := captured{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type")}
		if err := json.Unmarshal(raw, &c.body); err != nil {
			t.Errorf("body %s: %v", raw, err)
		}
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"status":1}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), got...)
	}
}

func TestPostHogCaptureBody(t *testing.T) {
	srv, got := newPostHogServer(t, 200)
	ph, err := access.NewPostHog(access.PostHogOptions{
		APIKey: "phc_test", Host: srv.URL + "/", HTTPClient: srv.Client(), Clock: testNow,
	})
	if err != nil {
		t.Fatalf("NewPostHog: %v", err)
	}
	id := "0b8f0f7e-7d5c-4f5e-9a1b-2c3d4e5f6a7b"
	props := map[string]any{"product": "pro", "amount": 4900}
	if err := ph.Capture(context.Background(), "u_1", "purchase completed", props, id); err != nil {
		t.Fatalf("Capture: %v", err)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != "POST" || r.path != "/capture/" || r.contentType != "application/json" {
		t.Errorf("request = %s %s (%s), want POST /capture/ JSON", r.method, r.path, r.contentType)
	}
	want := map[string]any{
		"api_key":     "phc_test",
		"event":       "purchase completed",
		"distinct_id": "u_1",
		"timestamp":   "2024-03-01T12:00:00Z",
		"uuid":        id,
	}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
	p, _ := r.body["properties"].(map[string]any)
	if p["product"] != "pro" || p["amount"] != float64(4900) {
		t.Errorf("properties = %v", r.body["properties"])
	}
}

func TestPostHogDerivesStableUUID(t *testing.T) {
	srv, got := newPostHogServer(t, 200)
	ph, err := access.NewPostHog(access.PostHogOptions{APIKey: "phc_test", Host: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewPostHog: %v", err)
	}
	for range 2 {
		if err := ph.Capture(context.Background(), "u_1", "purchase completed", nil, "step:77:capture"); err != nil {
			t.Fatalf("Capture: %v", err)
		}
	}
	reqs := got()
	a, _ := reqs[0].body["uuid"].(string)
	b, _ := reqs[1].body["uuid"].(string)
	if a == "" || a != b || a != access.EventUUID("step:77:capture") {
		t.Fatalf("uuids %q, %q; want both EventUUID(key)", a, b)
	}
	if _, err := uuid.Parse(a); err != nil {
		t.Fatalf("uuid %q: %v", a, err)
	}
	if props, ok := reqs[0].body["properties"].(map[string]any); !ok || len(props) != 0 {
		t.Errorf("properties = %v, want {}", reqs[0].body["properties"])
	}
}

func TestPostHogErrorStatus(t *testing.T) {
	srv, _ := newPostHogServer(t, 500)
	ph, err := access.NewPostHog(access.PostHogOptions{APIKey: "phc_test", Host: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewPostHog: %v", err)
	}
	if err := ph.Capture(context.Background(), "u_1", "e", nil, ""); err == nil {
		t.Fatal("Capture after 500 = nil, want error")
	}
	if _, err := access.NewPostHog(access.PostHogOptions{}); err == nil {
		t.Fatal("NewPostHog without API key succeeded")
	}
}
