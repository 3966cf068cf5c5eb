// Progress: where the running pass stands, for the progress line of
// `paymentd reconcile` on a terminal and for the metrics: objects seen,
// their rate, and for a walk of the lists how much of it is behind and an
// estimate of the time left.
package reconcile

import (
	"sync"
	"time"

	"github.com/paymentd/paymentd/store"
)

// Progress is a snapshot of the running (or last) polling pass.
type Progress struct {
	Pass    string
	Running bool
	// Seen is how many Stripe objects the pass has compared.
	Seen int64
	// Elapsed is how long the pass has run, and PerSecond its rate.
	Elapsed   time.Duration
	PerSecond float64
	// Phase is the list being walked ("" outside a walk of the lists).
	Phase store.WalkPhase
	// Done is the share (0..1) of the phase's window behind the walk: the
	// lists run newest first, from when the walk began back to the start
	// of its window, so the creation time of the last object listed says
	// how far it has come. Remaining extrapolates the phase's time left
	// from it (0 while unknown).
	Done      float64
	Remaining time.Duration
	// InFlight is how many objects are being reconciled right now, and
	// Backlog how many the pass has queued but not yet compared.
	InFlight, Backlog int64
}

// progress tracks the running polling pass.
type progress struct {
	mu        sync.Mutex
	pass      string
	running   bool
	start     time.Time
	end       time.Time
	rep       *Report
	phase     store.WalkPhase
	done      float64
	remaining time.Duration
}

func (pr *progress) begin(name string, start time.Time, rep *Report) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.pass, pr.running, pr.start, pr.end, pr.rep = name, true, start, time.Time{}, rep
	pr.phase, pr.done, pr.remaining = "", 0, 0
}

func (pr *progress) finish() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.running, pr.end = false, time.Now()
}

// walked notes a page of the walk written: its place, the oldest creation
// time on the page, and when the phase began (wall clock).
func (pr *progress) walked(w store.Walk, oldest int64, phaseStart time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.phase != w.Phase {
		pr.phase, pr.done, pr.remaining = w.Phase, 0, 0
	}
	span := w.StartedAt.Sub(w.Since)
	if oldest <= 0 || span <= 0 {
		return
	}
	covered := w.StartedAt.Sub(time.Unix(oldest, 0))
	pr.done = min(max(float64(covered)/float64(span), 0), 1)
	if pr.done > 0 {
		elapsed := time.Since(phaseStart)
		pr.remaining = time.Duration(float64(elapsed) * (1 - pr.done) / pr.done)
	}
}

// Progress reports where the running polling pass stands (or where the
// last one ended).
func (r *Reconciler) Progress() Progress {
	pr := &r.progress
	pr.mu.Lock()
	out := Progress{Pass: pr.pass, Running: pr.running, Phase: pr.phase, Done: pr.done, Remaining: pr.remaining}
	rep, start, end := pr.rep, pr.start, pr.end
	pr.mu.Unlock()
	if rep != nil {
		rep.mu.Lock()
		out.Seen = int64(rep.Seen)
		rep.mu.Unlock()
	}
	if !start.IsZero() {
		if out.Running {
			end = time.Now()
		}
		out.Elapsed = end.Sub(start)
		if s := out.Elapsed.Seconds(); s > 0 {
			out.PerSecond = float64(out.Seen) / s
		}
	}
	out.InFlight, out.Backlog = r.inFlight.Load(), r.backlog.Load()
	return out
}
