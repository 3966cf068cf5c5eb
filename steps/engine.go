// The engine: a dispatcher claims due steps for free worker slots, workers
// run handlers and record outcomes, a listener wakes the dispatcher when new
// work is committed, and a rescuer returns steps whose worker died.
package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

// Config tunes the engine. Zero values take the defaults noted.
type Config struct {
	Workers       int           // concurrent handlers; default 8
	Lease         time.Duration // how long a claim lasts; default 5m
	PollInterval  time.Duration // fallback poll when no notification comes; default 1s
	BackoffBase   time.Duration // first retry delay; default 10s
	BackoffMax    time.Duration // retry delay cap; default 1h
	MaxAttempts   int           // attempts before a step fails; default 10
	ShutdownGrace time.Duration // how long in-flight steps may finish on shutdown; default 15s
	// Jitter spreads retry delays by ±Jitter of the delay; default 0.2.
	Jitter float64
	// Owner names this engine in leases; default host:pid:random.
	Owner string
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	def(&c.Lease, 5*time.Minute)
	def(&c.PollInterval, time.Second)
	def(&c.BackoffBase, 10*time.Second)
	def(&c.BackoffMax, time.Hour)
	def(&c.ShutdownGrace, 15*time.Second)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Jitter <= 0 || c.Jitter >= 1 {
		c.Jitter = 0.2
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s:%d:%04x", host, os.Getpid(), rand.IntN(1<<16))
	}
}

// Engine runs steps. Register handlers, then Run.
type Engine struct {
	db       *store.DB
	clock    clock.Clock
	log      *slog.Logger
	cfg      Config
	metrics  *Metrics
	handlers map[string]Handler
	wake     broadcast
}

// New returns an engine over db. metrics may be nil.
func New(db *store.DB, clk clock.Clock, log *slog.Logger, cfg Config, metrics *Metrics) *Engine {
	cfg.defaults()
	return &Engine{db: db, clock: clk, log: log, cfg: cfg, metrics: metrics,
		handlers: map[string]Handler{}, wake: broadcast{ch: make(chan struct{})}}
}

// Register sets the handler for steps named name. Call before Run.
func (e *Engine) Register(name string, h Handler) { e.handlers[name] = h }

// Wake makes idle workers look for due steps now.
func (e *Engine) Wake() { e.wake.signal() }

// broadcast wakes every waiter at once: wait returns a channel that the
// next signal closes.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) signal() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// Run claims and runs steps until ctx ends, then stops claiming and lets
// in-flight steps finish within ShutdownGrace; those still running then are
// handed back without spending an attempt.
func (e *Engine) Run(ctx context.Context) error {
	// Handlers run under their own context, canceled only when the grace
	// period after shutdown has passed.
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); e.listen(ctx) }()
	go func() { defer bg.Done(); e.rescueLoop(ctx) }()

	var workers sync.WaitGroup
	for range e.cfg.Workers {
		workers.Add(1)
		go func() { defer workers.Done(); e.work(ctx, hardCtx) }()
	}
	<-ctx.Done()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.cfg.ShutdownGrace):
		e.log.Warn("shutdown grace over; handing back in-flight steps")
		hardStop()
		<-done
	}
	bg.Wait()
	return nil
}

// RunDue runs due steps in the calling goroutine until none is due, and
// returns how many it ran. Tests and one-off commands use it with an
// injected clock instead of Run.
func (e *Engine) RunDue(ctx context.Context) (int, error) {
	ran := 0
	for {
		if _, err := e.rescue(ctx); err != nil {
			return ran, err
		}
		claimed, err := e.db.ClaimSteps(ctx, e.cfg.Owner, e.clock.Now(), e.cfg.Lease, e.cfg.Workers)
		if err != nil {
			return ran, err
		}
		if len(claimed) == 0 {
			return ran, nil
		}
		var wg sync.WaitGroup
		for _, s := range claimed {
			wg.Add(1)
			go func() { defer wg.Done(); e.execute(ctx, s, false) }()
		}
		wg.Wait()
		ran += len(claimed)
	}
}

