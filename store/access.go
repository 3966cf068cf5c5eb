// Access grants: what an access provider was asked to give a purchase's
// buyer, recorded before the provider is called, so a revocation reaches
// every grant that was attempted, and keyed for GitHub by the account's
// numeric id, which survives a rename. The purchase's access_state stays
// the summary the API shows.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GrantState is where a grant is. The access_grants table's CHECK lists
// the same values (TestGrantStatesMatchTheCheck).
type GrantState string

// Grant states.
const (
	// GrantPending: attempted, and may have taken effect.
	GrantPending GrantState = "pending"
	// GrantGranted: completed while the purchase was paid for.
	GrantGranted GrantState = "granted"
	// GrantRevoked: taken back, or let go of (a preexisting collaborator).
	GrantRevoked GrantState = "revoked"
)

// GrantStates lists every GrantState.
var GrantStates = []GrantState{GrantPending, GrantGranted, GrantRevoked}

// Active reports whether a grant in state s may have given access that has
// not been taken back.
func (s GrantState) Active() bool { return s == GrantPending || s == GrantGranted }

// Provider names an access provider, as config.Product.Access does.
type Provider string

// Access providers.
const (
	ProviderGitHub  Provider = "github"
	ProviderWebhook Provider = "webhook"
)

// Grant is one row of access_grants.
type Grant struct {
	ID int64 `json:"id"`
	// PurchaseID or SubscriptionID names what the grant is for (the other
	// is "").
	PurchaseID     string `json:"purchase_id,omitempty"`
	SubscriptionID string `json:"subscription_id,omitempty"`
	// OrderID is set, instead, on an order's GitHub grant as
	// GrantsToGitHubUser returns it (order_grants holds those).
	OrderID  string   `json:"order_id,omitempty"`
	Provider Provider `json:"provider"`
	// GitHubUserID is the GitHub account's id; 0 for a grant recorded
	// before ids were (its GitHubLogin is then all there is).
	GitHubUserID int64 `json:"github_user_id,omitempty"`
	// GitHubLogin is the account's login when it was granted.
	GitHubLogin string `json:"github_login,omitempty"`
	// InvitationID is the repository invitation GitHub created; 0 for none.
	InvitationID int64 `json:"invitation_id,omitempty"`
	// Preexisting marks a buyer who had access before paymentd granted
	// any: paymentd never removes them.
	Preexisting bool       `json:"preexisting"`
	State       GrantState `json:"state"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

const grantColumns = `id, coalesce(purchase_id::text, ''), coalesce(subscription_id::text, ''), provider,
	coalesce(github_user_id, 0), coalesce(github_login, ''), coalesce(invitation_id, 0), preexisting, state, created_at,
	updated_at`

func scanGrant(row pgx.CollectableRow) (Grant, error) {
	var g Grant
	err := row.Scan(&g.ID, &g.PurchaseID, &g.SubscriptionID, &g.Provider, &g.GitHubUserID, &g.GitHubLogin, &g.InvitationID,
		&g.Preexisting, &g.State, &g.CreatedAt, &g.UpdatedAt)
	return g, err
}

func (q *Queries) grants(ctx context.Context, sql string, args ...any) ([]Grant, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanGrant)
}

// grantAttemptUpsert ends the statements that record a grant attempt ($4
// the login, $6 the time): an attempt again for the same purchase, provider
// and account reuses the row, pending again, and keeps the decision whether
// the access was there before, unless the grant had been revoked.
const grantAttemptUpsert = `
	ON CONFLICT (purchase_id, provider, (coalesce(github_user_id, 0))) DO UPDATE SET
		state = 'pending',
		github_login = coalesce(nullif($4, ''), g.github_login),
		preexisting = CASE WHEN g.state = 'revoked' THEN EXCLUDED.preexisting ELSE g.preexisting END,
		updated_at = $6
	RETURNING ` + grantColumns

// RecordGrantAttempt records, before the provider is called, that g (its
// purchase, provider, and for GitHub the account's id and the login used)
// is about to be granted: the grant becomes pending, a new row or the one
// the purchase already has for the same account. g.Preexisting is taken
// only when the grant is new or had been revoked; a grant already under
// way or granted keeps what was decided when it began, so a retry does not
// mistake access paymentd gave for access the buyer already had.
func (q *Queries) RecordGrantAttempt(ctx context.Context, g Grant, now time.Time) (Grant, error) {
	rows, err := q.db.Query(ctx, `
		INSERT INTO access_grants AS g (purchase_id, provider, github_user_id, github_login, preexisting, state,
			created_at, updated_at)
		VALUES ($1, $2, nullif($3::bigint, 0), nullif($4, ''), $5, 'pending', $6, $6)
		`+grantAttemptUpsert,
		g.PurchaseID, g.Provider, g.GitHubUserID, g.GitHubLogin, g.Preexisting, now.UTC())
	if err != nil {
		return Grant{}, fmt.Errorf("record grant attempt for %s: %w", g.PurchaseID, err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanGrant)
	if err != nil {
		return Grant{}, fmt.Errorf("record grant attempt for %s: %w", g.PurchaseID, err)
	}
	return out, nil
}

// RecordGrantAttemptIfEntitled is RecordGrantAttempt under the purchase's
// row lock, in one statement: while the purchase is paid for (Entitled) the
// attempt is recorded; otherwise nothing is, and it reports false.
func (q *Queries) RecordGrantAttemptIfEntitled(ctx context.Context, g Grant, now time.Time) (Grant, bool, error) {
	rows, err := q.db.Query(ctx, `
		WITH p AS (SELECT id FROM purchases WHERE id = $1 AND status = ANY($7) FOR UPDATE)
		INSERT INTO access_grants AS g (purchase_id, provider, github_user_id, github_login, preexisting, state,
			created_at, updated_at)
		SELECT p.id, $2, nullif($3::bigint, 0), nullif($4, ''), $5, 'pending', $6, $6 FROM p
		`+grantAttemptUpsert,
		g.PurchaseID, g.Provider, g.GitHubUserID, g.GitHubLogin, g.Preexisting, now.UTC(), entitledStatuses)
	if err != nil {
		return Grant{}, false, fmt.Errorf("record grant attempt for %s: %w", g.PurchaseID, err)
	}
	out, err := pgx.CollectRows(rows, scanGrant)
	if err != nil {
		return Grant{}, false, fmt.Errorf("record grant attempt for %s: %w", g.PurchaseID, err)
	}
	if len(out) == 0 {
		return Grant{}, false, nil
	}
	return out[0], true, nil
}

// SettlePurchaseGrant records, under the purchase's row lock and in one
// statement, that grant grantID of a purchase still paid for (Entitled)
// completed: the grant granted (with invitationID; 0 keeps the one
// recorded), the purchase's access granted with ref and, when login is not
// "", login its GitHub username. It writes nothing, and reports false, for
// a purchase no longer paid for.
func (q *Queries) SettlePurchaseGrant(ctx context.Context, purchaseID string, grantID, invitationID int64, ref *string,
	login string, now time.Time) (bool, error) {
	var settled bool
	err := q.db.QueryRow(ctx, `
		WITH p AS (SELECT id FROM purchases WHERE id = $1 AND status = ANY($7) FOR UPDATE),
		g AS (
			UPDATE access_grants SET state = 'granted', invitation_id = coalesce(nullif($3::bigint, 0), invitation_id),
				updated_at = $4
			WHERE id = $2 AND EXISTS (SELECT 1 FROM p)
			RETURNING id),
		u AS (
			UPDATE purchases SET access_state = 'granted', access_ref = $5,
				github_username = coalesce(nullif($6, ''), github_username), updated_at = $4
			WHERE id = (SELECT id FROM p)
			RETURNING id)
		SELECT EXISTS (SELECT 1 FROM p)`,
		purchaseID, grantID, invitationID, now.UTC(), ref, login, entitledStatuses).Scan(&settled)
	if err != nil {
		return false, fmt.Errorf("settle grant %d of %s: %w", grantID, purchaseID, err)
	}
	return settled, nil
}

// MarkGrantGranted records that grant id completed, with the invitation
// GitHub created (0 keeps the one recorded).
func (q *Queries) MarkGrantGranted(ctx context.Context, id, invitationID int64, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE access_grants SET state = 'granted',
			invitation_id = coalesce(nullif($2::bigint, 0), invitation_id), updated_at = $3
		WHERE id = $1`, id, invitationID, now.UTC())
	if err != nil {
		return fmt.Errorf("mark grant %d granted: %w", id, err)
	}
	return nil
}

