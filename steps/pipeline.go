// Package steps is paymentd's durable step engine. Every side effect runs as
// a step: recorded in Postgres before it runs, claimed by one worker at a
// time under a lease, retried on its own with backoff, and never run again
// once done. A purchase's work is a pipeline: an ordered list of named steps,
// each of which may wait for an earlier one.
package steps

import (
	"context"
	"encoding/json"
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

// Pipeline is a set of steps scheduled together for one purchase (or none,
// for global work). Scheduling the same pipeline twice records it once.
type Pipeline struct {
	PurchaseID string // "" for a global pipeline
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
// purchase, pipeline and name are left alone, so scheduling is idempotent.
func (e *Engine) Schedule(ctx context.Context, q *store.Queries, p Pipeline) (int, error) {
	now := e.clock.Now()
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
			return 0, fmt.Errorf("schedule %s: a step has no name", p.Name)
		}
		if s.After != "" && !names[s.After] {
			return 0, fmt.Errorf("schedule %s: step %s waits for %s, which does not come before it", p.Name, s.Name, s.After)
		}
		names[s.Name] = true
		args, err := json.Marshal(s.Args)
		if err != nil {
			return 0, fmt.Errorf("schedule %s: encode args of %s: %w", p.Name, s.Name, err)
		}
		if s.Args == nil {
			args = []byte(`{}`)
		}
		max := s.MaxAttempts
		if max <= 0 {
			max = e.cfg.MaxAttempts
		}
		rows = append(rows, store.NewStep{
			PurchaseID: p.PurchaseID, Pipeline: p.Name, Name: s.Name, After: s.After, Blocking: awaited[s.Name], Tags: s.Tags,
			Args: args, RunAt: anchor.Add(s.Delay), MaxAttempts: max,
		})
	}
	n, err := q.InsertSteps(ctx, now, rows)
	if err != nil {
		return n, fmt.Errorf("schedule %s: %w", p.Name, err)
	}
	return n, nil
}

// Cancel cancels the purchase's steps tagged tag that have not run yet.
func (e *Engine) Cancel(ctx context.Context, q *store.Queries, purchaseID, tag string) (int, error) {
	return q.CancelSteps(ctx, purchaseID, tag, e.clock.Now())
}
