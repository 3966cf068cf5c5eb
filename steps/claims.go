// Claims in flight and their heartbeat. A step that runs long keeps its
// lease: every claim whose last renewal is a third of a lease old is renewed,
// all in one statement, fenced by its token. A claim the database no longer
// knows (another worker took the step) cancels its handler at once; one that
// could not be renewed for two thirds of a lease cancels its handler too,
// so no handler runs on past a lease it may have lost, and a claim that old
// is not started at all. Lease ages are measured from the moment the claim or
// renewal was sent, which is never later than the database set the expiry,
// on the engine's clock (which tests drive) and on this process's monotonic
// clock (which no step of the wall clock can move back), whichever says
// older.
package steps

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/paymentd/paymentd/store"
)

// stamp is one moment on two clocks: the engine's and the monotonic one.
type stamp struct {
	clock time.Time // the engine's clock
	mono  time.Time // time.Now, with its monotonic reading
}

// now stamps the present.
func (e *Engine) now() stamp { return stamp{clock: e.clock.Now(), mono: time.Now()} }

// since is how long before now s was, by whichever clock says longer.
func (s stamp) since(now stamp) time.Duration {
	return max(now.clock.Sub(s.clock), now.mono.Sub(s.mono))
}

var (
	errLeaseLost    = errors.New("lease lost: another worker claimed the step")
	errLeaseLapsing = errors.New("lease about to lapse: could not renew it")
)

// claim is one step claimed by this engine, from the claim until its
// outcome is recorded.
type claim struct {
	store.Claim
	renewed  stamp     // when the claim or its last successful renewal was sent
	started  bool      // its handler is running or has run
	deadline time.Time // when started: past it the handler has timed out, and the lease is let lapse
	finished bool      // the handler returned; its outcome is being recorded
	lost     bool
	cancel   context.CancelCauseFunc
	stop     context.CancelFunc // releases the timeout's timer
}

// lapsing reports whether c's lease, of length lease, is two thirds gone
// at now: too old to start a handler under, and a running one is stopped.
func (c *claim) lapsing(now stamp, lease time.Duration) bool {
	return c.renewed.since(now) >= 2*lease/3
}

// claims is the registry of claims in flight.
type claims struct {
	mu sync.Mutex
	m  map[int64]*claim
}

// hold registers steps just claimed (at claimedAt), so their leases are
// renewed even before a worker starts them.
func (cs *claims) hold(claimedAt stamp, steps ...store.Step) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, s := range steps {
		cs.m[s.ID] = &claim{Claim: s.Claim(), renewed: claimedAt}
	}
}

// start marks a held claim's handler started at now and returns the
// context it runs under: canceled after timeout, when the claim is lost, or
// when its lease is about to lapse. It returns errLeaseLost, and no context,
// when the claim was lost before its handler started, and errLeaseLapsing
// when its last successful claim or renewal is two thirds of a lease old:
// the database may have been out of reach for longer than the lease, and
// another replica may have rescued the step.
func (cs *claims) start(ctx context.Context, s store.Step, claimedAt, now stamp, lease, timeout time.Duration) (context.Context, *claimHandle, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[s.ID]
	if c == nil || c.Token != s.Claim().Token {
		c = &claim{Claim: s.Claim(), renewed: claimedAt}
		cs.m[s.ID] = c
	}
	if c.lost {
		return nil, nil, errLeaseLost
	}
	if c.lapsing(now, lease) {
		return nil, nil, errLeaseLapsing
	}
	cctx, cancel := context.WithCancelCause(ctx)
	hctx, stop := context.WithTimeout(cctx, timeout)
	c.started, c.deadline, c.cancel, c.stop = true, time.Now().Add(timeout), cancel, stop
	return hctx, &claimHandle{cs: cs, c: c}, nil
}

// claimHandle lets the worker mark its handler finished.
type claimHandle struct {
	cs *claims
	c  *claim
}

// finish marks the handler returned: its context is released, and the
// lease is still renewed until the outcome is recorded.
func (h *claimHandle) finish() {
	h.cs.mu.Lock()
	h.c.finished = true
	h.cs.mu.Unlock()
	h.c.stop()
	h.c.cancel(context.Canceled)
}

// remove forgets claim c once its outcome is recorded. A step claimed again
// since (a new token) keeps its new claim: an old claim's outcome, settled
// late, must not stop the new one's renewals.
func (cs *claims) remove(c store.Claim) {
	cs.mu.Lock()
	if held := cs.m[c.ID]; held != nil && held.Token == c.Token {
		delete(cs.m, c.ID)
	}
	cs.mu.Unlock()
}

// tokens returns the tokens of every claim held.
func (cs *claims) tokens() []int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]int64, 0, len(cs.m))
	for _, c := range cs.m {
		out = append(out, c.Token)
	}
	return out
}

// due returns the claims to renew at now: those whose last renewal is a
// third of a lease old, unless lost or timed out (their lease is let lapse).
func (cs *claims) due(now stamp, lease time.Duration) []store.Claim {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []store.Claim
	for _, c := range cs.m {
		if c.lost || (c.started && !c.finished && !now.mono.Before(c.deadline)) {
			continue
		}
		if c.renewed.since(now) >= lease/3 {
			out = append(out, c.Claim)
		}
	}
	return out
}

// lapsing cancels the handlers of running claims not renewed for two thirds
// of a lease: the lease may lapse before the next renewal succeeds.
func (cs *claims) lapsing(now stamp, lease time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.m {
		if c.started && !c.finished && c.lapsing(now, lease) {
			c.cancel(errLeaseLapsing)
		}
	}
}

// renewed records which of the claims sent at sent were renewed; the others
// are lost, and their handlers canceled.
func (cs *claims) renewed(sent stamp, asked []store.Claim, renewed []int64) {
	ok := make(map[int64]bool, len(renewed))
	for _, id := range renewed {
		ok[id] = true
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, a := range asked {
		c := cs.m[a.ID]
		if c == nil || c.Token != a.Token {
			continue
		}
		if ok[a.ID] {
			c.renewed = sent
			continue
		}
		c.lost = true
		if c.cancel != nil {
			c.cancel(errLeaseLost)
		}
	}
}

// heartbeat renews the leases of claims in flight until ctx ends.
func (e *Engine) heartbeat(ctx context.Context) {
	t := time.NewTicker(e.cfg.Lease / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.renew(ctx)
	}
}

// renew renews the leases that are due, in one statement, then cancels the
// handlers whose lease it could not renew in time. The statement is given a
// sixth of a lease, the heartbeat's interval: one stuck on a database out of
// reach would otherwise hold up the cancellations that follow it.
func (e *Engine) renew(ctx context.Context) {
	sent := e.now()
	due := e.claims.due(sent, e.cfg.Lease)
	if len(due) > 0 {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.Lease/6)
		renewed, err := e.db.RenewLeases(rctx, due, e.cfg.Lease)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("renew step leases", "err", err, "steps", len(due))
		case err == nil:
			e.claims.renewed(sent, due, renewed)
			if lost := len(due) - len(renewed); lost > 0 {
				e.log.Warn("lost lease on running steps; their handlers are canceled", "steps", lost)
			}
		}
	}
	e.claims.lapsing(e.now(), e.cfg.Lease)
}
