// The dispatcher batches claims and completions, as River's and Graphile
// Worker's do, without a goroutine in the middle. A worker that finishes a
// step hands in its success and, when no round trip is in flight, leads one
// itself: it records every success handed in so far (one statement, fenced
// by each claim's token, releasing the steps that waited for them) and
// claims due steps for itself and for the idle workers (one statement), in
// one implicit transaction, so a step just released can be claimed at once.
// It keeps its own step and passes the others on. While a round trip is in
// flight, successes and idle workers gather into the next, so batches grow
// with the load and the database does less work per step; one worker alone
// makes one round trip per step. Successes that owe an OnCommit write,
// retries, failures and hand-backs are recorded by their worker, one by one.
package steps

import (
	"context"
	"sync"
	"time"

	"github.com/paymentd/paymentd/store"
)

// maxRoundTrips bounds the round trips in flight at once. One measured best
// (make bench): more hide the database's latency, but split the work into
// smaller batches that cost the database more per step. Handing back the
// claims of a round trip whose answer was lost (releaseLost) relies on it:
// with no other round trip in flight, every claim of this engine that
// committed is held, or was lost.
const maxRoundTrips = 1

// A second round trip in flight could have claims committed but not yet
// held, which releaseLost would take for lost: it must change first.
const _ = uint(1 - maxRoundTrips)

// roundTripRetries are the pauses after failed round trips, in turn (the
// last repeats). While shutting down, successes still unrecorded after all
// of them are given up: their steps run again once their leases lapse, as
// after a crash.
var roundTripRetries = []time.Duration{50 * time.Millisecond, 250 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}

// splitAfter is how many failed round trips a success may be part of
// before it is recorded on its own. All the completions and the claim of a
// round trip are one transaction: one the database refuses every time (a
// result jsonb cannot hold) would otherwise fail every later batch it
// joins, and no step would be completed or claimed.
const splitAfter = 2

// success is a success handed in, and how many failed round trips it was
// part of.
type success struct {
	ran
	failedTrips int
}

// claimed is a step claimed for a worker, and when the claim was sent.
type claimed struct {
	store.Step
	at stamp
}

type dispatcher struct {
	e       *Engine
	hardCtx context.Context // handlers' context, canceled when the shutdown grace is over
	work    chan claimed    // steps claimed for idle workers

	mu       sync.Mutex
	pending  []success // successes handed in, not yet recorded
	idle     int       // workers waiting for a step
	promised int       // steps round trips in flight are claiming for idle workers
	trips    int       // round trips in flight
	more     bool      // the last claim filled every slot it asked for: more may be due
	failures int       // consecutive failed round trips
	// lost are when failed round trips that claimed were sent: their claims
	// may have committed, unseen, and are to be handed back.
	lost []time.Time
	// lastClaim is when the last claim was sent.
	lastClaim time.Time
}

// run runs the workers until ctx ends and then, within ShutdownGrace, until
// every in-flight step has finished (or been handed back) and every outcome
// is recorded.
func (d *dispatcher) run(ctx context.Context) {
	e := d.e
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	d.hardCtx = hardCtx
	d.work = make(chan claimed, e.cfg.Workers)
	d.more = true
	var workers sync.WaitGroup
	for range e.cfg.Workers {
		workers.Add(1)
		go func() { defer workers.Done(); d.worker(ctx) }()
	}
	<-ctx.Done()
	stopped := make(chan struct{})
	go func() { workers.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(e.cfg.ShutdownGrace):
		e.log.Warn("shutdown grace over; handing back in-flight steps")
		hardStop()
		<-stopped
	}
	// What the last round trips left: successes to record, claims whose
	// answer was lost, and steps claimed for workers that had stopped.
	for {
		d.mu.Lock()
		left := len(d.pending)
		d.mu.Unlock()
		if left == 0 {
			break
		}
		d.lead(ctx, false)
	}
	if t := (trip{lost: d.lost}); len(t.lost) > 0 {
		d.lost = nil
		if err := d.releaseLost(ctx, &t); err != nil {
			e.log.Error("hand back claims whose round trip failed; their leases will lapse", "err", err)
		}
	}
	for {
		select {
		case c := <-d.work:
			d.handBack(c.Step)
		default:
			return
		}
	}
}

