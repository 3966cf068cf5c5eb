// Executing one claimed step: run its handler under the claim, then record
// the outcome the handler's error names, fenced by the claim. An outcome the
// database refuses because the claim was lost is a lost lease, never a
// retry: the step belongs to another worker now.
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/paymentd/paymentd/store"
)

// Outcomes, as counted in paymentd_steps_total.
const (
	outcomeDone       = "done"
	outcomeRetry      = "retry"
	outcomeFailed     = "failed"
	outcomeReleased   = "released"
	outcomeLostLease  = "lost_lease"
	outcomeUnrecorded = "unrecorded"
)

// outcomeTimeout bounds the write of one outcome, which happens even while
// shutting down.
const outcomeTimeout = 10 * time.Second

// ran is a handler's run, waiting for its outcome to be recorded.
type ran struct {
	step    store.Step
	job     *Job
	result  json.RawMessage
	elapsed time.Duration
}

// execute runs one claimed step and records its outcome. With batched set,
// a success that owes no OnCommit write is returned instead, with true, for
// the dispatcher to record with others.
func (e *Engine) execute(ctx context.Context, s store.Step, claimedAt stamp, batched bool) (ran, bool) {
	job := e.newJob(s)
	hctx, c, err := e.claims.start(ctx, s, claimedAt, e.now(), e.cfg.Lease, e.cfg.Timeout)
	if err != nil {
		outcome := e.notStarted(ctx, job, s, err)
		e.claims.remove(s.Claim())
		e.metrics.observe(s.Name, outcome, 0)
		return ran{}, false
	}
	started := time.Now()
	result, err := e.call(hctx, job)
	elapsed := time.Since(started)
	if err != nil && context.Cause(hctx) != nil && !errors.Is(err, context.Cause(hctx)) {
		err = fmt.Errorf("%w (%w)", err, context.Cause(hctx))
	}
	c.finish() // still renewed until the outcome is recorded

	r := ran{step: s, job: job, elapsed: elapsed}
	if err == nil {
		if r.result, err = json.Marshal(result); err != nil {
			err = Permanent(fmt.Errorf("encode result: %w", err))
		}
	}
	if err == nil && len(job.onCommit) == 0 && batched {
		return r, true
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	outcome, werr := e.record(wctx, ctx, r, err)
	if werr != nil {
		job.Logger.Error("record step outcome", "err", werr)
		outcome = outcomeUnrecorded
	}
	e.claims.remove(s.Claim())
	e.metrics.observe(s.Name, outcome, elapsed)
	return ran{}, false
}

// notStarted handles a claim refused its start (errLeaseLost or
// errLeaseLapsing) and returns the outcome. A lost claim belongs to another
// worker. A lapsing one is handed back under its claim without spending an
// attempt; if the database refuses (the step was rescued) it is a lost
// lease, and if the database is out of reach the lease is left to lapse.
func (e *Engine) notStarted(ctx context.Context, job *Job, s store.Step, why error) string {
	if errors.Is(why, errLeaseLost) {
		// Its lease was lost while it waited for a worker: another has it.
		return e.lostLease(job, "run")
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	ok, err := e.db.ReleaseStep(wctx, s.Claim(), e.clock.Now())
	switch {
	case err != nil:
		job.Logger.Error("hand back a step whose claim is too old to start; its lease will lapse", "err", err)
		return outcomeUnrecorded
	case !ok:
		return e.lostLease(job, "run")
	}
	job.Logger.Warn("claim too old to start: step handed back", "err", why)
	return outcomeReleased
}

func (e *Engine) newJob(s store.Step) *Job {
	subject := subjectOf(s)
	job := &Job{
		ID: s.ID, Subject: subject, Pipeline: s.Pipeline, Name: s.Name, Attempt: s.Attempts, MaxAttempts: s.MaxAttempts,
		Args: s.Args, IdempotencyKey: idempotencyKey(subject, s.Pipeline, s.Name), db: e.db,
	}
	if subject.Kind == store.SubjectPurchase {
		job.PurchaseID = subject.ID
	}
	attrs := append([]any{"step_id", s.ID, "step", s.Name, "pipeline", s.Pipeline, "attempt", s.Attempts},
		subjectAttrs(subject)...)
	job.Logger = e.log.With(attrs...)
	return job
}

// subjectAttrs are the log attributes naming a subject: purchase_id for a
// purchase, as before subjects; subject_kind and subject_id for the others.
func subjectAttrs(s Subject) []any {
	switch s.Kind {
	case store.SubjectPurchase:
		return []any{"purchase_id", s.ID}
	case store.SubjectGlobal:
		return nil
	}
	return []any{"subject_kind", string(s.Kind), "subject_id", s.ID}
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
	return h(ctx, job)
}

// record writes a run's outcome, fenced by its claim, and returns its name
// for metrics. runCtx is the context the handler ran under: ended, it means
// the shutdown grace is over.
func (e *Engine) record(ctx, runCtx context.Context, r ran, runErr error) (string, error) {
	s, job := r.step, r.job
	now := e.clock.Now()
	ranOK := runErr == nil
	if ranOK {
		ok, err := e.completeOne(ctx, r, now)
		if err == nil {
			return e.completed(r, ok), nil
		}
		// The completing transaction rolled back (an OnCommit write failed,
		// or the database did): that error is the run's outcome, recorded
		// now under the claim like a handler's, rather than left running
		// until the lease lapses.
		runErr = fmt.Errorf("complete step: %w", err)
	}
	switch {
	case runCtx.Err() != nil && !ranOK:
		// Shutting down past the grace period: hand the step back unspent.
		ok, err := e.db.ReleaseStep(ctx, s.Claim(), now)
		if err != nil {
			return "", err
		}
		if !ok {
			return e.lostLease(job, "released"), nil
		}
		job.Logger.Info("step handed back at shutdown")
		return outcomeReleased, nil
	case IsPermanent(runErr) || s.Attempts >= s.MaxAttempts:
		return e.fail(ctx, r, runErr, now)
	}
	delay, requested := RetryDelay(runErr)
	if !requested || delay <= 0 {
		// A Retry-After already past would burn every attempt in seconds.
		delay = e.Backoff(s.Attempts)
	}
	ok, err := e.db.RetryStep(ctx, s.Claim(), now, now.Add(delay), runErr.Error())
	if err != nil {
		return "", err
	}
	if !ok {
		return e.lostLease(job, "retry", "err", runErr), nil
	}
	job.Logger.Warn("step will retry", "err", runErr, "retry_in", delay.String())
	e.metrics.retried(s.Name)
	return outcomeRetry, nil
}

// completeOne records one success by itself, with the step's OnCommit writes
// in the same transaction.
func (e *Engine) completeOne(ctx context.Context, r ran, now time.Time) (bool, error) {
	c := store.Completion{Claim: r.step.Claim(), Blocking: r.step.Blocking, Result: r.result}
	if len(r.job.onCommit) == 0 {
		return e.db.CompleteStep(ctx, c, now)
	}
	var ok bool
	err := e.db.InTx(ctx, func(q *store.Queries) error {
		var err error
		if ok, err = q.CompleteStep(ctx, c, now); err != nil || !ok {
			return err
		}
		return r.job.commit(ctx, q)
	})
	return ok, err
}

// completed reports a recorded (ok) or refused completion.
func (e *Engine) completed(r ran, ok bool) string {
	if !ok {
		return e.lostLease(r.job, "done")
	}
	r.job.Logger.Debug("step done")
	if r.step.Blocking {
		e.Wake() // steps that waited for this one may be due
	}
	return outcomeDone
}

// lostLease logs an outcome the database refused because the claim was lost.
func (e *Engine) lostLease(job *Job, discarded string, attrs ...any) string {
	job.Logger.Warn("lost lease: another worker holds the step now; outcome discarded",
		append([]any{"discarded", discarded}, attrs...)...)
	return outcomeLostLease
}

// fail marks the step failed for good, cancels the steps waiting on it and
// schedules an operator alert, in one transaction.
func (e *Engine) fail(ctx context.Context, r ran, runErr error, now time.Time) (string, error) {
	s := r.step
	errText := runErr.Error()
	var ok bool
	var canceled int
	err := e.db.InTx(ctx, func(q *store.Queries) error {
		var err error
		ok, canceled, err = q.FailStep(ctx, s.Claim(), now, errText)
		if err != nil || !ok {
			return err
		}
		return e.scheduleAlert(ctx, q, s, now, errText)
	})
	if err != nil {
		return "", err
	}
	if !ok {
		return e.lostLease(r.job, "failed", "err", runErr), nil
	}
	r.job.Logger.Error("step failed", "err", runErr, "permanent", IsPermanent(runErr), "canceled_waiting", canceled)
	return outcomeFailed, nil
}

// scheduleAlert records an operator alert for a step that failed for good
// at failedAt. An alert that itself fails is only logged, never alerted
// again.
func (e *Engine) scheduleAlert(ctx context.Context, q *store.Queries, s store.Step, failedAt time.Time, errText string) error {
	if s.Name == AlertStep {
		return nil
	}
	subject := subjectOf(s)
	args := AlertArgs{StepID: s.ID, SubjectKind: subject.Kind, SubjectID: subject.ID, Pipeline: s.Pipeline, Step: s.Name,
		Attempts: s.Attempts, LastError: errText}
	if subject.Kind == store.SubjectPurchase {
		args.PurchaseID = subject.ID
	}
	_, err := e.Schedule(ctx, q, Pipeline{
		Subject: subject,
		Name:    alertPipeline(s.ID, failedAt),
		Steps:   []Step{{Name: AlertStep, Args: args}},
	})
	return err
}

// alertPipeline names the pipeline of the alert for step id's failure for
// good at failedAt: alert:<id>:<failedAt, UTC, to the microsecond the
// database keeps>. Each failure has its own, so a step that fails again
// after an operator retried it raises a new alert (and a new idempotency
// key for its email); a step cannot fail for good twice at one instant.
// Alerts raised before this scheme are named alert:<id>.
func alertPipeline(id int64, failedAt time.Time) string {
	return "alert:" + strconv.FormatInt(id, 10) + ":" + failedAt.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z")
}

// AlertArgs is the input of an operator_alert step: the step that failed
// for good and its subject. The alert runs as a step of the same subject.
type AlertArgs struct {
	StepID      int64             `json:"step_id"`
	SubjectKind store.SubjectKind `json:"subject_kind"`
	SubjectID   string            `json:"subject_id,omitempty"`  // "" for a global step
	PurchaseID  string            `json:"purchase_id,omitempty"` // SubjectID for a purchase's step
	Pipeline    string            `json:"pipeline"`
	Step        string            `json:"step"`
	Attempts    int               `json:"attempts"`
	LastError   string            `json:"last_error"`
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