// MarkGrantsRevoked records that the grants ids were taken back.
func (q *Queries) MarkGrantsRevoked(ctx context.Context, ids []int64, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := q.db.Exec(ctx, `UPDATE access_grants SET state = 'revoked', updated_at = $2 WHERE id = ANY($1)`,
		ids, now.UTC())
	if err != nil {
		return fmt.Errorf("mark grants %v revoked: %w", ids, err)
	}
	return nil
}

// SetGrantUserID records the GitHub account id of a grant recorded without
// one, once it has been looked up from the login. When the purchase already
// has a grant for that account, the row is left as it is.
func (q *Queries) SetGrantUserID(ctx context.Context, id, githubUserID int64, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE access_grants g SET github_user_id = $2, updated_at = $3
		WHERE g.id = $1 AND g.github_user_id IS NULL AND NOT EXISTS (
			SELECT 1 FROM access_grants o
			WHERE o.purchase_id = g.purchase_id AND o.provider = g.provider AND o.github_user_id = $2)`,
		id, githubUserID, now.UTC())
	if err != nil {
		return fmt.Errorf("set github user of grant %d: %w", id, err)
	}
	return nil
}

// PurchaseGrants returns a purchase's grants, oldest first.
func (q *Queries) PurchaseGrants(ctx context.Context, purchaseID string) ([]Grant, error) {
	gs, err := q.grants(ctx, `SELECT `+grantColumns+` FROM access_grants WHERE purchase_id = $1 ORDER BY id`, purchaseID)
	if err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", purchaseID, err)
	}
	return gs, nil
}

// GrantsOf returns the grants of the given purchases, oldest first, keyed
// by purchase id.
func (q *Queries) GrantsOf(ctx context.Context, purchaseIDs []string) (map[string][]Grant, error) {
	return q.grantsBySubject(ctx, "purchase_id", purchaseIDs, func(g Grant) string { return g.PurchaseID })
}

// SubscriptionGrantsOf returns the grants of the given subscriptions,
// oldest first, keyed by subscription id.
func (q *Queries) SubscriptionGrantsOf(ctx context.Context, subscriptionIDs []string) (map[string][]Grant, error) {
	return q.grantsBySubject(ctx, "subscription_id", subscriptionIDs, func(g Grant) string { return g.SubscriptionID })
}

// grantsBySubject lists the grants whose column (purchase_id or
// subscription_id) is one of ids, keyed by that column's value (key).
func (q *Queries) grantsBySubject(ctx context.Context, column string, ids []string, key func(Grant) string) (map[string][]Grant, error) {
	gs, err := q.grants(ctx, `SELECT `+grantColumns+` FROM access_grants WHERE `+column+` = ANY($1::uuid[])
		ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("list grants by %s: %w", column, err)
	}
	out := make(map[string][]Grant, len(ids))
	for _, g := range gs {
		out[key(g)] = append(out[key(g)], g)
	}
	return out, nil
}

