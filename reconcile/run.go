// Run: cron triggers the passes and webhook hints trigger targeted ones;
// the passes themselves are RunPass, which tests call directly.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/robfig/cron/v3"
)

// Schedules are the cron specs of the scheduled passes.
type Schedules struct {
	Incremental, Deep, Access string
}

// Run runs scheduled passes and hint-triggered passes until ctx ends.
func (r *Reconciler) Run(ctx context.Context, s Schedules) error {
	c := cron.New(cron.WithLocation(time.UTC), cron.WithParser(config.ScheduleParser), cron.WithLogger(cronLogger{r.log}),
		cron.WithChain(cron.Recover(cronLogger{r.log}), cron.SkipIfStillRunning(cronLogger{r.log})))
	for name, spec := range map[string]string{"incremental": s.Incremental, "deep": s.Deep, "access": s.Access} {
		opts := map[string]PassOptions{"incremental": Incremental, "deep": Deep, "access": AccessDrift}[name]
		opts.Budget = r.opts.PassBudget
		if _, err := c.AddFunc(spec, func() { r.scheduled(ctx, name, opts) }); err != nil {
			return fmt.Errorf("schedule %s pass %q: %w", name, spec, err)
		}
	}
	sched, _ := config.ScheduleParser.Parse(s.Incremental)
	now := time.Now()
	interval := sched.Next(now).Sub(now)
	r.interval.Store(int64(interval))
	c.Start()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watchStalls(ctx, interval)
	}()
	r.listenHints(ctx)
	<-c.Stop().Done()
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

func (r *Reconciler) scheduled(ctx context.Context, name string, o PassOptions) {
	if ctx.Err() != nil {
		return
	}
	if _, err := r.RunPass(ctx, name, o); err != nil && !errors.Is(err, ErrLocked) && ctx.Err() == nil {
		r.log.Error("reconcile pass failed", "pass", name, "err", err)
	}
}

// listenHints runs a hints pass shortly after each new webhook hint,
// coalescing a burst into one pass; polling by the incremental pass covers
// any notification missed while disconnected.
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

// listenOnce runs hints passes while the listener is connected. A
// notification only raises a flag; one goroutine runs the passes, so a
// burst of hints (redeliveries, related events) coalesces into one pass.
func (r *Reconciler) listenOnce(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	lctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		for {
			select {
			case <-lctx.Done():
				return
			case <-kick:
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
