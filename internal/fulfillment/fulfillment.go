// Package fulfillment is everything a purchase sets in motion once the
// reconciler has recorded it: the pipelines of durable steps scheduled for
// each lifecycle transition (completed, refunded, refund reversed, expired,
// payment failed, dispute opened or lost, access drift) and the handlers
// that run those steps: emails, GitHub or webhook access, analytics and
// follow-ups.
//
// Scheduling happens inside the caller's transaction, so a transition and
// its steps commit together. Handlers are level-based: each reads the
// purchase as it is when the step runs, not as it was when it was
// scheduled, so a refund that lands before a follow-up or a grant is
// respected. Every handler passes the step's idempotency key to the service
// it calls, and records why when it decides to do nothing.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// Step names. A step's name selects its handler; follow-up steps are named
// after their template (mail.FollowupOnboarding, ...).
const (
	StepConfirmation   = "purchase_confirmation" // customer: receipt
	StepAdminPurchase  = "admin_purchase"        // admin: new sale
	StepGrantAccess    = "grant_access"          // GitHub invitation or purchase.completed webhook
	StepAccessEmail    = "access_email"          // customer: access is ready; waits for StepGrantAccess
	StepAnalytics      = "analytics"             // PostHog capture, best-effort
	StepRevokeAccess   = "revoke_access"         // GitHub removal or purchase.refunded webhook
	StepAccessWebhook  = "access_webhook"        // purchase.partially_refunded webhook
	StepRefundEmail    = "refund_email"          // customer: refund_full or refund_partial
	StepAdminRefund    = "admin_refund"          // admin: refund or lost dispute
	StepAbandoned      = "abandoned_checkout"    // customer: checkout recovery (marketing)
	StepPaymentFailed  = "payment_failed_email"  // customer: async payment failed
	StepDisputeOpened  = "dispute_opened"        // operator: dispute opened
	StepRefundReversed = "refund_reversed"       // operator: a refund failed or was canceled
)

// Pipeline names, or their prefixes for pipelines that happen more than
// once per purchase.
const (
	PipelinePurchase      = "purchase"
	PipelineAbandoned     = "abandoned"
	PipelinePaymentFailed = "payment_failed"
	PrefixRefund          = "refund:"  // + Stripe refund id
	PrefixRestore         = "restore:" // + Stripe refund id
	PrefixDispute         = "dispute:" // + Stripe dispute id
	PrefixAccess          = "access:"  // + sequence number, per RequestAccess
	PrefixRepair          = "repair:"  // + wanted state, ":" and sequence number
	// PrefixRevoke + sequence number: the revocation of a grant that
	// completed after its purchase lost its entitlement.
	PrefixRevoke = "revoke:"
)

// Step tags.
const (
	// TagFollowup marks follow-up emails; a full refund or lost dispute
	// cancels those not sent yet.
	TagFollowup = "followup"
	// TagAccess marks grants and access emails; a full refund or lost
	// dispute cancels those not run yet.
	TagAccess = "access"
	// TagRevoke marks revocations; a reversed refund that makes the
	// purchase paid again cancels those not run yet.
	TagRevoke = "revoke"
	// TagHeld marks a grant held until the walk of the lists that recorded
	// its purchase ends (see purchasePlan.HoldGrant); WalkEnded releases
	// it.
	TagHeld = "held"
)

// Access providers, as config.Product.Access names them.
const (
	providerGitHub  = string(store.ProviderGitHub)
	providerWebhook = string(store.ProviderWebhook)
)

// Options are a Fulfillment's dependencies. DB, Engine, Config, Renderer
// and Mailer are required; the access providers are nil when not
// configured.
type Options struct {
	DB     *store.DB
	Engine *steps.Engine
	// Clock defaults to the wall clock.
	Clock clock.Clock
	// Log defaults to discarding.
	Log *slog.Logger
	// Config supplies the products, the fulfillment settings and the brand.
	Config   *config.Config
	Renderer *mail.Renderer
	Mailer   mail.Sender
	GitHub   *access.GitHub
	Webhook  *access.Webhook
	PostHog  *access.PostHog
	// Quiet schedules no customer email at all (paymentd reconcile
	// --quiet): purchases are recorded and access granted and revoked,
	// silently. Admin email follows the usual rules.
	Quiet bool
}

// Fulfillment schedules the steps of every purchase transition and runs
// them. It implements reconcile.Fulfillment.
type Fulfillment struct {
	db       *store.DB
	engine   *steps.Engine
	clock    clock.Clock
	log      *slog.Logger
	products map[string]config.Product
	cfg      config.Fulfillment
	renderer *mail.Renderer
	mailer   mail.Sender
	github   *access.GitHub
	webhook  *access.Webhook
	posthog  *access.PostHog
	quiet    bool
}

// defaultFollowups are registered whatever the configuration says, so a
// follow-up scheduled before a configuration change still finds its handler.
var defaultFollowups = []string{mail.FollowupOnboarding, mail.FollowupFeedback, mail.FollowupTestimonial}

