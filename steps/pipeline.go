// Package steps is paymentd's durable step engine. Every side effect runs as
// a step: recorded in Postgres before it runs, claimed by one worker at a
// time under a lease, retried on its own with backoff, and never run again
// once done. A subject's work (a purchase's, a subscription's, an order's) is
// a pipeline: an ordered list of named steps, each of which may wait for an
// earlier one.
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/paymentd/paymentd/store"
)

// AlertStep is the step scheduled when another step fails for good.
const AlertStep = "operator_alert"

// Step is one step of a pipeline definition.
type Step struct {
	// Name identifies the step within its pipeline and selects its handler.
	Name string
	// After names an earlier step of the same pipeline this one waits for;
	// "" means the step does not wait.
	After string
	// Delay is how long after the pipeline's anchor the step becomes due.
	Delay time.Duration
	// Tags let a pipeline's pending steps be canceled together (for
	// example "followup", canceled by a full refund).
	Tags []string
	// Args is the step's input, stored as JSON.
	Args any
	// MaxAttempts overrides the engine's default when positive.
	MaxAttempts int
}

// Pipeline is a set of steps scheduled together for one subject (or none,
// for global work). Scheduling the same pipeline twice records it once.
type Pipeline struct {
	// Subject is what the steps belong to; the zero Subject (and no
	// PurchaseID) makes a global pipeline.
	Subject Subject
	// PurchaseID is shorthand for Subject: PurchaseSubject(PurchaseID).
	PurchaseID string
	// Name distinguishes pipeline instances: "purchase", "refund:re_123".
	Name string
	// Anchor is the time Delays count from; zero means now.
	Anchor time.Time
	Steps  []Step
}

// Chain returns steps where each waits for the one before it.
func Chain(steps ...Step) []Step {
	for i := 1; i < len(steps); i++ {
		if steps[i].After == "" {
			steps[i].After = steps[i-1].Name
		}
	}
	return steps
}

// Schedule records p's steps through q (the pool or a caller's transaction)
// and returns how many steps were new. Steps already recorded under the same
// subject, pipeline and name are left alone, so scheduling is idempotent.
// Schedule a subject's steps under its row lock (SELECT ... FOR UPDATE in
// q's transaction): retention takes that lock before it prunes a subject's
// steps, so none is added while its old ones go.
func (e *Engine) Schedule(ctx context.Context, q *store.Queries, p Pipeline) (int, error) {
	return e.ScheduleAll(ctx, q, []Pipeline{p})
}

// ScheduleAll is Schedule for several pipelines (of one subject or many) in
// one statement: a page of purchases recorded together schedules its
// pipelines together.
func (e *Engine) ScheduleAll(ctx context.Context, q *store.Queries, ps []Pipeline) (int, error) {
	now := e.clock.Now()
	var rows []store.NewStep
	for _, p := range ps {
		r, err := e.stepRows(p, now)
		if err != nil {
			return 0, err
		}
		rows = append(rows, r...)
	}
	n, err := q.InsertSteps(ctx, now, rows)
	if err != nil {
		if len(ps) == 1 {
			return n, fmt.Errorf("schedule %s: %w", ps[0].Name, err)
		}
		return n, fmt.Errorf("schedule %d pipelines: %w", len(ps), err)
	}
	return n, nil
}

// stepRows checks p and returns its steps as rows to insert.
func (e *Engine) stepRows(p Pipeline, now time.Time) ([]store.NewStep, error) {
	subject, err := p.subject()
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", p.Name, err)
	}
	anchor := p.Anchor
	if anchor.IsZero() {
		anchor = now
	}
	names := map[string]bool{}
	awaited := map[string]bool{}
	for _, s := range p.Steps {
		awaited[s.After] = true
	}
	rows := make([]store.NewStep, 0, len(p.Steps))
	for _, s := range p.Steps {
		if s.Name == "" {
			return nil, fmt.Errorf("schedule %s: a step has no name", p.Name)
		}
		if s.After != "" && !names[s.After] {
			return nil, fmt.Errorf("schedule %s: step %s waits for %s, which does not come before it", p.Name, s.Name, s.After)
		}
		names[s.Name] = true
		args, err := json.Marshal(s.Args)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: encode args of %s: %w", p.Name, s.Name, err)
		}
		if s.Args == nil {
			args = []byte(`{}`)
		}
		max := s.MaxAttempts
		if max <= 0 {
			max = e.cfg.MaxAttempts
		}
		rows = append(rows, store.NewStep{
			SubjectKind: subject.Kind, SubjectID: subject.ID, Pipeline: p.Name, Name: s.Name, After: s.After, Blocking: awaited[s.Name], Tags: s.Tags,
			Args: args, RunAt: anchor.Add(s.Delay), MaxAttempts: max,
		})
	}
	return rows, nil
}

// subject resolves the PurchaseID shorthand and checks the subject.
func (p Pipeline) subject() (Subject, error) {
	s := p.Subject
	if p.PurchaseID != "" {
		if s != (Subject{}) && s != PurchaseSubject(p.PurchaseID) {
			return s, fmt.Errorf("pipeline names two subjects: %s and purchase %s", s, p.PurchaseID)
		}
		s = PurchaseSubject(p.PurchaseID)
	}
	return s.normalize()
}

// Cancel cancels the purchase's steps tagged tag that have not run yet: it
// is CancelSubject for PurchaseSubject(purchaseID).
func (e *Engine) Cancel(ctx context.Context, q *store.Queries, purchaseID, tag string) (int, error) {
	return e.CancelSubject(ctx, q, PurchaseSubject(purchaseID), tag)
}

// CancelSubject cancels the subject's steps tagged tag that have not run yet.
func (e *Engine) CancelSubject(ctx context.Context, q *store.Queries, subject Subject, tag string) (int, error) {
	subject, err := subject.normalize()
	if err == nil && subject.Global() {
		err = errors.New("global steps are not canceled by tag")
	}
	if err != nil {
		return 0, fmt.Errorf("cancel %s steps: %w", tag, err)
	}
	return q.CancelSteps(ctx, subject.ID, tag, e.clock.Now())
}
