// Metrics: pass durations, objects seen, and what was healed that no
// webhook had announced.
package reconcile

import (
	"sync/atomic"
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
	// src is the reconciler the progress gauges read.
	src atomic.Pointer[Reconciler]
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
	gauge := func(name, help string, value func(Progress) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if r := m.src.Load(); r != nil {
				return value(r.Progress())
			}
			return 0
		}))
	}
	gauge("paymentd_reconcile_in_flight", "Stripe objects being reconciled right now.",
		func(p Progress) float64 { return float64(p.InFlight) })
	gauge("paymentd_reconcile_backlog", "Stripe objects a running pass has queued (or put on its retry queue) and not yet compared.",
		func(p Progress) float64 { return float64(p.Backlog) })
	gauge("paymentd_reconcile_objects_per_second", "Objects compared per second by the running polling pass (or the last one).",
		func(p Progress) float64 { return p.PerSecond })
	gauge("paymentd_reconcile_pass_objects_seen", "Objects compared so far by the running polling pass (or the last one).",
		func(p Progress) float64 { return float64(p.Seen) })
	gauge("paymentd_reconcile_walk_done_ratio", "Share of the current list's window the running walk has covered (0 outside a walk).",
		func(p Progress) float64 {
			if !p.Running {
				return 0
			}
			return p.Done
		})
	gauge("paymentd_reconcile_walk_remaining_seconds", "Estimated time left in the current list of the running walk (0 when unknown).",
		func(p Progress) float64 {
			if !p.Running {
				return 0
			}
			return p.Remaining.Seconds()
		})
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

// bind points the progress gauges at r.
func (m *Metrics) bind(r *Reconciler) {
	if m != nil {
		m.src.Store(r)
	}
}
