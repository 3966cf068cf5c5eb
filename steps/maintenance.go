// Maintenance: retention, on River's model of maintenance services. One
// replica at a time (an advisory lock) deletes done and canceled steps and
// handled webhook hints older than the retention, in bounded batches, each
// its own short transaction, once a day.
package steps

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

// MaintenanceConfig tunes the maintenance loop. Zero values take the
// defaults noted.
type MaintenanceConfig struct {
	// Retention is how long finished steps and handled hints are kept;
	// default 90 days.
	Retention time.Duration
	// Interval is how often the loop prunes; default 24h.
	Interval time.Duration
	// BatchSize bounds the rows one transaction considers; default 1000.
	BatchSize int
}

// Maintainer prunes what the retention no longer keeps.
type Maintainer struct {
	db    *store.DB
	clock clock.Clock
	log   *slog.Logger
	cfg   MaintenanceConfig
}

// NewMaintainer returns a maintenance loop over db.
func NewMaintainer(db *store.DB, clk clock.Clock, log *slog.Logger, cfg MaintenanceConfig) *Maintainer {
	if cfg.Retention <= 0 {
		cfg.Retention = 90 * 24 * time.Hour
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 24 * time.Hour
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	return &Maintainer{db: db, clock: clk, log: log, cfg: cfg}
}

// PruneReport is what one pass deleted.
type PruneReport struct {
	Steps int `json:"steps"`
	Hints int `json:"hints"`
	// Passes are reconcile pass summaries (the operator console's history).
	Passes int `json:"reconcile_passes"`
	// Skipped is set when another replica held the maintenance lock.
	Skipped bool `json:"skipped,omitempty"`
}

// Run prunes once at start and then every Interval, until ctx ends. A
// failed pass is logged and tried again at the next interval.
func (m *Maintainer) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := m.RunOnce(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("prune", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce prunes everything older than the retention, under the maintenance
// lock; when another replica holds it, it does nothing and reports Skipped.
func (m *Maintainer) RunOnce(ctx context.Context) (PruneReport, error) {
	var rep PruneReport
	lock, ok, err := m.db.TryLock(ctx, store.MaintenanceLockKey)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	if !ok {
		rep.Skipped = true
		return rep, nil
	}
	defer lock.Release() // pruning is idempotent: a lost lock costs nothing
	cutoff := m.clock.Now().Add(-m.cfg.Retention)
	var cursor store.PruneCursor
	for more := true; more; {
		var n int
		if n, cursor, more, err = m.db.PruneSteps(ctx, cutoff, cursor, m.cfg.BatchSize); err != nil {
			return rep, err
		}
		rep.Steps += n
	}
	for more := true; more; {
		n, err := m.db.PruneHints(ctx, cutoff, m.cfg.BatchSize)
		if err != nil {
			return rep, err
		}
		rep.Hints += n
		more = n == m.cfg.BatchSize
	}
	for more := true; more; {
		n, err := m.db.PruneReconcilePasses(ctx, cutoff, m.cfg.BatchSize)
		if err != nil {
			return rep, err
		}
		rep.Passes += n
		more = n == m.cfg.BatchSize
	}
	if rep.Steps > 0 || rep.Hints > 0 || rep.Passes > 0 {
		m.log.Info("pruned past retention", "steps", rep.Steps, "hints", rep.Hints, "reconcile_passes", rep.Passes,
			"retention", m.cfg.Retention.String())
	}
	return rep, nil
}
