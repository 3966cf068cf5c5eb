// Accounts and unsubscribes: what paymentd knows about a buyer beyond a
// single purchase: the GitHub username access is granted to, and whether
// they opted out of follow-up and recovery email.
package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Account is one row of the accounts table, keyed by the JWT subject.
type Account struct {
	UserID         string    `json:"user_id"`
	Email          *string   `json:"email"`
	GitHubUsername *string   `json:"github_username"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// UpsertAccount records a user's email and, when not empty, their GitHub
// username.
func (q *Queries) UpsertAccount(ctx context.Context, userID, email, githubUsername string, now time.Time) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO accounts (user_id, email, github_username, created_at, updated_at)
		VALUES ($1, nullif($2, ''), nullif($3, ''), $4, $4)
		ON CONFLICT (user_id) DO UPDATE SET
			email = coalesce(nullif($2, ''), accounts.email),
			github_username = coalesce(nullif($3, ''), accounts.github_username),
			updated_at = $4`,
		userID, email, githubUsername, now.UTC())
	if err != nil {
		return fmt.Errorf("upsert account %s: %w", userID, err)
	}
	return nil
}

// GetAccount returns the account of a user.
func (q *Queries) GetAccount(ctx context.Context, userID string) (Account, error) {
	var a Account
	err := q.db.QueryRow(ctx, `SELECT user_id, email, github_username, created_at, updated_at FROM accounts
		WHERE user_id = $1`, userID).Scan(&a.UserID, &a.Email, &a.GitHubUsername, &a.CreatedAt, &a.UpdatedAt)
	return a, notFound(err)
}

// Accounts returns the accounts of the given users that exist, by user id.
func (q *Queries) Accounts(ctx context.Context, userIDs []string) (map[string]Account, error) {
	out := make(map[string]Account, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	rows, err := q.db.Query(ctx, `SELECT user_id, email, github_username, created_at, updated_at FROM accounts
		WHERE user_id = ANY($1)`, userIDs)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.UserID, &a.Email, &a.GitHubUsername, &a.CreatedAt, &a.UpdatedAt); err != nil {
			return nil, fmt.Errorf("read accounts: %w", err)
		}
		out[a.UserID] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	return out, nil
}

// Unsubscribe records that email wants no more marketing email.
func (q *Queries) Unsubscribe(ctx context.Context, email string, now time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO unsubscribes (email, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		strings.ToLower(strings.TrimSpace(email)), now.UTC())
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	return nil
}

// IsUnsubscribed reports whether email opted out of marketing email.
func (q *Queries) IsUnsubscribed(ctx context.Context, email string) (bool, error) {
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM unsubscribes WHERE email = $1)`,
		strings.ToLower(strings.TrimSpace(email))).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("check unsubscribe: %w", err)
	}
	return yes, nil
}
