// Package stripeclient builds the stripe-go client paymentd uses
// everywhere: pointed at a configurable base URL (Stripe, stripe-mock, the
// emulator, a test fake), behind a client-side rate limiter, honouring
// 429 Retry-After and backing off on 5xx, with every call counted by
// outcome for metrics.
package stripeclient

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
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
	Logger      *slog.Logger
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
	rt := &transport{next: opts.Transport, limiter: rate.NewLimiter(rate.Limit(opts.RateLimit), burst), opts: opts}
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

// transport rate-limits, retries and counts requests.
type transport struct {
	next    http.RoundTripper
	limiter *rate.Limiter
	opts    Options
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
	retryable := req.Method == http.MethodGet || req.Header.Get("Idempotency-Key") != ""
	for attempt := 0; ; attempt++ {
		if err := t.limiter.Wait(ctx); err != nil {
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
		if !retryable || attempt >= t.opts.MaxRetries || (outcome != "rate_limited" && outcome != "server_error" && outcome != "transport_error") {
			return resp, err
		}
		wait := t.backoff(attempt)
		if resp != nil {
			if ra := retryAfter(resp.Header.Get("Retry-After")); ra > 0 {
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

func (t *transport) backoff(attempt int) time.Duration {
	d := t.opts.BackoffBase << attempt
	if d > 20*time.Second {
		d = 20 * time.Second
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
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
}

// NewMetrics registers the Stripe call counter with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paymentd_stripe_requests_total",
		Help: "Stripe API requests by method and outcome (ok, client_error, rate_limited, server_error, transport_error).",
	}, []string{"method", "outcome"})}
	reg.MustRegister(m.calls)
	return m
}

func (m *Metrics) observe(method, outcome string) {
	if m != nil {
		m.calls.WithLabelValues(method, outcome).Inc()
	}
}

// leveledLogger routes stripe-go's own logging to slog at debug level for
// info and below, so routine request lines stay quiet. stripe-go never logs
// the secret key.
type leveledLogger struct{ log *slog.Logger }

func (l leveledLogger) Debugf(format string, v ...any) {
	l.log.Debug("stripe: " + fmt.Sprintf(format, v...))
}
func (l leveledLogger) Infof(format string, v ...any) {
	l.log.Debug("stripe: " + fmt.Sprintf(format, v...))
}
func (l leveledLogger) Warnf(format string, v ...any) {
	l.log.Warn("stripe: " + fmt.Sprintf(format, v...))
}
func (l leveledLogger) Errorf(format string, v ...any) {
	l.log.Error("stripe: " + fmt.Sprintf(format, v...))
}