// worker runs steps until ctx ends: its own, claimed when it led a round
// trip, or one passed on by another worker's round trip.
func (d *dispatcher) worker(ctx context.Context) {
	poll := time.NewTimer(d.e.cfg.PollInterval)
	defer poll.Stop()
	var own *claimed
	for {
		if own == nil {
			var ok bool
			if own, ok = d.await(ctx, poll); !ok {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			d.handBack(own.Step) // shutting down: start nothing new
			own = nil
			continue
		}
		r, ok := d.e.execute(d.hardCtx, own.Step, own.at, true)
		if ok {
			d.mu.Lock()
			d.pending = append(d.pending, success{ran: r})
			d.mu.Unlock()
		}
		own = d.lead(ctx, true)
	}
}

// await waits for a step: one passed on, or one this worker claims when
// woken (a notification, a released step) or when the poll interval passes.
// It returns false when ctx has ended.
func (d *dispatcher) await(ctx context.Context, poll *time.Timer) (*claimed, bool) {
	for {
		select {
		case c := <-d.work:
			return &c, true
		default:
		}
		if ctx.Err() != nil {
			return nil, false
		}
		woken := d.e.wake.wait() // taken before looking for work, so no wake-up is missed
		d.mu.Lock()
		d.idle++
		d.mu.Unlock()
		resetTimer(poll, d.e.cfg.PollInterval)
		var c *claimed
		polled := false
		select {
		case got := <-d.work:
			c = &got
		case <-woken:
		case <-poll.C:
			polled = true
		case <-ctx.Done():
		}
		d.mu.Lock()
		d.idle--
		// A round trip in flight is claiming for idle workers: wait for it.
		// And one idle worker's poll is enough: skip it when another claimed
		// within the poll interval.
		skip := d.promised > 0 || (polled && time.Since(d.lastClaim) < d.e.cfg.PollInterval)
		if c == nil && !skip {
			d.more = true
		}
		d.mu.Unlock()
		if c != nil {
			return c, true
		}
		if !skip {
			if c = d.lead(ctx, true); c != nil {
				return c, true
			}
		}
	}
}

// trip is one round trip: the successes it records and the steps it claims.
type trip struct {
	pending []success
	self    int         // 1 when it claims a step for the worker leading it
	forIdle int         // steps it claims for idle workers
	lost    []time.Time // claims of failed round trips to hand back first
}

// lead sends round trips while one is free and there is work for it: the
// successes handed in, and claims for this worker (when it wants a step)
// and the idle ones. It returns the step claimed for this worker, if any.
func (d *dispatcher) lead(ctx context.Context, wantOwn bool) *claimed {
	var own *claimed
	for {
		if wantOwn && own == nil && ctx.Err() == nil {
			// A step claimed for idle workers and not yet taken goes first.
			select {
			case c := <-d.work:
				own = &c
			default:
			}
		}
		t, ok := d.plan(ctx, wantOwn && own == nil)
		if !ok {
			return own
		}
		// Never canceled half-way: a statement canceled after it committed
		// would leave its claims running with no worker until their leases
		// lapse.
		at := d.e.now()
		var (
			done  []int64
			steps []store.Step
			err   error
		)
		if len(t.lost) > 0 {
			err = d.releaseLost(ctx, &t)
		}
		if err == nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
			done, steps, err = d.e.db.CompleteAndClaim(rctx, at.clock, completions(t.pending), d.e.cfg.Owner,
				d.e.cfg.Lease, t.self+t.forIdle)
			cancel()
			if err != nil && t.self+t.forIdle > 0 {
				// The claim may have committed all the same, its answer
				// lost: hand back what it took, while no other round trip
				// is in flight (maxRoundTrips).
				t.lost = append(t.lost, at.clock)
				if rerr := d.releaseLost(ctx, &t); rerr != nil {
					d.e.log.Error("hand back claims whose round trip failed; will try again", "err", rerr)
				}
			}
		}
		if mine := d.settle(ctx, t, at, done, steps, err); mine != nil {
			own = mine
		}
	}
}

// plan decides the next round trip, if one is free and has work, and
// reserves what it claims for idle workers.
func (d *dispatcher) plan(ctx context.Context, wantOwn bool) (trip, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var t trip
	if ctx.Err() == nil && (d.more || len(d.pending) > 0) {
		if wantOwn {
			t.self = 1
		}
		t.forIdle = max(d.idle-d.promised-len(d.work), 0)
	}
	n := t.self + t.forIdle
	if d.trips >= maxRoundTrips || (len(d.pending) == 0 && n == 0) {
		return t, false
	}
	t.pending, d.pending = d.pending, nil
	t.lost, d.lost = d.lost, nil
	d.trips++
	d.promised += t.forIdle
	if n > 0 {
		d.more = false // until this claim comes back full
		d.lastClaim = time.Now()
	}
	return t, true
}

