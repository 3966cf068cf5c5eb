// Work within a pass: objects are reconciled concurrently by a bounded
// set of workers sharing the Stripe client's rate limiter. Per-object
// correctness comes from the row lock and the level-based write, so the
// order in which a pass's objects finish does not matter. A call that fails
// does not hold a worker: Stripe calls made by a pass do not retry within
// themselves; the object is recorded at once (so a restart cannot lose
// it), put on a short in-pass retry queue, and left to a later pass when
// it still fails.
package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/stripeclient"
)

// Defaults of the Options that govern work within a pass.
const (
	defaultConcurrency = 8
	// doneCap bounds the set of objects a pass remembers having done, so a
	// pass over a long history keeps its memory flat; past it, signals
	// about an object already done simply reconcile it again.
	doneCap = 20000
)

// inPassRetries are the delays before each in-pass retry round of the
// objects that failed in a pass; past the last, an object waits for a
// later pass.
var inPassRetries = []time.Duration{250 * time.Millisecond, time.Second}

// objectRetry is how a pass's per-object Stripe calls retry within the
// call: not at all, the retry queue does it without holding a worker.
var objectRetry = stripeclient.Retry{Max: 0}

// listRetry is how a pass's list calls retry within the call: briefly, as
// a page cannot be put aside the way an object can.
var listRetry = stripeclient.Retry{Max: 3, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}

// work is one object for a pass to reconcile.
type work struct {
	id string
	// fresh reconciles it even when the pass already did (a hint always
	// gets a fresh look).
	fresh bool
	// run reconciles it; nil means Reconciler.Object.
	run func(ctx context.Context) error
	// then, when set, runs once the object is resolved for this pass: ok
	// when it reconciled (or had already), not ok when it is left to a
	// later pass. It does not run when the pass was cut short.
	then func(ctx context.Context, ok bool)
	// recorded: a failure of this object is recorded in reconcile_errors
	// (from an earlier pass, or this one) and must be cleared on success.
	recorded bool
}

// workers runs a pass's objects, at most Concurrency at a time.
type workers struct {
	p     *pass
	slots chan struct{}

	mu    sync.Mutex
	retry []work // failed once in this pass; retried by drain
}

func newWorkers(p *pass, n int) *workers {
	return &workers{p: p, slots: make(chan struct{}, n)}
}

// each reconciles items concurrently and returns once every one of them
// has been tried (or ctx ended).
func (w *workers) each(ctx context.Context, items []work) {
	r := w.p.r
	r.backlog.Add(int64(len(items)))
	var wg sync.WaitGroup
	for i, it := range items {
		select {
		case <-ctx.Done():
			r.backlog.Add(-int64(len(items) - i))
			wg.Wait()
			return
		case w.slots <- struct{}{}:
		}
		r.backlog.Add(-1)
		wg.Add(1)
		go func() {
			defer func() { <-w.slots; wg.Done() }()
			w.attempt(ctx, it, false)
		}()
	}
	wg.Wait()
}

// one reconciles a single object in the calling goroutine.
func (w *workers) one(ctx context.Context, it work) {
	w.attempt(ctx, it, false)
}

// attempt reconciles it once. A first failure is recorded and queued for
// an in-pass retry; a failure on the last retry is reported and left to a
// later pass.
func (w *workers) attempt(ctx context.Context, it work, last bool) {
	p := w.p
	if !it.fresh && !p.claim(it.id) {
		if it.then != nil {
			it.then(ctx, true)
		}
		return
	}
	run := it.run
	if run == nil {
		run = func(ctx context.Context) error { return p.r.Object(ctx, it.id, p.rep) }
	}
	p.r.inFlight.Add(1)
	err := run(stripeclient.WithRetry(ctx, objectRetry))
	p.r.inFlight.Add(-1)
	switch {
	case err == nil:
		if it.recorded && !p.opts.DryRun {
			if cerr := p.r.db.ClearReconcileError(ctx, kindOf(it.id), it.id); cerr != nil {
				p.rep.fail(kindOf(it.id), it.id, cerr)
			}
		}
		if it.then != nil {
			it.then(ctx, true)
		}
	case ctx.Err() != nil:
		// Cut short by the end of the pass: not failed, simply not done.
	case !last:
		if !it.recorded {
			it.recorded = p.record(ctx, it.id, err)
		}
		it.fresh = true // the retry must run even though the object is claimed
		w.mu.Lock()
		w.retry = append(w.retry, it)
		w.mu.Unlock()
	default:
		p.r.log.Warn("reconcile object failed; retried by a later pass", "object_id", it.id, "err", err)
		p.rep.fail(kindOf(it.id), it.id, err)
		if it.then != nil {
			it.then(ctx, false)
		}
	}
}

// drain retries, in a few short rounds, the objects that failed in this
// pass; what still fails is left to a later pass.
func (w *workers) drain(ctx context.Context) {
	for round, delay := range inPassRetries {
		w.mu.Lock()
		items := w.retry
		w.retry = nil
		w.mu.Unlock()
		if len(items) == 0 {
			return
		}
		w.p.r.backlog.Add(int64(len(items)))
		select {
		case <-ctx.Done():
			w.p.r.backlog.Add(-int64(len(items)))
			return
		case <-time.After(delay):
		}
		w.p.r.backlog.Add(-int64(len(items)))
		last := round == len(inPassRetries)-1
		var wg sync.WaitGroup
		for _, it := range items {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case w.slots <- struct{}{}:
			}
			wg.Add(1)
			go func() {
				defer func() { <-w.slots; wg.Done() }()
				w.attempt(ctx, it, last)
			}()
		}
		wg.Wait()
	}
}

// claim marks id done for this pass; it reports false when it already was.
func (p *pass) claim(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done[id] {
		return false
	}
	if len(p.done) < doneCap {
		p.done[id] = true
	}
	return true
}

// isDone reports whether the pass already reconciled id.
func (p *pass) isDone(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done[id]
}

// record records a failure for later passes (see recordFailure) and
// reports whether it was recorded. Nothing is recorded in a dry run or
// when the pass was cut short.
func (p *pass) record(ctx context.Context, id string, err error) bool {
	if p.opts.DryRun || ctx.Err() != nil {
		return false
	}
	if rerr := p.r.recordFailure(ctx, id, err); rerr != nil {
		p.unrecorded.Store(true)
		p.r.log.Error("record reconcile error", "object_id", id, "err", rerr)
		return false
	}
	return true
}