// work is one worker: claim a due step, run it, repeat; when nothing is
// due, wait for a wake-up (a notification or a finished step) or the poll
// interval. Each worker claims for itself, so claims run concurrently.
func (e *Engine) work(ctx, hardCtx context.Context) {
	poll := time.NewTimer(e.cfg.PollInterval)
	defer poll.Stop()
	var next []store.Step // claimed together with the last completion
	for ctx.Err() == nil {
		woken := e.wake.wait() // taken before claiming, so no wake-up is missed
		claimed := next
		if len(claimed) == 0 {
			var err error
			claimed, err = e.db.ClaimSteps(ctx, e.cfg.Owner, e.clock.Now(), e.cfg.Lease, 1)
			if err != nil && ctx.Err() == nil {
				e.log.Error("claim steps", "err", err)
			}
		}
		if len(claimed) > 0 {
			next = e.execute(hardCtx, claimed[0], ctx.Err() == nil)
			continue
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(e.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-woken:
		case <-poll.C:
		}
	}
	// Shutting down: a step claimed with the last completion never started.
	for _, s := range next {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if _, err := e.db.ReleaseStep(rctx, s.ID, e.cfg.Owner, e.clock.Now()); err != nil {
			e.log.Error("release step at shutdown", "step_id", s.ID, "err", err)
		}
		cancel()
	}
}

// execute runs one claimed step and records its outcome. When claimNext is
// set and the step succeeds, it claims the worker's next step in the same
// round trip and returns it.
func (e *Engine) execute(ctx context.Context, s store.Step, claimNext bool) []store.Step {
	job := &Job{
		ID: s.ID, Pipeline: s.Pipeline, Name: s.Name, Attempt: s.Attempts, MaxAttempts: s.MaxAttempts,
		Args: s.Args, IdempotencyKey: idempotencyKey(s), db: e.db,
	}
	attrs := []any{"step_id", s.ID, "step", s.Name, "pipeline", s.Pipeline, "attempt", s.Attempts}
	if s.PurchaseID != nil {
		job.PurchaseID = *s.PurchaseID
		attrs = append(attrs, "purchase_id", job.PurchaseID)
	}
	job.Logger = e.log.With(attrs...)

	started := time.Now()
	result, err := e.call(ctx, job)
	elapsed := time.Since(started)

	// Outcomes are written even while shutting down, with a short deadline of their own.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	outcome, next, werr := e.record(wctx, ctx, s, job, result, err, claimNext)
	if werr != nil {
		job.Logger.Error("record step outcome", "err", werr)
		outcome = "unrecorded"
	}
	e.metrics.observe(s.Name, outcome, elapsed)
	return next
}

func (e *Engine) call(ctx context.Context, job *Job) (result any, err error) {
	h, ok := e.handlers[job.Name]
	if !ok {
		// Another replica (a newer version) may know this step; retry later.
		return nil, fmt.Errorf("no handler registered for step %q on this replica", job.Name)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in step %s: %v\n%s", job.Name, r, debug.Stack())
		}
	}()
	hctx, cancel := context.WithTimeout(ctx, e.cfg.Lease)
	defer cancel()
	return h(hctx, job)
}

// record writes a step's outcome and returns its name for metrics, and the
// next step when claimNext asked for one.
func (e *Engine) record(ctx, runCtx context.Context, s store.Step, job *Job, result any, runErr error,
	claimNext bool) (outcome string, next []store.Step, err error) {
	now := e.clock.Now()
	owner := e.cfg.Owner
	switch {
	case runErr == nil:
		raw, err := json.Marshal(result)
		if err != nil {
			runErr = Permanent(fmt.Errorf("encode result: %w", err))
			break
		}
		var ok bool
		switch {
		case len(job.onCommit) == 0 && claimNext:
			ok, next, err = e.db.CompleteAndClaim(ctx, s, owner, now, raw, e.cfg.Lease)
		case len(job.onCommit) == 0:
			ok, err = e.db.CompleteStep(ctx, s, owner, now, raw)
		default:
			err = e.db.InTx(ctx, func(q *store.Queries) error {
				if ok, err = q.CompleteStep(ctx, s, owner, now, raw); err != nil || !ok {
					return err
				}
				return job.commit(ctx, q)
			})
		}
		if err != nil {
			runErr = fmt.Errorf("complete: %w", err)
			break
		}
		if !ok {
			job.Logger.Warn("lost the lease before completing; another worker owns the step")
			return "lost_lease", next, nil
		}
		job.Logger.Debug("step done")
		if s.Blocking {
			e.Wake() // steps that waited for this one may be due
		}
		return "done", next, nil
	case runCtx.Err() != nil:
		// Shutting down past the grace period: hand the step back unspent.
		if _, err := e.db.ReleaseStep(ctx, s.ID, owner, now); err != nil {
			return "", nil, err
		}
		job.Logger.Info("step handed back at shutdown")
		return "released", nil, nil
	}

	errText := runErr.Error()
	if IsPermanent(runErr) || s.Attempts >= s.MaxAttempts {
		err := e.db.InTx(ctx, func(q *store.Queries) error {
			ok, err := q.FailStep(ctx, s.ID, owner, now, errText)
			if err != nil || !ok {
				return err
			}
			return e.scheduleAlert(ctx, q, s, errText)
		})
		if err != nil {
			return "", nil, err
		}
		job.Logger.Error("step failed", "err", runErr, "permanent", IsPermanent(runErr))
		return "failed", nil, nil
	}
	delay, requested := RetryDelay(runErr)
	if !requested {
		delay = e.Backoff(s.Attempts)
	}
	if _, err := e.db.RetryStep(ctx, s.ID, owner, now, now.Add(delay), errText); err != nil {
		return "", nil, err
	}
	job.Logger.Warn("step will retry", "err", runErr, "retry_in", delay.String())
	e.metrics.retried(s.Name)
	return "retry", nil, nil
}

