// The engine: a dispatcher claims due steps in batches for free worker
// slots and records their successes in batches, workers run handlers under
// a claim whose lease a heartbeat renews, a listener wakes the dispatcher
// when new work is committed, and a rescuer returns steps whose worker died.
package steps

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

// Config tunes the engine. Zero values take the defaults noted.
type Config struct {
	Workers int // concurrent handlers; default 8
	// Lease is how long a claim lasts without renewal, by the database's
	// clock; default 5m. A running handler's lease is renewed every third of
	// it, and the handler is canceled (or, not started yet, not started) if
	// no renewal succeeded for two thirds of it, so it never runs on past
	// its lease.
	Lease time.Duration
	// Timeout bounds one run of a handler, renewals included; default 5m.
	// Past it the handler is canceled and its lease no longer renewed.
	Timeout       time.Duration
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
	def(&c.Timeout, 5*time.Minute)
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
	claims   claims
}

// New returns an engine over db. metrics may be nil.
func New(db *store.DB, clk clock.Clock, log *slog.Logger, cfg Config, metrics *Metrics) *Engine {
	cfg.defaults()
	return &Engine{db: db, clock: clk, log: log, cfg: cfg, metrics: metrics,
		handlers: map[string]Handler{}, wake: broadcast{ch: make(chan struct{})}, claims: claims{m: map[int64]*claim{}}}
}

// Register sets the handler for steps named name. Call before Run.
func (e *Engine) Register(name string, h Handler) { e.handlers[name] = h }

// Wake makes an idle dispatcher look for due steps now.
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
// handed back without spending an attempt. Every outcome is recorded before
// Run returns.
func (e *Engine) Run(ctx context.Context) error {
	// Leases are renewed until every outcome is recorded.
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBeat()
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); e.listen(ctx) }()
	go func() { defer bg.Done(); e.rescueLoop(ctx) }()
	go func() { defer bg.Done(); e.heartbeat(beatCtx) }()

	(&dispatcher{e: e}).run(ctx)
	stopBeat()
	bg.Wait()
	return nil
}

// RunDue runs due steps in the calling goroutine until none is due, and
// returns how many it ran. Tests and one-off commands use it with an
// injected clock instead of Run, never beside it on one engine (Run hands
// back claims of its owner it does not hold); outcomes are recorded one by
// one.
func (e *Engine) RunDue(ctx context.Context) (int, error) {
	beatCtx, stopBeat := context.WithCancel(ctx)
	defer stopBeat()
	go e.heartbeat(beatCtx)
	ran := 0
	for {
		if _, err := e.rescue(ctx); err != nil {
			return ran, err
		}
		claimedAt := e.now()
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
			go func() { defer wg.Done(); e.execute(ctx, s, claimedAt, false) }()
		}
		wg.Wait()
		ran += len(claimed)
	}
}

// rescue returns lapsed leases to the queue and alerts on steps that had no
// attempts left (the steps waiting on those are canceled with them).
func (e *Engine) rescue(ctx context.Context) (int, error) {
	var rescued []store.Step
	err := e.db.InTx(ctx, func(q *store.Queries) error {
		var err error
		if rescued, err = q.RescueExpiredSteps(ctx, e.clock.Now()); err != nil {
			return err
		}
		for _, s := range rescued {
			if s.Status == store.StepFailed {
				if err := e.scheduleAlert(ctx, q, s, *s.FinishedAt, *s.LastError); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, s := range rescued {
		e.log.Warn("rescued step whose lease lapsed", append([]any{"step_id", s.ID, "step", s.Name, "status", s.Status},
			subjectAttrs(subjectOf(s))...)...)
	}
	if len(rescued) > 0 {
		e.Wake()
	}
	return len(rescued), nil
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
