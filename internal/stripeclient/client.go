// Package stripeclient builds the stripe-go client paymentd uses
// everywhere: pointed at a configurable base URL (Stripe, stripe-mock, the
// emulator, a test fake), behind a client-side rate limiter shared by every
// call, honouring 429 Retry-After and backing off on 5xx, with every call
// counted by outcome for metrics. How long a call retries is the call
// site's choice (WithRetry): the API answering a buyer may wait, a
// reconcile pass would rather move on and come back.
package stripeclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"golang.org/x/time/rate"
)

// Options configures a client.
type Options struct {
	SecretKey string
	// APIBase is the API's base URL; "" means api.stripe.com.
	APIBase string
	// RateLimit is the client-side limit in requests per second; 0 means 20.
	RateLimit float64
	// MaxRetries is how many times a 429, a 5xx or a transport error is
	// retried; 0 means 4, -1 none. stripe-go sends every POST with an
	// Idempotency-Key (ours, or a random one), so a retried write is
	// applied at most once by Stripe.
	MaxRetries int
	// BackoffBase is the first 5xx retry delay; 0 means 500ms.
	BackoffBase time.Duration
	// BackoffMax caps a retry delay, Retry-After included; 0 means 20s.
	BackoffMax time.Duration
	Logger     *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Transport is the underlying transport; nil means http.DefaultTransport.
	Transport http.RoundTripper
}

// Timeout bounds one Stripe call, retries included (Stripe's own SDKs use
// 80s). The HTTP server's write timeout is derived from it, so a request
// whose Stripe call succeeds late still gets its answer.
const Timeout = 80 * time.Second

// New returns a stripe-go client configured by opts.
func New(opts Options) *client.API {
	if opts.RateLimit <= 0 {
		opts.RateLimit = 20
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 4
	}
	if opts.MaxRetries < 0 {
		opts.MaxRetries = 0
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 20 * time.Second
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	burst := int(opts.RateLimit)
	if burst < 1 {
		burst = 1
	}
	rt := &transport{next: opts.Transport, throttle: newThrottle(opts.RateLimit, burst, time.Now), opts: opts}
	opts.Metrics.limit(opts.RateLimit)
	cfg := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Transport: rt, Timeout: Timeout},
		MaxNetworkRetries: stripe.Int64(0), // retries happen in the transport, where Retry-After is honoured
		LeveledLogger:     leveledLogger{opts.Logger},
	}
	if opts.APIBase != "" {
		cfg.URL = stripe.String(strings.TrimRight(opts.APIBase, "/"))
	}
	backends := &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	}
	return client.New(opts.SecretKey, backends)
}

// Retry is a call site's retry policy for the Stripe calls made with a
// context (see WithRetry).
type Retry struct {
	// Max is how many times a 429, a 5xx or a transport error is retried
	// within the call; 0 means none: the call fails at once and the caller
	// decides when to try again.
	Max int
	// BackoffBase is the first delay, doubling per retry, and BackoffMax
	// caps it. A 429 whose Retry-After exceeds BackoffMax is not retried
	// within the call.
	BackoffBase, BackoffMax time.Duration
}

type retryKey struct{}

// WithRetry returns a context whose Stripe calls retry as r says instead
// of as the client's Options say.
func WithRetry(ctx context.Context, r Retry) context.Context {
	return context.WithValue(ctx, retryKey{}, r)
}

// transport rate-limits, retries and counts requests.
type transport struct {
	next     http.RoundTripper
	throttle *throttle
	opts     Options
}