// settle takes a round trip's answer: it reports the successes' outcomes,
// passes the steps claimed for idle workers on, and returns the one claimed
// for the leading worker.
func (d *dispatcher) settle(ctx context.Context, t trip, at stamp, done []int64, steps []store.Step, err error) *claimed {
	d.mu.Lock()
	d.trips--
	d.promised -= t.forIdle
	d.lost = append(d.lost, t.lost...)
	if err != nil {
		d.failed(ctx, t.pending, err)
		return nil
	}
	d.failures = 0
	if n := t.self + t.forIdle; n > 0 && len(steps) == n {
		d.more = true
	}
	var own *claimed
	if ctx.Err() != nil {
		d.mu.Unlock()
		d.handBack(steps...) // claimed as shutdown began: never started
	} else {
		d.e.claims.hold(at, steps...)
		for i, s := range steps {
			if i == 0 && t.self == 1 {
				own = &claimed{Step: s, at: at}
				continue
			}
			d.work <- claimed{Step: s, at: at} // never blocks: claims never exceed the idle workers
		}
		d.mu.Unlock()
	}
	d.recorded(t.pending, done, outcomeDone)
	return own
}

func completions(rs []success) []store.Completion {
	cs := make([]store.Completion, len(rs))
	for i, r := range rs {
		cs[i] = store.Completion{Claim: r.step.Claim(), Blocking: r.step.Blocking, Result: r.result}
	}
	return cs
}

// failed handles a failed round trip; d.mu is held and released. The
// successes go back to be recorded by the next round trip after a pause,
// unless shutting down has run out of retries; those that were part of
// splitAfter failed round trips are recorded one by one instead.
func (d *dispatcher) failed(ctx context.Context, pending []success, err error) {
	e := d.e
	giveUp := ctx.Err() != nil && d.failures >= len(roundTripRetries)
	pause := roundTripRetries[min(d.failures, len(roundTripRetries)-1)]
	d.failures++
	var alone []success
	if !giveUp {
		for _, s := range pending {
			if s.failedTrips++; s.failedTrips >= splitAfter {
				alone = append(alone, s)
			} else {
				d.pending = append(d.pending, s)
			}
		}
	}
	d.mu.Unlock()
	e.log.Error("record step outcomes and claim steps", "err", err, "outcomes", len(pending))
	if giveUp {
		d.recorded(pending, nil, outcomeUnrecorded)
		return
	}
	time.Sleep(pause) // backing off from a failing database
	d.recordAlone(ctx, alone)
}

// recordAlone records successes one by one, as a worker records those that
// owe an OnCommit write: one the database refuses becomes a retry, or a
// failure on its last attempt, with the error. When not even that can be
// written the database itself is failing: the rest go back to the batch.
func (d *dispatcher) recordAlone(ctx context.Context, alone []success) {
	e := d.e
	for i, s := range alone {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
		outcome, err := e.record(wctx, ctx, s.ran, nil)
		cancel()
		if err != nil {
			s.job.Logger.Error("record step outcome on its own", "err", err)
			d.mu.Lock()
			d.pending = append(d.pending, alone[i:]...)
			d.mu.Unlock()
			return
		}
		e.claims.remove(s.step.Claim())
		e.metrics.observe(s.step.Name, outcome, s.elapsed)
	}
}

// recorded reports successes after a round trip: those in done were
// recorded, the others lost their lease. With outcome unrecorded, none was
// written.
func (d *dispatcher) recorded(pending []success, done []int64, outcome string) {
	e := d.e
	ok := make(map[int64]bool, len(done))
	for _, id := range done {
		ok[id] = true
	}
	for _, r := range pending {
		o := outcome
		if o == outcomeDone {
			o = e.completed(r.ran, ok[r.step.ID])
		}
		e.claims.remove(r.step.Claim())
		e.metrics.observe(r.step.Name, o, r.elapsed)
	}
}

// releaseLost hands back, without spending their attempt, the steps that
// the failed round trips sent at t.lost claimed and that no claim held by
// this engine names: the round trip failed after its claims committed (the
// connection dropped, or its deadline passed as the answer was read), and
// nothing would run or renew them until their leases lapsed, an attempt
// spent. Only the leader of the one round trip in flight calls it, so every
// claim of this engine that committed is held or lost (and RunDue, which
// claims on its own, never runs beside Run). On success t.lost is emptied.
func (d *dispatcher) releaseLost(ctx context.Context, t *trip) error {
	e := d.e
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	ids, err := e.db.ReleaseLostClaims(rctx, e.cfg.Owner, t.lost, e.claims.tokens(), e.clock.Now())
	if err != nil {
		return err
	}
	t.lost = nil
	if len(ids) > 0 {
		e.log.Warn("handed back steps claimed by a round trip whose answer was lost", "step_ids", ids)
		d.mu.Lock()
		d.more = true
		d.mu.Unlock()
		e.Wake()
	}
	return nil
}

// handBack releases steps claimed as shutdown began, without spending an
// attempt.
func (d *dispatcher) handBack(steps ...store.Step) {
	e := d.e
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
		if _, err := e.db.ReleaseStep(ctx, s.Claim(), e.clock.Now()); err != nil {
			e.log.Error("release step at shutdown", "step_id", s.ID, "err", err)
		}
		cancel()
		e.claims.remove(s.Claim())
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}
