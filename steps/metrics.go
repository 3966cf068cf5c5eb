// Metrics: Prometheus collectors for step outcomes, latency and retries.
package steps

import (
	"context"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
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
			Name: "paymentd_steps_total", Help: "Steps run, by step name and outcome (done, retry, failed, released, lost_lease, unrecorded).",
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

// StatsCollector reports the steps table's backlog at scrape time: steps
// due, running and failed, and the age of the oldest due step.
type StatsCollector struct {
	db      *store.DB
	clock   clock.Clock
	due     *prometheus.Desc
	running *prometheus.Desc
	failed  *prometheus.Desc
	oldest  *prometheus.Desc
}

// NewStatsCollector returns a collector over db; register it with a registry.
func NewStatsCollector(db *store.DB, clk clock.Clock) *StatsCollector {
	return &StatsCollector{
		db: db, clock: clk,
		due:     prometheus.NewDesc("paymentd_steps_due", "Steps due now and not yet claimed.", nil, nil),
		running: prometheus.NewDesc("paymentd_steps_running", "Steps claimed by a worker.", nil, nil),
		failed:  prometheus.NewDesc("paymentd_steps_failed", "Steps that failed for good and await an operator.", nil, nil),
		oldest:  prometheus.NewDesc("paymentd_steps_oldest_due_age_seconds", "How long the oldest due step has waited.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.due
	ch <- c.running
	ch <- c.failed
	ch <- c.oldest
}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := c.clock.Now()
	s, err := c.db.StepStats(ctx, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.due, err)
		return
	}
	age := 0.0
	if s.OldestDue != nil {
		age = now.Sub(*s.OldestDue).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(s.Running))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}
