// Job is what a handler receives: the step's identity, input, attempt
// number, a stable idempotency key, and access to earlier results.
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/paymentd/paymentd/store"
)

// Handler runs one step. Its result (any JSON-encodable value, or nil) is
// stored and handed to later steps; its error is its outcome (see Permanent
// and RetryAfter).
type Handler func(ctx context.Context, job *Job) (any, error)

// Job describes the step a handler is running.
type Job struct {
	ID int64
	// Subject is what the step belongs to (Kind global for a global step).
	Subject Subject
	// PurchaseID is Subject.ID for a purchase's step, "" for any other.
	PurchaseID  string
	Pipeline    string
	Name        string
	Attempt     int // 1 on the first run
	MaxAttempts int
	Args        json.RawMessage
	// IdempotencyKey is the same on every attempt of this step: pass it to
	// external APIs that deduplicate (Stripe, SendGrid custom args, webhooks).
	IdempotencyKey string
	Logger         *slog.Logger

	db       *store.DB
	onCommit []func(ctx context.Context, q *store.Queries) error
}

// ErrNoResult is returned by Prior when the named step has not completed.
var ErrNoResult = errors.New("step has no result")

// DecodeArgs decodes the step's arguments into v.
func (j *Job) DecodeArgs(v any) error {
	if err := json.Unmarshal(j.Args, v); err != nil {
		return Permanent(fmt.Errorf("decode args of %s: %w", j.Name, err))
	}
	return nil
}

// Prior decodes into v the result of the done step name of the same
// pipeline and subject. It returns ErrNoResult when that step is not done.
func (j *Job) Prior(ctx context.Context, name string, v any) error {
	raw, err := j.db.StepResult(ctx, j.Subject.ID, j.Pipeline, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(raw) == 0) {
		return ErrNoResult
	}
	if err != nil {
		return fmt.Errorf("read result of %s: %w", name, err)
	}
	return json.Unmarshal(raw, v)
}

// OnCommit registers fn to run inside the transaction that marks the step
// done, so a database write the step owes happens exactly once, together
// with its completion. If fn fails, the step is not done: fn's error is its
// outcome, as a handler's would be (retried after the backoff, or failed for
// good when Permanent or its attempts are spent).
func (j *Job) OnCommit(fn func(ctx context.Context, q *store.Queries) error) {
	j.onCommit = append(j.onCommit, fn)
}

// idempotencyKey is paymentd:<kind>:<id>:<pipeline>:<name>, except for the
// keys in use before steps had subjects, which receivers (SendGrid, GitHub,
// webhooks) may have seen already and so must not change:
// paymentd:<purchase id>:<pipeline>:<name> and paymentd:global:<pipeline>:<name>.
func idempotencyKey(s Subject, pipeline, name string) string {
	switch s.Kind {
	case store.SubjectPurchase:
		return fmt.Sprintf("paymentd:%s:%s:%s", s.ID, pipeline, name)
	case store.SubjectGlobal:
		return fmt.Sprintf("paymentd:global:%s:%s", pipeline, name)
	}
	return fmt.Sprintf("paymentd:%s:%s:%s:%s", s.Kind, s.ID, pipeline, name)
}

func (j *Job) commit(ctx context.Context, q *store.Queries) error {
	for _, fn := range j.onCommit {
		if err := fn(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
