// Access steps: granting and revoking what the buyer paid for through the
// product's provider (a GitHub collaborator invitation, or a signed webhook
// to the product's backend), and best-effort analytics. A grant or
// revocation records the purchase's access state through Job.OnCommit, so
// the database changes in the same transaction that marks the step done.
package fulfillment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// grantArgs is the input of a grant_access step.
type grantArgs struct {
	// Login, when set, is the GitHub login to grant to (a username the
	// buyer gave to move their access). Without it the grant goes to the
	// account the purchase's last grant recorded, by id, as long as the
	// purchase still names that grant's login; else to the purchase's (or
	// the account's) GitHub username.
	Login string `json:"github_username,omitempty"`
}

// grantResult is the recorded result of a grant_access step, read by the
// access email and the move's revocation that wait for it.
type grantResult struct {
	Granted      bool   `json:"granted"`
	Provider     string `json:"provider,omitempty"`
	GrantID      int64  `json:"grant_id,omitempty"`
	Username     string `json:"github_username,omitempty"`
	GitHubUserID int64  `json:"github_user_id,omitempty"`
	InvitationID int64  `json:"invitation_id,omitempty"`
	// AlreadyCollaborator reports that the user had access already, so no
	// invitation was sent; Preexisting that nobody paymentd granted gave it.
	AlreadyCollaborator bool `json:"already_collaborator,omitempty"`
	Preexisting         bool `json:"preexisting,omitempty"`
	// Skipped says why access was not granted.
	Skipped string `json:"skipped,omitempty"`
}

var (
	errGitHubUnconfigured  = errors.New("the product grants GitHub access but GitHub is not configured (github.token)")
	errWebhookUnconfigured = errors.New("the product grants access by webhook but access_webhook is not configured")
)

// grantAccess gives the buyer of a paid purchase what its product
// delivers. Before calling the provider it records the attempt, in a
// transaction that locks the purchase, so a refund either comes first (and
// nothing is granted) or finds the attempt (and revokes it). A grant that
// completes after the purchase lost its entitlement does not mark access
// granted: it schedules its own revocation (settleGrant).
func (f *Fulfillment) grantAccess(ctx context.Context, job *steps.Job) (any, error) {
	var args grantArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, err := f.purchase(ctx, job)
	if err != nil {
		return nil, err
	}
	if !p.Status.Entitled() {
		return grantResult{Skipped: "the purchase is " + string(p.Status)}, nil
	}
	switch f.product(p.ProductKey).Access {
	case providerGitHub:
		if f.github == nil {
			return nil, steps.Permanent(errGitHubUnconfigured)
		}
		return f.grantGitHub(ctx, job, p, args)
	case providerWebhook:
		if f.webhook == nil {
			return nil, steps.Permanent(errWebhookUnconfigured)
		}
		g, err := f.recordAttempt(ctx, p.ID, store.Grant{Provider: store.ProviderWebhook}, nil)
		if err != nil || g == nil {
			return skippedGrant(err)
		}
		if err := f.webhook.Send(ctx, access.EventPurchaseCompleted, job.IdempotencyKey,
			f.grantPayload(ctx, p, access.EventPurchaseCompleted)); err != nil {
			return nil, err
		}
		ref := job.IdempotencyKey // the delivered message's id
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			return f.settleGrant(ctx, q, p.ID, *g, &ref, "")
		})
		return grantResult{Granted: true, Provider: providerWebhook, GrantID: g.ID}, nil
	}
	return grantResult{Skipped: "the product has no access provider"}, nil
}