// GrantsToGitHubUser returns the active GitHub grants of paid, not fully
// refunded purchases and orders, and of subscriptions that entitle their
// customer, other than excludeID's (a purchase's, a subscription's or an
// order's id), that went to the GitHub account githubUserID, or, for
// grants recorded without an id, to login (compared case-insensitively):
// who else keeps that account in the repository, whatever kind of sale
// granted it. Every lookup is indexed.
func (q *Queries) GrantsToGitHubUser(ctx context.Context, githubUserID int64, login, excludeID string) ([]Grant, error) {
	rows, err := q.db.Query(ctx, grantsToGitHubUserSQL, githubUserID, login, excludeID)
	if err != nil {
		return nil, fmt.Errorf("list grants to github user %d (%s): %w", githubUserID, login, err)
	}
	gs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Grant, error) {
		var g Grant
		err := row.Scan(&g.ID, &g.PurchaseID, &g.SubscriptionID, &g.Provider, &g.GitHubUserID, &g.GitHubLogin,
			&g.InvitationID, &g.Preexisting, &g.State, &g.CreatedAt, &g.UpdatedAt, &g.OrderID)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants to github user %d (%s): %w", githubUserID, login, err)
	}
	return gs, nil
}

// grantsToGitHubUserSQL is GrantsToGitHubUser's statement; a test checks
// with EXPLAIN that both of its lookups use their partial index.
const grantsToGitHubUserSQL = `SELECT ` + grantColumns + `, '' FROM access_grants g
	WHERE g.provider = 'github' AND g.state IN ('pending', 'granted') AND coalesce(g.purchase_id, g.subscription_id) <> $3::uuid
		AND ((g.github_user_id = $1 AND g.github_user_id IS NOT NULL)
			OR (g.github_user_id IS NULL AND lower(g.github_login) = lower($2)))
		AND (EXISTS (SELECT 1 FROM purchases p WHERE p.id = g.purchase_id
				AND p.status IN ('completed', 'partially_refunded'))
			OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = g.subscription_id AND s.entitled))
	UNION ALL
	SELECT g.id, '', '', g.provider, g.github_user_id, coalesce(g.github_login, ''), coalesce(g.invitation_id, 0),
		g.preexisting, g.state, g.created_at, g.updated_at, g.order_id::text
	FROM order_grants g
	WHERE g.provider = 'github' AND g.state IN ('pending', 'granted') AND g.order_id <> $3::uuid AND g.github_user_id = $1
		AND EXISTS (SELECT 1 FROM orders o WHERE o.id = g.order_id AND o.status IN ('paid', 'partially_refunded'))`

// PurchasesWithOpenWork returns which of the given purchases have steps not
// yet run, other than follow-ups: work in flight that the access drift
// check must not second-guess.
func (q *Queries) PurchasesWithOpenWork(ctx context.Context, purchaseIDs []string) (map[string]bool, error) {
	return q.subjectSet(ctx, `SELECT DISTINCT subject_id::text FROM steps
		WHERE subject_id = ANY($1::uuid[]) AND status IN ('waiting', 'pending', 'running')
			AND NOT ('followup' = ANY(tags))`, purchaseIDs)
}

// SubjectsWithOpenSteps reports which of the subjects have a step named one
// of names still to run (waiting, pending or running).
func (q *Queries) SubjectsWithOpenSteps(ctx context.Context, subjectIDs, names []string) (map[string]bool, error) {
	return q.subjectSet(ctx, `SELECT DISTINCT subject_id::text FROM steps
		WHERE subject_id = ANY($1::uuid[]) AND name = ANY($2) AND status IN ('waiting', 'pending', 'running')`,
		subjectIDs, names)
}

// subjectSet runs a query of subject ids and returns them as a set.
func (q *Queries) subjectSet(ctx context.Context, sql string, args ...any) (map[string]bool, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("look up open steps: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up open steps: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}
