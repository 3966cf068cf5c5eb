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
		if _, err := c.AddFunc(spec, func() { r.scheduled(ctx, name, opts) }); err != nil {
			return fmt.Errorf("schedule %s pass %q: %w", name, spec, err)
		}
	}
	sched, _ := config.ScheduleParser.Parse(s.Incremental)
	now := time.Now()
	r.interval.Store(int64(sched.Next(now).Sub(now)))
	c.Start()
	r.listenHints(ctx)
	<-c.Stop().Done()
	return nil
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

func (r *Reconciler) listenOnce(ctx context.Context) error {
	conn, err := r.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+store.HintsChannel); err != nil {
		return err
	}
	defer func() {
		if ctx.Err() != nil {
			conn.Conn().Close(context.Background()) // its state is unknown after a canceled wait
		}
	}()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		// Gather the burst: redeliveries and related events arrive together.
		burst, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		for {
			if _, err := conn.Conn().WaitForNotification(burst); err != nil {
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.scheduled(ctx, "hints", HintsOnly)
	}
}

// Stalled says what is wrong when the incremental pass has not finished
// (run, or skipped because another replica polls) for three intervals.
func (r *Reconciler) Stalled(now time.Time) string {
	interval := time.Duration(r.interval.Load())
	if interval <= 0 {
		return ""
	}
	last, ok := r.lastPass.get("incremental")
	if !ok {
		last = r.started
	}
	if now.Sub(last) > 3*interval {
		return fmt.Sprintf("no incremental pass finished since %s (interval %s)", last.Format(time.RFC3339), interval)
	}
	return ""
}

// cronLogger adapts slog to cron's logger.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