// recordAttempt records that g is about to be granted to purchaseID, in a
// transaction that locks the purchase and first checks that it is still
// paid for; decide, when not nil, fills in what depends on the locked
// purchase's other grants. A nil grant means the purchase lost its
// entitlement: grant nothing.
func (f *Fulfillment) recordAttempt(ctx context.Context, purchaseID string, g store.Grant,
	decide func(ctx context.Context, q *store.Queries, g *store.Grant) error) (*store.Grant, error) {
	if decide == nil {
		// Nothing to read first: one statement, under the row lock.
		g.PurchaseID = purchaseID
		recorded, ok, err := f.db.RecordGrantAttemptIfEntitled(ctx, g, f.clock.Now())
		if err != nil || !ok {
			return nil, err
		}
		return &recorded, nil
	}
	var out *store.Grant
	err := f.db.InTx(ctx, func(q *store.Queries) error {
		out = nil
		cur, err := q.LockPurchase(ctx, purchaseID)
		if err != nil || !cur.Status.Entitled() {
			return err
		}
		g.PurchaseID = purchaseID
		if decide != nil {
			if err := decide(ctx, q, &g); err != nil {
				return err
			}
		}
		recorded, err := q.RecordGrantAttempt(ctx, g, f.clock.Now())
		out = &recorded
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record grant attempt: %w", err)
	}
	return out, nil
}

// skippedGrant is the outcome of a grant whose attempt was not recorded:
// an error, or a purchase that lost its entitlement meanwhile.
func skippedGrant(err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return grantResult{Skipped: "the purchase lost its entitlement before the grant"}, nil
}

// settleGrant runs in the transaction that completes a grant step. While
// the purchase is paid for, the grant and the purchase's access are marked
// granted (and login, when not "", becomes the purchase's GitHub username).
// Otherwise a refund came while the provider was being called: access is
// not marked granted, and the grant is revoked, by a step of its own
// unless a revocation that will find it is still to run.
func (f *Fulfillment) settleGrant(ctx context.Context, q *store.Queries, purchaseID string, g store.Grant,
	ref *string, login string) error {
	settle := func() (bool, error) {
		return q.SettlePurchaseGrant(ctx, purchaseID, g.ID, g.InvitationID, ref, login, f.clock.Now())
	}
	if settled, err := settle(); err != nil || settled {
		return err // the common case, the purchase still paid for: one statement
	}
	p, err := q.LockPurchase(ctx, purchaseID)
	if err != nil {
		return err
	}
	if p.Status.Entitled() {
		// Paid for again since the look above (a refund reversed): held
		// now, it settles.
		_, err := settle()
		return err
	}
	f.log.Warn("a grant completed after its purchase lost its entitlement; revoking it",
		"purchase_id", p.ID, "grant_id", g.ID, "status", string(p.Status))
	return f.scheduleRevoke(ctx, q, p, g.ID)
}

// scheduleRevoke schedules the revocation of grant grantID, unless a
// revocation of every active grant is still to run: it will find this one.
func (f *Fulfillment) scheduleRevoke(ctx context.Context, q *store.Queries, p store.Purchase, grantID int64) error {
	existing, err := q.PurchaseSteps(ctx, p.ID)
	if err != nil {
		return err
	}
	for _, s := range existing {
		if s.Name != StepRevokeAccess || (s.Status != store.StepWaiting && s.Status != store.StepPending) {
			continue
		}
		var a revokeArgs
		if json.Unmarshal(s.Args, &a) == nil && !a.Superseded && len(a.GrantIDs) == 0 {
			return nil
		}
	}
	name := PrefixRevoke + strconv.Itoa(countPipelines(existing, PrefixRevoke)+1)
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: name, Steps: []steps.Step{{
		Name: StepRevokeAccess, Tags: []string{TagRevoke}, Args: revokeArgs{GrantIDs: []int64{grantID}}}}})
	return err
}

// revokeArgs is the input of a revoke_access step. The zero value takes
// back every grant of the purchase that may be active.
type revokeArgs struct {
	// GrantIDs names the grants to take back, whatever their recorded
	// state: grants that completed after the purchase lost its entitlement.
	GrantIDs []int64 `json:"grant_ids,omitempty"`
	// All takes back every grant the purchase ever had (drift repair: the
	// provider still shows access).
	All bool `json:"all,omitempty"`
	// Superseded takes back, from a purchase still paid for, the active
	// GitHub grants to accounts other than the one the same pipeline's
	// grant went to: the old login of a move.
	Superseded bool `json:"superseded,omitempty"`
}

