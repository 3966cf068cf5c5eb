// Access steps: granting and revoking what the buyer paid for through the
// product's provider (a GitHub collaborator invitation, or a signed webhook
// to the product's backend), and best-effort analytics. A grant or
// revocation records the purchase's access state through Job.OnCommit, so
// the database changes in the same transaction that marks the step done.
package fulfillment

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// grantResult is the recorded result of a grant_access step, read by the
// access email that waits for it.
type grantResult struct {
	Granted             bool   `json:"granted"`
	Provider            string `json:"provider,omitempty"`
	Username            string `json:"github_username,omitempty"`
	InvitationID        int64  `json:"invitation_id,omitempty"`
	AlreadyCollaborator bool   `json:"already_collaborator,omitempty"`
	// Skipped says why access was not granted.
	Skipped string `json:"skipped,omitempty"`
}

// revokeResult is the recorded result of a revoke_access step.
type revokeResult struct {
	Revoked  bool   `json:"revoked"`
	Provider string `json:"provider,omitempty"`
	Username string `json:"github_username,omitempty"`
	// KeptFor names another purchase that still grants the same GitHub
	// user access, so the collaborator was left in place.
	KeptFor string `json:"kept_for,omitempty"`
	Skipped string `json:"skipped,omitempty"`
}

var (
	errGitHubUnconfigured  = errors.New("the product grants GitHub access but GitHub is not configured (github.token)")
	errWebhookUnconfigured = errors.New("the product grants access by webhook but access_webhook is not configured")
)

// grantAccess gives the buyer of a paid purchase what its product
// delivers. An unknown GitHub user fails the step at once (the engine then
// alerts the operator) and marks the purchase's access failed, so the
// buyer can give another username.
func (f *Fulfillment) grantAccess(ctx context.Context, job *steps.Job) (any, error) {
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
		username, err := githubUsername(ctx, f.db.Queries, p)
		if err != nil {
			return nil, err
		}
		if username == "" {
			return grantResult{Provider: providerGitHub, Skipped: "no GitHub username yet"}, nil
		}
		res, err := f.github.Grant(ctx, username, job.IdempotencyKey)
		if err != nil {
			if steps.IsPermanent(err) {
				if merr := f.db.MarkAccessFailed(ctx, p.ID, f.clock.Now()); merr != nil {
					job.Logger.Error("record failed access", "err", merr)
				}
			}
			return nil, err
		}
		var ref *string
		if res.InvitationID != 0 {
			s := strconv.FormatInt(res.InvitationID, 10)
			ref = &s
		}
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			if deref(p.GitHubUsername) != username {
				if err := q.SetGitHubUsername(ctx, p.ID, username, f.clock.Now()); err != nil {
					return err
				}
			}
			return q.SetAccess(ctx, p.ID, store.AccessGranted, ref, f.clock.Now())
		})
		return grantResult{Granted: true, Provider: providerGitHub, Username: username,
			InvitationID: res.InvitationID, AlreadyCollaborator: res.AlreadyCollaborator}, nil
	case providerWebhook:
		if f.webhook == nil {
			return nil, steps.Permanent(errWebhookUnconfigured)
		}
		if err := f.webhook.Send(ctx, access.EventPurchaseCompleted, job.IdempotencyKey,
			f.grantPayload(ctx, p, access.EventPurchaseCompleted)); err != nil {
			return nil, err
		}
		ref := job.IdempotencyKey // the delivered message's id
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			return q.SetAccess(ctx, p.ID, store.AccessGranted, &ref, f.clock.Now())
		})
		return grantResult{Granted: true, Provider: providerWebhook}, nil
	}
	return grantResult{Skipped: "the product has no access provider"}, nil
}

// revokeAccess takes access away from a purchase that is no longer paid
// for. A GitHub user that another paid purchase still grants access keeps
// it; the purchase's own access is recorded as revoked either way.
func (f *Fulfillment) revokeAccess(ctx context.Context, job *steps.Job) (any, error) {
	p, err := f.purchase(ctx, job)
	if err != nil {
		return nil, err
	}
	if p.Status.Entitled() {
		return revokeResult{Skipped: "the purchase is " + string(p.Status) + " again"}, nil
	}
	// Access never granted has nothing to take back; a grant that raced
	// this step is found by the access drift check, whose repairs always
	// ask the provider.
	if p.AccessState == store.AccessNone && !strings.HasPrefix(job.Pipeline, PrefixRepair) {
		return revokeResult{Skipped: "access was never granted"}, nil
	}
	markRevoked := func() {
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			return q.SetAccess(ctx, p.ID, store.AccessRevoked, p.AccessRef, f.clock.Now())
		})
	}
	switch f.product(p.ProductKey).Access {
	case providerGitHub:
		username := deref(p.GitHubUsername)
		if username == "" {
			return revokeResult{Provider: providerGitHub, Skipped: "no GitHub username recorded: access never granted"}, nil
		}
		if f.github == nil {
			return nil, steps.Permanent(errGitHubUnconfigured)
		}
		others, err := f.db.GrantedToGitHubUser(ctx, username, p.ID)
		if err != nil {
			return nil, err
		}
		for _, o := range others {
			if f.product(o.ProductKey).Access == providerGitHub {
				markRevoked()
				return revokeResult{Provider: providerGitHub, Username: username, KeptFor: o.ID}, nil
			}
		}
		var invitation int64
		if p.AccessRef != nil {
			invitation, _ = strconv.ParseInt(*p.AccessRef, 10, 64) // not a number: no invitation to name
		}
		if err := f.github.Revoke(ctx, username, invitation); err != nil {
			return nil, err
		}
		markRevoked()
		return revokeResult{Revoked: true, Provider: providerGitHub, Username: username}, nil
	case providerWebhook:
		if p.AccessState == store.AccessRevoked {
			return revokeResult{Provider: providerWebhook, Skipped: "access already revoked"}, nil
		}
		if f.webhook == nil {
			return nil, steps.Permanent(errWebhookUnconfigured)
		}
		if err := f.webhook.Send(ctx, access.EventPurchaseRefunded, job.IdempotencyKey,
			f.grantPayload(ctx, p, access.EventPurchaseRefunded)); err != nil {
			return nil, err
		}
		markRevoked()
		return revokeResult{Revoked: true, Provider: providerWebhook}, nil
	}
	return revokeResult{Skipped: "the product has no access provider"}, nil
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