// policy is the retry policy of a request: its context's, else the client's.
func (t *transport) policy(ctx context.Context) Retry {
	if r, ok := ctx.Value(retryKey{}).(Retry); ok {
		if r.BackoffBase <= 0 {
			r.BackoffBase = t.opts.BackoffBase
		}
		if r.BackoffMax <= 0 {
			r.BackoffMax = t.opts.BackoffMax
		}
		return r
	}
	return Retry{Max: t.opts.MaxRetries, BackoffBase: t.opts.BackoffBase, BackoffMax: t.opts.BackoffMax}
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	policy := t.policy(ctx)
	retryable := req.Method == http.MethodGet || req.Header.Get("Idempotency-Key") != ""
	for attempt := 0; ; attempt++ {
		if err := t.throttle.wait(ctx); err != nil {
			return nil, err
		}
		r := req.Clone(ctx)
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		resp, err := t.next.RoundTrip(r)
		outcome := classify(resp, err)
		t.opts.Metrics.observe(req.Method, outcome)
		if limit, changed := t.throttle.observe(outcome == "rate_limited"); changed {
			t.opts.Metrics.limit(limit)
			t.opts.Logger.Warn("stripe rate limit adjusted after 429s", "requests_per_second", limit)
		}
		if !retryable || attempt >= policy.Max || (outcome != "rate_limited" && outcome != "server_error" && outcome != "transport_error") {
			return resp, err
		}
		wait := backoff(attempt, policy)
		if resp != nil {
			if ra := retryAfter(resp.Header.Get("Retry-After")); ra > 0 {
				if ra > policy.BackoffMax {
					return resp, err // longer than this call site waits: the caller comes back later
				}
				wait = ra
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		t.opts.Logger.Warn("stripe request will be retried", "method", req.Method, "path", req.URL.Path,
			"outcome", outcome, "attempt", attempt+1, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// backoff is the delay before retry attempt+1: BackoffBase doubled per
// attempt, capped at BackoffMax, with jitter over its upper half.
func backoff(attempt int, p Retry) time.Duration {
	d := p.BackoffBase
	for i := 0; i < attempt && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// throttle is the client-side rate limiter every call shares, slowed when
// Stripe answers 429 to a good share of calls: each second with at least
// 3 429s making a quarter or more of its calls cuts the rate by 30% (down
// to 1 per second), and each second with 429s under an eighth of its calls
// gives back 10%, up to the configured rate. A few stray 429s (Stripe's
// lock contention, a fault) slow nobody; a real rate limit slows everyone.
type throttle struct {
	limiter *rate.Limiter
	max     float64
	now     func() time.Time

	mu            sync.Mutex
	windowStart   time.Time
	calls, limits int
}

func newThrottle(perSecond float64, burst int, now func() time.Time) *throttle {
	return &throttle{limiter: rate.NewLimiter(rate.Limit(perSecond), burst), max: perSecond, now: now, windowStart: now()}
}

func (t *throttle) wait(ctx context.Context) error { return t.limiter.Wait(ctx) }

// observe counts a call's answer and, at the end of each second, adjusts
// the rate; it reports the rate when it changed.
func (t *throttle) observe(rateLimited bool) (float64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if rateLimited {
		t.limits++
	}
	now := t.now()
	if now.Sub(t.windowStart) < time.Second {
		return 0, false
	}
	calls, limits := t.calls, t.limits
	t.windowStart, t.calls, t.limits = now, 0, 0
	cur := float64(t.limiter.Limit())
	next := cur
	switch {
	case limits >= 3 && limits*4 >= calls:
		next = max(cur*0.7, 1)
	case limits*8 < calls && cur < t.max:
		next = min(cur*1.1, t.max)
	}
	if next == cur {
		return 0, false
	}
	t.limiter.SetLimitAt(now, rate.Limit(next))
	return next, true
}

func classify(resp *http.Response, err error) string {
	switch {
	case err != nil:
		return "transport_error"
	case resp.StatusCode == http.StatusTooManyRequests:
		return "rate_limited"
	case resp.StatusCode >= 500:
		return "server_error"
	case resp.StatusCode >= 400:
		return "client_error"
	default:
		return "ok"
	}
}

// retryAfter parses a Retry-After header in seconds (Stripe's form).
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// Metrics counts Stripe calls by method and outcome.
type Metrics struct {
	calls *prometheus.CounterVec
	rate  prometheus.Gauge
}

// NewMetrics registers the Stripe call counter with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paymentd_stripe_requests_total",
		Help: "Stripe API requests by method and outcome (ok, client_error, rate_limited, server_error, transport_error).",
	}, []string{"method", "outcome"}),
		rate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paymentd_stripe_rate_limit",
			Help: "The client-side Stripe rate limit in requests per second, lowered while Stripe answers 429s.",
		})}
	reg.MustRegister(m.calls, m.rate)
	return m
}

func (m *Metrics) limit(perSecond float64) {
	if m != nil {
		m.rate.Set(perSecond)
	}
}

func (m *Metrics) observe(method, outcome string) {
	if m != nil {
		m.calls.WithLabelValues(method, outcome).Inc()
	}
}

// leveledLogger routes stripe-go's own logging to slog at debug level for
// info and below, so routine request lines stay quiet. stripe-go never logs
// the secret key. A line is formatted only when its level is enabled:
// stripe-go's debug lines carry whole response bodies, and formatting
// them to throw them away costs more than decoding them.
type leveledLogger struct{ log *slog.Logger }

func (l leveledLogger) logf(level slog.Level, format string, v ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, "stripe: "+fmt.Sprintf(format, v...))
	}
}

func (l leveledLogger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v...) }
func (l leveledLogger) Infof(format string, v ...any)  { l.logf(slog.LevelDebug, format, v...) }
func (l leveledLogger) Warnf(format string, v ...any)  { l.logf(slog.LevelWarn, format, v...) }
func (l leveledLogger) Errorf(format string, v ...any) { l.logf(slog.LevelError, format, v...) }
