// Rate limits shared by every replica: a generic cell rate algorithm
// (GCRA), whose whole state per key is one timestamp, the theoretical
// arrival time (tat), kept in rate_limits. An event is allowed while the
// tat is at most one burst ahead of now; each allowed event moves the tat
// one emission interval on. The decision is a pure function; TakeRate
// locks the key's row, decides and writes in one short transaction, so
// replicas taking from one key never both get the last token.
package store

import (
	"context"
	"fmt"
	"time"
)

// Rate is at most N events per Per for one key, refilled evenly (every
// Per/N), with bursts of up to N.
type Rate struct {
	N   int
	Per time.Duration
}

// RateDecision is the outcome of one event against a Rate.
type RateDecision struct {
	// Allowed is true when the event was within the limit and was counted.
	Allowed bool
	// RetryAfter is, for a refused event, how long until one is allowed.
	RetryAfter time.Duration
}

// DecideRate applies one event at now to a key whose theoretical arrival
// time is tat (any time up to now for a key with no recent events). It
// returns the new tat
// and the decision; a refused event leaves the tat as it was.
func DecideRate(tat, now time.Time, r Rate) (time.Time, RateDecision) {
	interval := r.Per / time.Duration(r.N)
	burst := r.Per - interval // how far ahead of now the tat may be
	if tat.Before(now) {
		tat = now
	}
	if ahead := tat.Sub(now); ahead > burst {
		return tat, RateDecision{RetryAfter: ahead - burst}
	}
	return tat.Add(interval), RateDecision{Allowed: true}
}

// TakeRate counts one event for key at now against r and reports whether
// it was allowed. The row is created on first use and locked while the
// decision is made, so concurrent callers (on any replica) are
// serialised per key. now comes from the caller's injected clock; across
// replicas, clocks kept by NTP agree far closer than any interval here.
func (db *DB) TakeRate(ctx context.Context, key string, r Rate, now time.Time) (RateDecision, error) {
	if r.N < 1 || r.Per <= 0 {
		return RateDecision{}, fmt.Errorf("take rate %s: invalid rate %d per %s", key, r.N, r.Per)
	}
	var d RateDecision
	err := db.InTx(ctx, func(q *Queries) error {
		// A no-op update on conflict locks an existing row and returns its
		// tat; a new key starts at now, which is the same as no events yet.
		var tat time.Time
		if err := q.db.QueryRow(ctx, `
			INSERT INTO rate_limits AS r (key, tat) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET tat = r.tat
			RETURNING tat`, key, now.UTC()).Scan(&tat); err != nil {
			return err
		}
		var next time.Time
		next, d = DecideRate(tat, now.UTC(), r)
		if !d.Allowed {
			return nil
		}
		_, err := q.db.Exec(ctx, `UPDATE rate_limits SET tat = $2 WHERE key = $1`, key, next)
		return err
	})
	if err != nil {
		return RateDecision{}, fmt.Errorf("take rate %s: %w", key, err)
	}
	return d, nil
}
