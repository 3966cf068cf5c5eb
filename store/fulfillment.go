// Fulfillment queries: what the purchase pipelines' steps read and write
// beyond a purchase's own row: whether a buyer has since completed another
// purchase, and the buyer's login and access state as the access steps
// record them (who else holds access for a GitHub account is in access.go).
package store

import (
	"context"
	"fmt"
	"time"
)

// CompletedSince reports whether a purchase of userID or of email (either
// may be empty; email compares case-insensitively) completed at or after
// since, whatever has happened to it after.
func (q *Queries) CompletedSince(ctx context.Context, userID, email string, since time.Time) (bool, error) {
	if userID == "" && email == "" {
		return false, nil
	}
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (
			SELECT 1 FROM purchases
			WHERE completed_at >= $3 AND status IN ('completed', 'partially_refunded', 'refunded')
				AND ((user_id = $1 AND $1 <> '') OR (lower(email) = lower($2) AND $2 <> ''))
		)`, userID, email, since.UTC()).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("look up purchases completed since: %w", err)
	}
	return yes, nil
}

// SetGitHubUsername records the GitHub login a purchase's access goes to.
func (q *Queries) SetGitHubUsername(ctx context.Context, purchaseID, username string, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE purchases SET github_username = $2, updated_at = $3 WHERE id = $1`,
		purchaseID, username, now.UTC())
	if err != nil {
		return fmt.Errorf("set github username of %s: %w", purchaseID, err)
	}
	return nil
}

// MarkAccessFailed records that granting a purchase's access failed for
// good, unless access is granted (another grant got there).
func (q *Queries) MarkAccessFailed(ctx context.Context, purchaseID string, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE purchases SET access_state = 'failed', updated_at = $2
		WHERE id = $1 AND access_state <> 'granted'`, purchaseID, now.UTC())
	if err != nil {
		return fmt.Errorf("mark access of %s failed: %w", purchaseID, err)
	}
	return nil
}
