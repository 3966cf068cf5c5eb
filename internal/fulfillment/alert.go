// Operator alerts raised outside a step: the reconciler's, when it has
// stalled or an object keeps failing. Each is a global pipeline of one
// operator_alert step (the handler that alerts on failed steps), keyed so
// the same alert is scheduled once however often it is raised.
package fulfillment

import (
	"context"
	"fmt"

	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// PrefixAlert starts the name of an alert's global pipeline; the rest is
// the alert's key.
const PrefixAlert = "alert:"

// Alert schedules an operator alert through q as the global pipeline
// "alert:"+key. An alert already scheduled under key, sent or not, is not
// scheduled again, so the caller picks a key that names one occurrence
// (for example the stall and when it began).
func (f *Fulfillment) Alert(ctx context.Context, q *store.Queries, key string, a steps.AlertArgs) error {
	if _, err := f.engine.Schedule(ctx, q, steps.Pipeline{Name: PrefixAlert + key,
		Steps: []steps.Step{{Name: steps.AlertStep, Args: a}}}); err != nil {
		return fmt.Errorf("schedule alert %s: %w", key, err)
	}
	return nil
}
