// Run: cron triggers the passes and webhook hints trigger targeted ones;
// the passes themselves are RunPass, which tests call directly.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/robfig/cron/v3"
)

// Schedules are the cron specs of the scheduled passes.
type Schedules struct {
	Incremental, Deep, Access string
}

// Run runs scheduled passes and hint-triggered passes until ctx ends. An
// incremental pass runs at once, so a daemon that was down catches up on
// what it missed instead of a whole interval later, and one that fails as
// a whole runs again soon (rerunSoon).
func (r *Reconciler) Run(ctx context.Context, s Schedules) error {
	c := cron.New(cron.WithLocation(time.UTC), cron.WithParser(config.ScheduleParser), cron.WithLogger(cronLogger{r.log}),
		cron.WithChain(cron.Recover(cronLogger{r.log}), cron.SkipIfStillRunning(cronLogger{r.log})))
	var bg sync.WaitGroup // passes started outside the schedule
	// incremental is the incremental pass through cron's chain (recovered
	// from panics, never beside itself), as the start and reruns run it.
	var incremental cron.Job
	for name, spec := range map[string]string{"incremental": s.Incremental, "deep": s.Deep, "access": s.Access} {
		opts := map[string]PassOptions{"incremental": Incremental, "deep": Deep, "access": AccessDrift}[name]
		opts.Budget = r.opts.PassBudget
		job := func() { r.scheduled(ctx, name, opts) }
		if name == "incremental" {
			job = func() {
				if !r.scheduled(ctx, name, opts) {
					r.pollFailures.Store(0)
					return
				}
				r.rerunSoon(ctx, &bg, incremental, int(r.pollFailures.Add(1)))
			}
		}
		id, err := c.AddFunc(spec, job)
		if err != nil {
			return fmt.Errorf("schedule %s pass %q: %w", name, spec, err)
		}
		if name == "incremental" {
			incremental = c.Entry(id).WrappedJob
		}
	}
	sched, _ := config.ScheduleParser.Parse(s.Incremental)
	now := time.Now()
	interval := sched.Next(now).Sub(now)
	r.interval.Store(int64(interval))
	c.Start()
	bg.Add(1)
	go func() {
		defer bg.Done()
		incremental.Run()
	}()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watchStalls(ctx, interval)
	}()
	r.listenHints(ctx)
	<-c.Stop().Done()
	bg.Wait()
	<-watched
	return nil
}

// watchStalls checks for a stall every interval until ctx ends. It runs
// beside the passes, so a pass that hangs is noticed too.
func (r *Reconciler) watchStalls(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.AlertIfStalled(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("stall check failed", "err", err)
			}
		}
	}
}

// scheduled runs a pass and reports whether it failed as a whole (a list
// call and its retries, the database); a pass skipped because another
// replica polls did not fail.
func (r *Reconciler) scheduled(ctx context.Context, name string, o PassOptions) (failed bool) {
	if ctx.Err() != nil {
		return false
	}
	rep, err := r.RunPass(ctx, name, o)
	if err != nil {
		if !errors.Is(err, ErrLocked) && ctx.Err() == nil {
			r.log.Error("reconcile pass failed", "pass", name, "err", err)
		}
		return false
	}
	return rep.fatal && ctx.Err() == nil
}

// rerunSoon runs a failed incremental pass (job) again after RetryBackoff,
// doubling per failure in a row, rather than a whole interval later: a
// failed list call (Stripe degraded, the database restarting) costs
// seconds. The pass resumes where the failed one stopped (its cursors and
// walks are saved as it goes). Once the backoff reaches the interval, the
// schedule alone runs it; one rerun at most waits at a time.
func (r *Reconciler) rerunSoon(ctx context.Context, bg *sync.WaitGroup, job cron.Job, failures int) {
	delay := retryBackoff(failures, r.opts.RetryBackoff, time.Duration(r.interval.Load()))
	if delay >= time.Duration(r.interval.Load()) || !r.rerunning.CompareAndSwap(false, true) {
		return
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		select {
		case <-ctx.Done():
			r.rerunning.Store(false)
			return
		case <-time.After(delay):
		}
		r.rerunning.Store(false)
		job.Run()
	}()
}

// listenHints runs a targeted pass shortly after each new webhook hint,
// coalescing a burst into one pass, and every RetryBackoff for the objects
// whose retry fell due; polling by the incremental pass covers both while
// disconnected.
func (r *Reconciler) listenHints(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("hints listener disconnected; the incremental pass covers hints meanwhile", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// listenOnce runs targeted passes while the listener is connected. A
// notification only raises a flag; one goroutine runs the passes, so a
// burst of hints (redeliveries, related events) coalesces into one pass.
// A tick every RetryBackoff (the shortest wait of a failed object) runs
// one too, so a failed object is retried when due rather than at the next
// scheduled pass.
func (r *Reconciler) listenOnce(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	lctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		tick := time.NewTicker(r.opts.RetryBackoff)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-kick:
			case <-tick.C:
			}
			select { // gather the burst
			case <-lctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			r.scheduled(ctx, "hints", HintsOnly)
		}
	}()
	err := r.db.Listen(ctx, store.HintsChannel, func(string) {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	stop()
	<-done
	return err
}

// cronLogger adapts slog to cron's logger.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
