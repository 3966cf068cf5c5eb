package stripeclient

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestThrottleSlowsOnManyRateLimitsNotOnAFew(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newThrottle(100, 100, func() time.Time { return now })
	// second runs one second of calls, limited of them answered 429.
	second := func(calls, limited int) float64 {
		for i := range calls {
			th.observe(i < limited)
		}
		now = now.Add(time.Second)
		th.observe(false) // the first call of the next second closes the window
		return float64(th.limiter.Limit())
	}
	for range 10 {
		if got := second(100, 10); got != 100 {
			t.Fatalf("10%% stray 429s slowed the client to %v", got)
		}
	}
	if got := second(100, 2); got != 100 {
		t.Fatalf("two 429s slowed the client to %v", got)
	}
	got := second(100, 40)
	if got != 70 {
		t.Fatalf("after a second of 40%% 429s the rate is %v, want 70", got)
	}
	for range 20 {
		got = second(100, 50)
	}
	if got != 1 {
		t.Errorf("under a lasting rate limit the rate is %v, want the floor of 1", got)
	}
	for range 60 {
		got = second(int(got)+1, 0)
	}
	if got != 100 {
		t.Errorf("after the 429s stopped the rate is back to %v, want 100", got)
	}
}

func TestACallSiteChoosesItsRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	status := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if s := status.Load(); s == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "30")
		}
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(`{"error":{"type":"api_error","message":"down"}}`))
	}))
	defer srv.Close()
	sc := New(Options{SecretKey: "sk_test_x", APIBase: srv.URL, BackoffBase: time.Millisecond, RateLimit: 100})
	get := func(ctx context.Context) int32 {
		calls.Store(0)
		p := &chargeParams{}
		p.Context = ctx
		_, _ = sc.Charges.Get("ch_1", &p.ChargeParams)
		return calls.Load()
	}
	status.Store(http.StatusInternalServerError)
	if n := get(context.Background()); n != 5 {
		t.Errorf("the client's default made %d calls, want 1 + 4 retries", n)
	}
	if n := get(WithRetry(context.Background(), Retry{})); n != 1 {
		t.Errorf("a call site asking for no retries made %d calls", n)
	}
	if n := get(WithRetry(context.Background(), Retry{Max: 2})); n != 3 {
		t.Errorf("a call site asking for 2 retries made %d calls", n)
	}
	status.Store(http.StatusTooManyRequests)
	start := time.Now()
	if n := get(WithRetry(context.Background(), Retry{Max: 3, BackoffMax: time.Second})); n != 1 || time.Since(start) > 5*time.Second {
		t.Errorf("a 429 asking for 30s at a call site that waits 1s at most: %d calls in %s", n, time.Since(start))
	}
}

// chargeParams wraps stripe-go's params so the test sets their context.
type chargeParams struct{ stripe.ChargeParams }

// countingStringer counts how often it is formatted.
type countingStringer struct{ n *int }

func (c countingStringer) String() string { *c.n++; return "a large response body" }

func TestStripeDebugLinesAreNotFormattedWhenDebugIsOff(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	l := leveledLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	n := 0
	l.Debugf("Response: %s", countingStringer{&n})
	l.Infof("Requesting %s", countingStringer{&n})
	if n != 0 || buf.Len() != 0 {
		t.Errorf("disabled lines were formatted %d times: %q", n, buf.String())
	}
	l.Warnf("retrying %s", countingStringer{&n})
	if n != 1 || !strings.Contains(buf.String(), "stripe: retrying a large response body") {
		t.Errorf("an enabled line: formatted %d times, logged %q", n, buf.String())
	}
}