// New checks opts and returns a Fulfillment. Each follow-up must name a
// distinct marketing template; the abandoned-checkout delay defaults to an
// hour and the notify window to 72 hours.
func New(opts Options) (*Fulfillment, error) {
	var missing []string
	for _, dep := range []struct {
		name string
		nil  bool
	}{
		{"DB", opts.DB == nil}, {"Engine", opts.Engine == nil}, {"Config", opts.Config == nil},
		{"Renderer", opts.Renderer == nil}, {"Mailer", opts.Mailer == nil},
	} {
		if dep.nil {
			missing = append(missing, dep.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("new fulfillment: missing %v", missing)
	}
	f := &Fulfillment{
		db: opts.DB, engine: opts.Engine, clock: opts.Clock, log: opts.Log, products: map[string]config.Product{},
		cfg: opts.Config.Fulfillment, renderer: opts.Renderer, mailer: opts.Mailer,
		github: opts.GitHub, webhook: opts.Webhook, posthog: opts.PostHog, quiet: opts.Quiet,
	}
	if f.clock == nil {
		f.clock = clock.Real{}
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.cfg.AbandonedDelay <= 0 {
		f.cfg.AbandonedDelay = config.Defaults().Fulfillment.AbandonedDelay
	}
	if f.cfg.NotifyWindow <= 0 {
		f.cfg.NotifyWindow = config.Defaults().Fulfillment.NotifyWindow
	}

	seen := map[string]bool{}
	for i, fu := range f.cfg.FollowUps {
		if !mail.IsMarketing(fu.Template) || fu.Template == mail.AbandonedCheckout {
			return nil, fmt.Errorf("new fulfillment: followups[%d]: %q is not a follow-up template (%v)", i, fu.Template, defaultFollowups)
		}
		if seen[fu.Template] {
			return nil, fmt.Errorf("new fulfillment: followups[%d]: template %s is listed twice", i, fu.Template)
		}
		if fu.Delay <= 0 {
			return nil, fmt.Errorf("new fulfillment: followups[%d]: delay must be positive", i)
		}
		seen[fu.Template] = true
	}
	for _, p := range opts.Config.Products {
		f.products[p.Key] = p
		switch {
		case p.Access == providerGitHub && f.github == nil:
			f.log.Warn("product grants GitHub access but GitHub is not configured (github.token); its grants will fail until it is",
				"product", p.Key)
		case p.Access == providerWebhook && f.webhook == nil:
			f.log.Warn("product grants access by webhook but the access webhook is not configured; its grants will fail until it is",
				"product", p.Key)
		}
	}
	return f, nil
}

// Register registers every step handler on the engine, including the
// operator alert that the engine schedules when a step fails for good.
func (f *Fulfillment) Register() {
	handlers := map[string]steps.Handler{
		StepConfirmation:   f.confirmation,
		StepAdminPurchase:  f.adminPurchase,
		StepGrantAccess:    f.grantAccess,
		StepAccessEmail:    f.accessEmail,
		StepAnalytics:      f.analytics,
		StepRevokeAccess:   f.revokeAccess,
		StepAccessWebhook:  f.accessWebhook,
		StepRefundEmail:    f.refundEmail,
		StepAdminRefund:    f.adminRefund,
		StepAbandoned:      f.abandonedCheckout,
		StepPaymentFailed:  f.paymentFailed,
		StepDisputeOpened:  f.disputeOpened,
		StepRefundReversed: f.refundReversed,
		steps.AlertStep:    f.operatorAlert,
	}
	for _, name := range defaultFollowups {
		handlers[name] = f.followup
	}
	for _, fu := range f.cfg.FollowUps {
		handlers[fu.Template] = f.followup
	}
	for name, h := range handlers {
		f.engine.Register(name, h)
	}
}

// product returns the configured product with key; an unknown key is a
// product without access whose name is the brand's.
func (f *Fulfillment) product(key string) config.Product {
	return f.products[key]
}

// hasAccess reports whether a product is delivered by an access provider.
func hasAccess(p config.Product) bool {
	return p.Access == providerGitHub || p.Access == providerWebhook
}

// purchase loads the job's purchase; a missing one cannot appear later.
func (f *Fulfillment) purchase(ctx context.Context, job *steps.Job) (store.Purchase, error) {
	p, err := f.db.GetPurchase(ctx, job.PurchaseID)
	if errors.Is(err, store.ErrNotFound) {
		return p, steps.Permanent(fmt.Errorf("purchase %s not found", job.PurchaseID))
	}
	if err != nil {
		return p, fmt.Errorf("load purchase: %w", err)
	}
	return p, nil
}

// account returns the buyer's account, or a zero one when the purchase has
// no user or the user no account.
func account(ctx context.Context, q *store.Queries, p store.Purchase) (store.Account, error) {
	if p.UserID == nil || *p.UserID == "" {
		return store.Account{}, nil
	}
	a, err := q.GetAccount(ctx, *p.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Account{}, nil
	}
	if err != nil {
		return a, fmt.Errorf("load account: %w", err)
	}
	return a, nil
}

// githubUsername is the login a purchase's access goes to: the one recorded
// on the purchase, else the one on the buyer's account.
func githubUsername(ctx context.Context, q *store.Queries, p store.Purchase) (string, error) {
	if p.GitHubUsername != nil && *p.GitHubUsername != "" {
		return *p.GitHubUsername, nil
	}
	a, err := account(ctx, q, p)
	if err != nil || a.GitHubUsername == nil {
		return "", err
	}
	return *a.GitHubUsername, nil
}

// email is the buyer's address: the purchase's, else the account's.
func (f *Fulfillment) email(ctx context.Context, p store.Purchase) (string, error) {
	if p.Email != nil && *p.Email != "" {
		return *p.Email, nil
	}
	a, err := account(ctx, f.db.Queries, p)
	if err != nil || a.Email == nil {
		return "", err
	}
	return *a.Email, nil
}

// deref returns *s, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// unfinished reports whether a step has yet to reach a final state.
func unfinished(s store.Step) bool { return !s.Status.Final() }