// scheduleAlert records an operator alert for a step that failed for good.
// An alert that itself fails is only logged, never alerted again.
func (e *Engine) scheduleAlert(ctx context.Context, q *store.Queries, s store.Step, errText string) error {
	if s.Name == AlertStep {
		return nil
	}
	purchase := ""
	if s.PurchaseID != nil {
		purchase = *s.PurchaseID
	}
	_, err := e.Schedule(ctx, q, Pipeline{
		PurchaseID: purchase,
		Name:       "alert:" + strconv.FormatInt(s.ID, 10),
		Steps: []Step{{Name: AlertStep, Args: AlertArgs{
			StepID: s.ID, PurchaseID: purchase, Pipeline: s.Pipeline, Step: s.Name,
			Attempts: s.Attempts, LastError: errText,
		}}},
	})
	return err
}

// AlertArgs is the input of an operator_alert step.
type AlertArgs struct {
	StepID     int64  `json:"step_id"`
	PurchaseID string `json:"purchase_id,omitempty"`
	Pipeline   string `json:"pipeline"`
	Step       string `json:"step"`
	Attempts   int    `json:"attempts"`
	LastError  string `json:"last_error"`
}

// Backoff returns the delay before retrying after attempt (1-based):
// BackoffBase doubled per attempt, capped at BackoffMax, spread by ±Jitter.
func (e *Engine) Backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(e.cfg.BackoffBase) * math.Pow(2, float64(attempt-1))
	if d > float64(e.cfg.BackoffMax) {
		d = float64(e.cfg.BackoffMax)
	}
	d *= 1 + e.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(d)
}

// rescue returns lapsed leases to the queue and alerts on steps that had no
// attempts left.
func (e *Engine) rescue(ctx context.Context) (int, error) {
	var rescued []store.Step
	err := e.db.InTx(ctx, func(q *store.Queries) error {
		var err error
		if rescued, err = q.RescueExpiredSteps(ctx, e.clock.Now()); err != nil {
			return err
		}
		for _, s := range rescued {
			if s.Status == store.StepFailed {
				if err := e.scheduleAlert(ctx, q, s, *s.LastError); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for _, s := range rescued {
		e.log.Warn("rescued step whose lease lapsed", "step_id", s.ID, "step", s.Name, "status", s.Status)
	}
	if len(rescued) > 0 {
		e.Wake()
	}
	return len(rescued), err
}

func (e *Engine) rescueLoop(ctx context.Context) {
	interval := e.cfg.Lease / 4
	if interval > time.Minute {
		interval = time.Minute
	}
	if interval < e.cfg.PollInterval {
		interval = e.cfg.PollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := e.rescue(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("rescue steps", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// listen wakes the dispatcher on every notification on the steps channel,
// reconnecting after errors; polling covers the gaps.
func (e *Engine) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := e.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("steps listener disconnected; polling until it reconnects", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.PollInterval * 5):
		}
	}
}

func (e *Engine) listenOnce(ctx context.Context) error {
	return e.db.Listen(ctx, store.StepsChannel, func(string) { e.Wake() })
}
