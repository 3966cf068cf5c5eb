// Metrics: Prometheus collectors for step outcomes, latency and retries.
package steps

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the engine's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	outcomes *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the step collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_steps_total", Help: "Steps run, by step name and outcome (done, retry, failed, released, lost_lease).",
		}, []string{"step", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "paymentd_step_duration_seconds", Help: "Time a step handler took, by step name.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"step"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paymentd_step_retries_total", Help: "Step attempts that failed and were rescheduled, by step name.",
		}, []string{"step"}),
	}
	reg.MustRegister(m.outcomes, m.latency, m.retries)
	return m
}

func (m *Metrics) observe(step, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.outcomes.WithLabelValues(step, outcome).Inc()
	m.latency.WithLabelValues(step).Observe(d.Seconds())
}

func (m *Metrics) retried(step string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(step).Inc()
}
