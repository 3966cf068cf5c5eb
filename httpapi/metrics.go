// HTTP metrics: requests and latency by route pattern and status code.
package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the HTTP and webhook collectors. A nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// Webhooks counts webhook deliveries by result: stored, duplicate,
	// ignored (a type we do not use), rejected (bad signature or body).
	Webhooks *prometheus.CounterVec
}

// NewMetrics registers the HTTP collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "paymentd_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
		}, []string{"route"}),
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_webhooks_total", Help: "Stripe webhook deliveries by result (stored, duplicate, ignored, rejected).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.latency, m.Webhooks)
	return m
}

func (m *Metrics) observe(r *http.Request, status int, d time.Duration) {
	if m == nil {
		return
	}
	route := r.Pattern // the ServeMux pattern that matched, never the raw path
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// webhook counts one webhook delivery.
func (m *Metrics) webhook(result string) {
	if m != nil {
		m.Webhooks.WithLabelValues(result).Inc()
	}
}

// MetricsHandler serves the registry in the Prometheus text format.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
