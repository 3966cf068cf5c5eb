package stripeclient_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stripe/stripe-go/v76"
)

const chargeJSON = `{"id":"ch_1","object":"charge","amount":19900,"amount_refunded":0,"currency":"usd"}`

func TestRetriesHonourRetryAfterAndCountOutcomes(t *testing.T) {
	var calls atomic.Int32
	var firstAt, secondAt time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			firstAt = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"type":"rate_limit_error","message":"slow down"}}`))
		case 2:
			secondAt = time.Now()
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Write([]byte(chargeJSON))
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	metrics := stripeclient.NewMetrics(reg)
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL, BackoffBase: time.Millisecond, Metrics: metrics})
	ch, err := sc.Charges.Get("ch_1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Amount != 19900 || calls.Load() != 3 {
		t.Fatalf("charge %d after %d calls; want 19900 after 3", ch.Amount, calls.Load())
	}
	if gap := secondAt.Sub(firstAt); gap < 900*time.Millisecond {
		t.Errorf("retried after %s; Retry-After asked for 1s", gap)
	}
	for outcome, want := range map[string]float64{"rate_limited": 1, "server_error": 1, "ok": 1} {
		if got := countOutcome(t, reg, outcome); got != want {
			t.Errorf("outcome %s counted %v, want %v", outcome, got, want)
		}
	}
}

func TestPostsAreRetriedWithTheSameIdempotencyKey(t *testing.T) {
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if len(keys) < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":{"type":"api_error","message":"boom"}}`))
			return
		}
		w.Write([]byte(`{"id":"re_1","object":"refund","amount":100,"currency":"usd","status":"succeeded"}`))
	}))
	defer srv.Close()
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL, BackoffBase: time.Millisecond})
	params := &stripe.RefundParams{Charge: stripe.String("ch_1")}
	params.SetIdempotencyKey("paymentd:refund-1")
	if _, err := sc.Refunds.New(params); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] != "paymentd:refund-1" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Errorf("attempts carried idempotency keys %q; want the same key three times", keys)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such coupon"}}`))
	}))
	defer srv.Close()
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_x", APIBase: srv.URL, BackoffBase: time.Millisecond})
	_, err := sc.Charges.Get("ch_x", nil)
	if serr, ok := err.(*stripe.Error); !ok || serr.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("a 400 was sent %d times", calls.Load())
	}
}

func countOutcome(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
