// Work within a pass: objects are reconciled concurrently by a bounded
// set of workers sharing the Stripe client's rate limiter. Per-object
// correctness comes from the row lock and the level-based write, so the
// order in which a pass's objects finish does not matter. A call that fails
// does not hold a worker: Stripe calls made by a pass do not retry within
// themselves; the object is recorded at once (so a restart cannot lose
// it), retried a few times within the pass beside the rest of its work,
// and left to a later pass when it still fails.
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

// inPassRetries are the delays before each in-pass retry of an object that
// failed; past the last, it waits for a later pass. Retries run beside the
// pass's other work, in the same workers, so the rate limiter never idles
// while they wait.
var inPassRetries = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond}

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
	// counted: this pass has counted a failure of it (once a pass, however
	// many of its in-pass retries fail).
	counted bool
}

// workers runs a pass's objects, at most Concurrency at a time.
type workers struct {
	p     *pass
	slots chan struct{}
	// ctx is the pass's: retries outlive the part of the pass (a page, a
	// batch of events) whose context failed them, not the pass.
	ctx context.Context
	// retrying counts the objects waiting for, or in, an in-pass retry.
	retrying sync.WaitGroup
}

func newWorkers(ctx context.Context, p *pass, n int) *workers {
	return &workers{p: p, slots: make(chan struct{}, n), ctx: ctx}
}

// each reconciles items concurrently and returns once every one of them
// has been tried: reconciled, or failed and recorded (its in-pass retries
// go on beside what comes next; drain waits for them), or ctx ended.
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
			w.attempt(ctx, it, 0)
		}()
	}
	wg.Wait()
}

// attempt reconciles it once; tries is how many in-pass retries it has had.
// A first failure is recorded (so a restart cannot lose the object), and a
// failure with retries left schedules the next; past the last, the object
// is reported and left to a later pass.
func (w *workers) attempt(ctx context.Context, it work, tries int) {
	p := w.p
	if it.fresh {
		p.take(it.id) // signals about it later in the pass coalesce
	} else if !p.claim(it.id) {
		// Taken up already in this pass (a hint, the feed): a recorded
		// failure is cleared once that reconcile succeeded, without
		// fetching the object again.
		if it.recorded && !p.opts.DryRun && p.reconciled(it.id) {
			if cerr := p.r.db.ClearReconcileError(ctx, kindOf(it.id), it.id); cerr != nil {
				p.rep.fail(kindOf(it.id), it.id, cerr)
			}
		}
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
		p.succeeded(it.id)
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
	case tries < len(inPassRetries):
		p.failedOnce(it.id)
		if !it.counted {
			it.counted = p.record(ctx, it.id, err)
			it.recorded = it.recorded || it.counted
		}
		it.fresh = true // the retry must run though the object is taken
		w.retry(it, tries)
	default:
		p.r.log.Warn("reconcile object failed; retried by a later pass", "object_id", it.id, "err", err)
		p.rep.fail(kindOf(it.id), it.id, err)
		if it.then != nil {
			it.then(ctx, false)
		}
	}
}

// retry tries it again after its in-pass delay, in a worker of its own,
// without holding the caller, for as long as the pass runs.
func (w *workers) retry(it work, tries int) {
	r, ctx := w.p.r, w.ctx
	r.backlog.Add(1)
	w.retrying.Add(1)
	go func() {
		defer w.retrying.Done()
		t := time.NewTimer(inPassRetries[tries])
		defer t.Stop()
		select {
		case <-ctx.Done():
			r.backlog.Add(-1)
			return
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			r.backlog.Add(-1)
			return
		case w.slots <- struct{}{}:
		}
		r.backlog.Add(-1)
		defer func() { <-w.slots }()
		w.attempt(ctx, it, tries+1)
	}()
}

// drain waits for the in-pass retries still going on.
func (w *workers) drain() {
	w.retrying.Wait()
}

// objectState is how far a pass has got with an object.
type objectState uint8

const (
	// taken: a worker of this pass has it.
	taken objectState = iota + 1
	// failed: it failed in this pass (its failure is counted; its in-pass
	// retries may still be running).
	failed
	// reconciled: it reconciled in this pass.
	reconciled
)

// claim takes id up for this pass; it reports false when the pass already
// did.
func (p *pass) claim(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done[id] != 0 {
		return false
	}
	if len(p.done) < doneCap {
		p.done[id] = taken
	}
	return true
}

// claimWithData is claim for a caller that holds the object's data (a
// walk's page): it also takes up an object whose fetch failed in this pass.
func (p *pass) claimWithData(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch st := p.done[id]; {
	case st != 0 && st != failed:
		return false
	case st != 0 || len(p.done) < doneCap:
		p.done[id] = taken
	}
	return true
}

// failedOnce notes that id failed in this pass, unless it has reconciled
// since.
func (p *pass) failedOnce(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.done[id]; ok && st != reconciled {
		p.done[id] = failed
	}
}

// take takes id up for this pass whether or not it already was (a fresh
// look).
func (p *pass) take(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.done[id]; !ok && len(p.done) < doneCap {
		p.done[id] = taken
	}
}

// succeeded notes that id reconciled in this pass.
func (p *pass) succeeded(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.done[id]; ok || len(p.done) < doneCap {
		p.done[id] = reconciled
	}
}

// reconciled reports whether id reconciled in this pass.
func (p *pass) reconciled(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done[id] == reconciled
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