// revokeResult is the recorded result of a revoke_access step.
type revokeResult struct {
	Revoked  bool            `json:"revoked"`
	Provider string          `json:"provider,omitempty"`
	Grants   []revokeOutcome `json:"grants,omitempty"`
	Skipped  string          `json:"skipped,omitempty"`
}

// revokeOutcome is what became of one grant.
type revokeOutcome struct {
	GrantID      int64  `json:"grant_id"`
	GitHubUserID int64  `json:"github_user_id,omitempty"`
	Username     string `json:"github_username,omitempty"`
	// Outcome is removed, preexisting (left in place), kept_for (another
	// paid purchase grants the same account: KeptFor), or account_deleted.
	Outcome string `json:"outcome"`
	KeptFor string `json:"kept_for,omitempty"`
}

// revokeAccess takes access away: from a purchase that is no longer paid
// for, every grant that was attempted (or those args name); from a moved
// purchase, the grants its new one supersedes. A GitHub account that
// another paid purchase still grants keeps its access, and one that had
// access before paymentd granted any is never removed; the grants are
// recorded as revoked either way.
func (f *Fulfillment) revokeAccess(ctx context.Context, job *steps.Job) (any, error) {
	var args revokeArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, err := f.purchase(ctx, job)
	if err != nil {
		return nil, err
	}
	if !args.Superseded && p.Status.Entitled() {
		return revokeResult{Skipped: "the purchase is " + string(p.Status) + " again"}, nil
	}
	targets, skip, err := f.revokeTargets(ctx, job, p, args)
	if err != nil || skip != "" {
		return revokeResult{Skipped: skip}, err
	}
	res := revokeResult{Revoked: true, Provider: f.product(p.ProductKey).Access}
	var resolved map[int64]int64
	switch res.Provider {
	case providerGitHub:
		if f.github == nil {
			return nil, steps.Permanent(errGitHubUnconfigured)
		}
		if res.Grants, resolved, err = f.revokeGitHub(ctx, p, targets); err != nil {
			return nil, err
		}
	case providerWebhook:
		if f.webhook == nil {
			return nil, steps.Permanent(errWebhookUnconfigured)
		}
		if err := f.webhook.Send(ctx, access.EventPurchaseRefunded, job.IdempotencyKey,
			f.grantPayload(ctx, p, access.EventPurchaseRefunded)); err != nil {
			return nil, err
		}
	default:
		return revokeResult{Skipped: "the product has no access provider"}, nil
	}
	job.OnCommit(func(ctx context.Context, q *store.Queries) error {
		return f.settleRevoke(ctx, q, p, targets, resolved, args.Superseded)
	})
	return res, nil
}

// settleRevoke runs in the transaction that completes a revocation: the
// grants taken back are marked revoked (and the account ids looked up for
// grants recorded without one are remembered), and so is the purchase's
// access, unless it keeps a newer grant (superseded).
func (f *Fulfillment) settleRevoke(ctx context.Context, q *store.Queries, p store.Purchase, revoked []store.Grant,
	resolved map[int64]int64, superseded bool) error {
	if _, err := q.LockPurchase(ctx, p.ID); err != nil {
		return err
	}
	now := f.clock.Now()
	ids := make([]int64, len(revoked))
	for i, g := range revoked {
		ids[i] = g.ID
	}
	if err := q.MarkGrantsRevoked(ctx, ids, now); err != nil {
		return err
	}
	for grantID, userID := range resolved {
		if err := q.SetGrantUserID(ctx, grantID, userID, now); err != nil {
			return err
		}
	}
	if superseded {
		return nil
	}
	return q.SetAccess(ctx, p.ID, store.AccessRevoked, p.AccessRef, now)
}

