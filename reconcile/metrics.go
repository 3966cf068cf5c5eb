// Metrics: pass durations, objects seen, and what was healed that no
// webhook had announced.
package reconcile

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the reconciler's collectors. A nil *Metrics records nothing.
type Metrics struct {
	passes   *prometheus.HistogramVec
	seen     *prometheus.CounterVec
	healed   *prometheus.CounterVec
	errors   *prometheus.CounterVec
	lastPass *prometheus.GaugeVec
	skipped  *prometheus.CounterVec
	success  prometheus.Gauge
}

// NewMetrics registers the reconciler's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		passes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "paymentd_reconcile_pass_duration_seconds", Help: "Reconcile pass duration by pass kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"pass"}),
		seen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_reconcile_objects_seen_total", Help: "Stripe objects compared with the database, by pass kind.",
		}, []string{"pass"}),
		healed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_reconcile_healed_total",
			Help: "Changes the reconciler made that no webhook had announced (missed webhooks), by object kind.",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_reconcile_errors_total", Help: "Objects that failed to reconcile, by object kind.",
		}, []string{"kind"}),
		lastPass: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "paymentd_reconcile_last_pass_timestamp_seconds", Help: "When a pass of each kind last finished.",
		}, []string{"pass"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_reconcile_skipped_total",
			Help: "Checkout Sessions seen that are not paymentd's and were left alone, by reason.",
		}, []string{"reason"}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paymentd_reconcile_last_success_timestamp_seconds",
			Help: "When a polling pass (events feed or lists) of this replica last finished without a fatal error; " +
				"0 until one has. Alert on time() - max() across replicas.",
		}),
	}
	reg.MustRegister(m.passes, m.seen, m.healed, m.errors, m.lastPass, m.skipped, m.success)
	return m
}

func (m *Metrics) observe(pass string, rep *Report, d time.Duration, at time.Time) {
	if m == nil {
		return
	}
	m.passes.WithLabelValues(pass).Observe(d.Seconds())
	m.seen.WithLabelValues(pass).Add(float64(rep.Seen))
	for kind, n := range rep.Healed {
		m.healed.WithLabelValues(kind).Add(float64(n))
	}
	for _, e := range rep.Errors {
		m.errors.WithLabelValues(e.Kind).Inc()
	}
	for why, n := range rep.Skipped {
		m.skipped.WithLabelValues(string(why)).Add(float64(n))
	}
	m.lastPass.WithLabelValues(pass).Set(float64(at.Unix()))
}

func (m *Metrics) succeeded(at time.Time) {
	if m != nil {
		m.success.Set(float64(at.Unix()))
	}
}