// revokeTargets returns the grants a revocation takes back, or why there
// is nothing to do.
func (f *Fulfillment) revokeTargets(ctx context.Context, job *steps.Job, p store.Purchase, args revokeArgs) (
	[]store.Grant, string, error) {
	grants, err := f.db.PurchaseGrants(ctx, p.ID)
	if err != nil {
		return nil, "", err
	}
	var keep func(store.Grant) bool
	switch {
	case args.Superseded:
		var g grantResult
		err := job.Prior(ctx, StepGrantAccess, &g)
		if errors.Is(err, steps.ErrNoResult) || (err == nil && !g.Granted) {
			return nil, "the grant that would supersede them did not happen", nil
		}
		if err != nil {
			return nil, "", err
		}
		keep = func(o store.Grant) bool {
			if !o.State.Active() || o.ID == g.GrantID {
				return false
			}
			if o.GitHubUserID == 0 {
				return !strings.EqualFold(o.GitHubLogin, g.Username)
			}
			return o.GitHubUserID != g.GitHubUserID
		}
	case len(args.GrantIDs) > 0:
		keep = func(o store.Grant) bool { return slices.Contains(args.GrantIDs, o.ID) }
	case args.All:
		keep = func(store.Grant) bool { return true }
	default:
		keep = func(o store.Grant) bool { return o.State.Active() }
	}
	var out []store.Grant
	for _, g := range grants {
		if keep(g) {
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return nil, "access was never granted", nil
	}
	return out, "", nil
}

// accessWebhook tells a webhook product's backend about an event that
// keeps access (a partial refund).
func (f *Fulfillment) accessWebhook(ctx context.Context, job *steps.Job) (any, error) {
	var args webhookArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, err := f.purchase(ctx, job)
	if err != nil {
		return nil, err
	}
	if f.webhook == nil {
		return nil, steps.Permanent(errWebhookUnconfigured)
	}
	if err := f.webhook.Send(ctx, args.Event, job.IdempotencyKey, f.grantPayload(ctx, p, args.Event)); err != nil {
		return nil, err
	}
	return map[string]any{"delivered": true, "event": args.Event}, nil
}

// grantPayload is the webhook's data for p.
func (f *Fulfillment) grantPayload(ctx context.Context, p store.Purchase, event string) access.Grant {
	email, _ := f.email(ctx, p) // the purchase's own address, else best effort
	return access.Grant{
		PurchaseID: p.ID, UserID: deref(p.UserID), Email: email, ProductKey: p.ProductKey,
		GitHubUsername: deref(p.GitHubUsername), AmountTotal: p.AmountTotal, AmountRefunded: p.AmountRefunded,
		Currency: p.Currency, Event: event,
	}
}

// analyticsResult is the recorded result of an analytics step.
type analyticsResult struct {
	Captured bool   `json:"captured"`
	Event    string `json:"event,omitempty"`
	Error    string `json:"error,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
}

// analytics captures an event in PostHog. It is best-effort: a failure is
// logged and recorded, and the step is done; it never retries or alerts.
func (f *Fulfillment) analytics(ctx context.Context, job *steps.Job) (any, error) {
	var args analyticsArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if f.posthog == nil {
		return analyticsResult{Skipped: "PostHog is not configured"}, nil
	}
	p, err := f.purchase(ctx, job)
	if err != nil {
		job.Logger.Warn("analytics skipped", "err", err)
		return analyticsResult{Event: args.Event, Error: err.Error()}, nil
	}
	distinct := deref(p.UserID)
	if distinct == "" {
		distinct = deref(p.Email)
	}
	if distinct == "" {
		distinct = p.ID
	}
	props := map[string]any{
		"purchase_id": p.ID, "product": p.ProductKey, "amount": args.Amount, "currency": p.Currency,
		"stripe_session_id": p.StripeSessionID,
	}
	if err := f.posthog.Capture(ctx, distinct, args.Event, props, job.IdempotencyKey); err != nil {
		job.Logger.Warn("analytics capture failed; not retried", "event", args.Event, "err", err)
		return analyticsResult{Event: args.Event, Error: err.Error()}, nil
	}
	return analyticsResult{Captured: true, Event: args.Event}, nil
}
