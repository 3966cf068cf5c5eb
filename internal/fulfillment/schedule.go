// Scheduling: one method per purchase transition, each called inside the
// transaction that records the transition, each scheduling a pipeline whose
// name makes it unique per purchase, so calling it again is a no-op.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// followupArgs is the input of a follow-up step.
type followupArgs struct {
	Template string `json:"template"`
}

// analyticsArgs is the input of an analytics step.
type analyticsArgs struct {
	Event  string `json:"event"`
	Amount int64  `json:"amount"`
}

// webhookArgs is the input of an access_webhook step.
type webhookArgs struct {
	Event string `json:"event"`
}

// refundArgs is the input of the refund and lost-dispute steps: the facts
// of the transition, fixed when it happened.
type refundArgs struct {
	RefundID  string `json:"refund_id,omitempty"`
	DisputeID string `json:"dispute_id,omitempty"`
	// Amount is this refund's (or dispute's) amount; Refunded is the
	// purchase's cumulative refunded amount including it; Total is what
	// was paid. All in minor units of Currency.
	Amount   int64  `json:"amount"`
	Refunded int64  `json:"refunded"`
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
	// Full is set when Refunded covers Total (or a dispute was lost):
	// access is revoked.
	Full   bool   `json:"full"`
	Reason string `json:"reason,omitempty"`
}

// disputeArgs is the input of a dispute_opened step.
type disputeArgs struct {
	DisputeID string `json:"dispute_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reason    string `json:"reason"`
}

// reversalArgs is the input of a refund_reversed step.
type reversalArgs struct {
	RefundID string `json:"refund_id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Status   string `json:"status"`
}

// Completed schedules, for each purchase that just became completed, the
// purchase pipeline as planPurchase decides: confirmation and admin emails,
// the access grant and access email when the product has an access
// provider and the buyer gave what it needs (a GitHub username, on the
// purchase or the account, for GitHub products), analytics when PostHog is
// configured, and the follow-ups dated from p.CompletedAt (the payment
// time) that are still ahead. A payment older than the notify window is
// fulfilled without any email, and logged. Purchases a walk of the lists
// recorded (walk set) whose payment is older than the notify window have
// their grant held until WalkEnded: the walk reads their refunds and
// disputes after their sessions. Purchases recorded together (a page of a
// pass) are scheduled together: their accounts are read in one query and
// their pipelines written in one statement.
func (f *Fulfillment) Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, walk bool) error {
	if len(ps) == 0 {
		return nil
	}
	ready, err := f.accessReadyAll(ctx, q, ps)
	if err != nil {
		return fmt.Errorf("schedule %d purchases: %w", len(ps), err)
	}
	now := f.clock.Now()
	pipes := make([]steps.Pipeline, 0, len(ps))
	for _, p := range ps {
		pipes = append(pipes, f.purchasePipeline(p, ready[p.ID], walk, now))
	}
	_, err = f.engine.ScheduleAll(ctx, q, pipes)
	return err
}

// purchasePipeline is the purchase pipeline of p, completed, whose access
// is ready or not, recorded by a walk of the lists or not.
func (f *Fulfillment) purchasePipeline(p store.Purchase, ready, walk bool, now time.Time) steps.Pipeline {
	anchor := now
	if p.CompletedAt != nil {
		anchor = *p.CompletedAt
	}
	plan := planPurchase(purchaseFacts{Now: now, CompletedAt: anchor, NotifyWindow: f.cfg.NotifyWindow,
		Quiet: f.quiet, Access: ready, FollowUps: f.cfg.FollowUps, Walk: walk,
		Webhook: f.product(p.ProductKey).Access == providerWebhook})
	if plan.Stale {
		f.log.Info("payment older than the notify window: no customer or admin email",
			"purchase_id", p.ID, "completed_at", anchor, "notify_window", f.cfg.NotifyWindow.String())
	}
	var list []steps.Step
	if plan.Confirmation {
		list = append(list, steps.Step{Name: StepConfirmation})
	}
	if plan.AdminEmail {
		list = append(list, steps.Step{Name: StepAdminPurchase})
	}
	switch {
	case plan.HoldGrant:
		// Delays count from the payment; the hold from now. A refund or a
		// lost dispute cancels it (TagAccess) before WalkEnded releases it.
		list = append(list, steps.Step{Name: StepGrantAccess, Tags: []string{TagAccess, TagHeld},
			Delay: now.Add(grantHold).Sub(anchor)})
	case plan.Grant:
		list = append(list, steps.Step{Name: StepGrantAccess, Tags: []string{TagAccess}})
	}
	if plan.AccessEmail {
		list = append(list, steps.Step{Name: StepAccessEmail, After: StepGrantAccess, Tags: []string{TagAccess}})
	}
	if f.posthog != nil {
		list = append(list, steps.Step{Name: StepAnalytics, Args: analyticsArgs{Event: "purchase_completed", Amount: p.AmountTotal}})
	}
	for _, fu := range plan.FollowUps {
		list = append(list, steps.Step{Name: fu.Template, Delay: fu.Delay, Tags: []string{TagFollowup},
			Args: followupArgs{Template: fu.Template}})
	}
	return steps.Pipeline{PurchaseID: p.ID, Name: PipelinePurchase, Anchor: anchor, Steps: list}
}

// WalkEnded releases the grants Completed held for purchases a walk of the
// lists recorded: the walk has read the refunds and disputes since its
// window's start, so those that took a purchase's entitlement away have
// canceled its held grant, and what is still held is owed. It releases
// every held grant, whichever walk held it: a walk that ends has read the
// refunds and disputes of every unfinished walk before it (it resumed
// them, or its window covers theirs).
func (f *Fulfillment) WalkEnded(ctx context.Context, q *store.Queries) error {
	n, err := q.ReleaseHeldSteps(ctx, TagHeld, f.clock.Now())
	if err != nil {
		return fmt.Errorf("release held grants: %w", err)
	}
	if n > 0 {
		f.log.Info("released the access grants held for the walk of the lists", "grants", n)
	}
	return nil
}

// grantSteps are the grant and, unless quiet, the access email that waits
// for it. args is the grant's input (nil for none).
func (f *Fulfillment) grantSteps(args any) []steps.Step {
	list := []steps.Step{{Name: StepGrantAccess, Tags: []string{TagAccess}, Args: args}}
	if !f.quiet {
		list = append(list, steps.Step{Name: StepAccessEmail, After: StepGrantAccess, Tags: []string{TagAccess}})
	}
	return list
}

// accessReady reports whether p's product has an access provider and the
// buyer gave what it needs.
func (f *Fulfillment) accessReady(ctx context.Context, q *store.Queries, p store.Purchase) (bool, error) {
	ready, err := f.accessReadyAll(ctx, q, []store.Purchase{p})
	return ready[p.ID], err
}

// accessReadyAll is accessReady for several purchases, by purchase id,
// with the accounts it needs read in one query.
func (f *Fulfillment) accessReadyAll(ctx context.Context, q *store.Queries, ps []store.Purchase) (map[string]bool, error) {
	ready := make(map[string]bool, len(ps))
	var users []string
	for _, p := range ps {
		switch f.product(p.ProductKey).Access {
		case providerWebhook:
			ready[p.ID] = true
		case providerGitHub:
			if p.GitHubUsername != nil && *p.GitHubUsername != "" {
				ready[p.ID] = true
			} else if p.UserID != nil && *p.UserID != "" {
				users = append(users, *p.UserID)
			}
		}
	}
	if len(users) == 0 {
		return ready, nil
	}
	accounts, err := q.Accounts(ctx, users)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if f.product(p.ProductKey).Access != providerGitHub || ready[p.ID] || p.UserID == nil {
			continue
		}
		if a, ok := accounts[*p.UserID]; ok && a.GitHubUsername != nil && *a.GitHubUsername != "" {
			ready[p.ID] = true
		}
	}
	return ready, nil
}

// Refunded schedules the pipeline of refund r as planRefund decides. A
// full refund (p.AmountRefunded >= p.AmountTotal) revokes access, emails
// the customer and the admin, and cancels the follow-ups and any grant not
// run yet; a partial one emails both amounts and keeps access (telling a
// webhook product's backend). A refund older than the notify window is
// acted on without email, and logged.
func (f *Fulfillment) Refunded(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	full := p.AmountRefunded >= p.AmountTotal
	args := refundArgs{RefundID: r.ID, Amount: r.Amount, Refunded: p.AmountRefunded, Total: p.AmountTotal,
		Currency: currencyOf(r.Currency, p.Currency), Full: full}
	prod := f.product(p.ProductKey)
	provider := ""
	if hasAccess(prod) {
		provider = prod.Access
	}
	plan := planRefund(refundFacts{Now: f.clock.Now(), RefundedAt: r.CreatedAt, NotifyWindow: f.cfg.NotifyWindow,
		Quiet: f.quiet, Full: full, Provider: provider})
	if plan.Stale {
		f.log.Info("refund older than the notify window: no customer or admin email",
			"purchase_id", p.ID, "stripe_refund_id", r.ID, "refunded_at", r.CreatedAt)
	}
	event := "purchase_partially_refunded"
	var list []steps.Step
	if full {
		event = "purchase_refunded"
		if err := f.cancelEntitlement(ctx, q, p.ID); err != nil {
			return err
		}
	}
	if plan.Revoke {
		list = append(list, steps.Step{Name: StepRevokeAccess, Tags: []string{TagRevoke}})
	}
	if plan.AccessWebhook {
		list = append(list, steps.Step{Name: StepAccessWebhook, Args: webhookArgs{Event: access.EventPurchasePartiallyRefunded}})
	}
	if plan.CustomerEmail {
		list = append(list, steps.Step{Name: StepRefundEmail, Args: args})
	}
	if plan.AdminEmail {
		list = append(list, steps.Step{Name: StepAdminRefund, Args: args})
	}
	list = append(list, steps.Step{Name: StepAnalytics, Args: analyticsArgs{Event: event, Amount: r.Amount}})
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PrefixRefund + r.ID, Steps: list})
	return err
}

// cancelEntitlement cancels what a purchase that lost its entitlement must
// no longer do: follow-ups, and grants and access emails not run yet.
func (f *Fulfillment) cancelEntitlement(ctx context.Context, q *store.Queries, purchaseID string) error {
	for _, tag := range []string{TagFollowup, TagAccess} {
		if _, err := f.engine.Cancel(ctx, q, purchaseID, tag); err != nil {
			return fmt.Errorf("cancel %s steps of %s: %w", tag, purchaseID, err)
		}
	}
	return nil
}

// RefundReversed handles refund r having failed or been canceled: when the
// purchase is paid again, revocations not run yet are canceled and access
// it lacks is granted (again); the operator is always told. A buyer whose
// access was revoked gets it back quietly (GitHub sends its own
// invitation); one whose grant the refund canceled before it ran also gets
// the access email.
func (f *Fulfillment) RefundReversed(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error {
	var list []steps.Step
	if p.Status.Entitled() {
		if _, err := f.engine.Cancel(ctx, q, p.ID, TagRevoke); err != nil {
			return fmt.Errorf("cancel revocations of %s: %w", p.ID, err)
		}
		ready, err := f.accessReady(ctx, q, p)
		if err != nil {
			return fmt.Errorf("restore access of %s: %w", p.ID, err)
		}
		existing, err := q.PurchaseSteps(ctx, p.ID)
		if err != nil {
			return fmt.Errorf("restore access of %s: %w", p.ID, err)
		}
		switch {
		case !ready || p.AccessState == store.AccessGranted || p.AccessState == store.AccessFailed ||
			underway(existing, StepGrantAccess):
			// Nothing to restore, a grant under way, or one that failed
			// for good and waits for the buyer or the operator.
		case p.AccessState == store.AccessRevoked:
			list = append(list, steps.Step{Name: StepGrantAccess, Tags: []string{TagAccess}})
		default:
			list = append(list, f.grantSteps(nil)...)
		}
		if !f.quiet {
			now := f.clock.Now()
			for _, fu := range followupsToRestore(existing, now) {
				list = append(list, steps.Step{Name: fu.Name, Delay: fu.RunAt.Sub(now), Tags: []string{TagFollowup},
					Args: fu.Args})
			}
		}
	}
	list = append(list, steps.Step{Name: StepRefundReversed, Args: reversalArgs{
		RefundID: r.ID, Amount: r.Amount, Currency: currencyOf(r.Currency, p.Currency), Status: r.Status}})
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PrefixRestore + r.ID, Steps: list})
	return err
}

// Expired schedules the abandoned-checkout email the configured delay
// after the moment the session expired (p.ExpiredAt, else its original
// expires_at). An expiry more than a day old gets none (a backfill, a long
// outage), nor does quiet mode. Whether it is sent is decided again when it
// is due.
func (f *Fulfillment) Expired(ctx context.Context, q *store.Queries, p store.Purchase) error {
	facts := recoveryFacts{Now: f.clock.Now(), Quiet: f.quiet}
	if p.ExpiredAt != nil {
		facts.ExpiredAt = *p.ExpiredAt
	}
	if p.SessionExpiresAt != nil {
		facts.SessionExpiresAt = *p.SessionExpiresAt
	}
	anchor, send := planRecovery(facts)
	if !send {
		f.log.Info("no checkout recovery email", "purchase_id", p.ID, "expired_at", anchor, "quiet", f.quiet)
		return nil
	}
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PipelineAbandoned, Anchor: anchor,
		Steps: []steps.Step{{Name: StepAbandoned, Delay: f.cfg.AbandonedDelay}}})
	return err
}

// PaymentFailed schedules the email telling the customer an asynchronous
// payment failed; quiet mode schedules nothing.
func (f *Fulfillment) PaymentFailed(ctx context.Context, q *store.Queries, p store.Purchase) error {
	if f.quiet {
		return nil
	}
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PipelinePaymentFailed,
		Steps: []steps.Step{{Name: StepPaymentFailed}}})
	return err
}

// DisputeOpened schedules the operator's email about dispute d.
func (f *Fulfillment) DisputeOpened(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error {
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PrefixDispute + d.ID,
		Steps: []steps.Step{{Name: StepDisputeOpened, Args: disputeArgs{
			DisputeID: d.ID, Amount: d.Amount, Currency: currencyOf(d.Currency, p.Currency), Reason: d.Reason}}}})
	return err
}

// DisputeLost treats lost dispute d as a full refund without the customer
// email: access revoked, follow-ups and pending grants canceled, the admin
// told.
func (f *Fulfillment) DisputeLost(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error {
	reason := "dispute " + d.ID + " lost"
	if d.Reason != "" {
		reason += " (" + d.Reason + ")"
	}
	args := refundArgs{DisputeID: d.ID, Amount: d.Amount, Refunded: p.AmountTotal, Total: p.AmountTotal,
		Currency: currencyOf(d.Currency, p.Currency), Full: true, Reason: reason}
	var list []steps.Step
	if hasAccess(f.product(p.ProductKey)) {
		list = append(list, steps.Step{Name: StepRevokeAccess, Tags: []string{TagRevoke}})
	}
	list = append(list, steps.Step{Name: StepAdminRefund, Args: args})
	if err := f.cancelEntitlement(ctx, q, p.ID); err != nil {
		return err
	}
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: PrefixDispute + d.ID, Steps: list})
	return err
}

// RepairAccess schedules a grant (want store.AccessGranted) or a
// revocation (store.AccessRevoked) to correct drift between the purchase
// and the provider. Nothing is scheduled for a product without access or
// while a step of the same kind is still under way. A repaired GitHub grant
// goes to the account recorded by id, whatever its login is now, never to
// whoever holds the login it had.
func (f *Fulfillment) RepairAccess(ctx context.Context, q *store.Queries, p store.Purchase, want store.AccessState) error {
	var step steps.Step
	switch want {
	case store.AccessGranted:
		step = steps.Step{Name: StepGrantAccess, Tags: []string{TagAccess}}
	case store.AccessRevoked:
		// The provider still shows access: take back every grant the
		// purchase ever had, whatever its recorded state.
		step = steps.Step{Name: StepRevokeAccess, Tags: []string{TagRevoke}, Args: revokeArgs{All: true}}
	default:
		return fmt.Errorf("repair access of %s: cannot repair towards %q", p.ID, want)
	}
	if !hasAccess(f.product(p.ProductKey)) {
		return nil
	}
	return f.scheduleRepair(ctx, q, steps.PurchaseSubject(p.ID), PrefixRepair, want, step, step.Name)
}

// scheduleRepair schedules step alone in the subject's next repair
// pipeline (prefix, want, ":" and a sequence number), unless a step named
// one of busy is still to run: it will settle the subject's access.
func (f *Fulfillment) scheduleRepair(ctx context.Context, q *store.Queries, subject steps.Subject, prefix string,
	want store.AccessState, step steps.Step, busy ...string) error {
	existing, err := q.SubjectSteps(ctx, subject.ID)
	if err != nil {
		return fmt.Errorf("repair access of %s: %w", subject.ID, err)
	}
	for _, name := range busy {
		if underway(existing, name) {
			return nil
		}
	}
	name := prefix + string(want) + ":" + strconv.Itoa(countPipelines(existing, prefix)+1)
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{Subject: subject, Name: name, Steps: []steps.Step{step}})
	return err
}

// RequestAccess records username as the GitHub login of userID's paid,
// not fully refunded purchases of GitHub products, and, all in one
// transaction, schedules what each needs: a purchase that lacks access
// gets its grant and access email; one whose access went to another login
// is moved (a grant to the new login and its access email, then the
// revocation of the grants it supersedes, all through steps). It returns
// how many purchases will change. The HTTP API calls it after storing the
// username on the account.
func (f *Fulfillment) RequestAccess(ctx context.Context, userID, username string) (int, error) {
	username = strings.TrimSpace(username)
	if userID == "" || username == "" {
		return 0, errors.New("request access: user id and username are required")
	}
	n := 0
	err := f.db.InTx(ctx, func(q *store.Queries) error {
		n = 0
		ps, err := q.UserPurchases(ctx, userID)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if f.product(p.ProductKey).Access != providerGitHub {
				continue
			}
			// Lock, then decide on the row as it is now: the reconciler
			// may be moving it at the same moment.
			if p, err = q.LockPurchase(ctx, p.ID); err != nil {
				return err
			}
			changed, err := f.requestAccess(ctx, q, p, username)
			if err != nil {
				return err
			}
			if changed {
				n++
			}
		}
		m, err := f.requestSubscriptionAccess(ctx, q, userID, username)
		n += m
		if err != nil {
			return err
		}
		m, err = f.requestOrderAccess(ctx, q, userID, username) // order.go
		n += m
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("request access for %s: %w", userID, err)
	}
	return n, nil
}

// Claimed schedules, in the claim's transaction with p's row locked, the
// access a purchase recorded before its buyer was known could not get at
// completion: a GitHub product's purchase that names no GitHub username of
// its own gets access as RequestAccess gives it, to the claiming account's
// username. Without one on the account nothing is scheduled (setting it
// calls RequestAccess); a purchase with its own username had its grant
// scheduled at completion, and the account's must not move it. Only the
// buyer's RequestAccess does that. Calling it again schedules nothing new.
// A webhook product's backend was told at completion, without a user id;
// nothing tells it the user now.
func (f *Fulfillment) Claimed(ctx context.Context, q *store.Queries, p store.Purchase) error {
	if f.product(p.ProductKey).Access != providerGitHub || deref(p.GitHubUsername) != "" {
		return nil
	}
	a, err := account(ctx, q, p)
	if err != nil {
		return fmt.Errorf("schedule access of claimed %s: %w", p.ID, err)
	}
	username := strings.TrimSpace(deref(a.GitHubUsername))
	if username == "" {
		return nil
	}
	if _, err := f.requestAccess(ctx, q, p, username); err != nil {
		return fmt.Errorf("schedule access of claimed %s: %w", p.ID, err)
	}
	return nil
}

// requestAccess gives one locked purchase's access to username, as
// RequestAccess describes, and reports whether anything changed.
func (f *Fulfillment) requestAccess(ctx context.Context, q *store.Queries, p store.Purchase, username string) (bool, error) {
	sameLogin := strings.EqualFold(deref(p.GitHubUsername), username)
	if !p.Status.Entitled() || (sameLogin && p.AccessState == store.AccessGranted) {
		return false, nil
	}
	if !sameLogin {
		if err := q.SetGitHubUsername(ctx, p.ID, username, f.clock.Now()); err != nil {
			return false, err
		}
	}
	existing, err := q.PurchaseSteps(ctx, p.ID)
	if err != nil {
		return false, err
	}
	grants, err := q.PurchaseGrants(ctx, p.ID)
	if err != nil {
		return false, err
	}
	given := false
	for _, g := range grants {
		given = given || g.State.Active()
	}
	name := PrefixAccess + strconv.Itoa(countPipelines(existing, PrefixAccess)+1)
	args := grantArgs{Login: username}
	if !given {
		if notStarted(existing, StepGrantAccess) {
			return true, nil // it reads the username when it runs
		}
		_, err := f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: name, Steps: f.grantSteps(args)})
		return true, err
	}
	// A move: grants and access emails not started yet would go to the old
	// login; the new pipeline replaces them.
	if _, err := f.engine.Cancel(ctx, q, p.ID, TagAccess); err != nil {
		return false, fmt.Errorf("cancel access steps of %s: %w", p.ID, err)
	}
	list := append(f.grantSteps(args), steps.Step{Name: StepRevokeAccess, After: StepGrantAccess,
		Tags: []string{TagAccess}, Args: revokeArgs{Superseded: true}})
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{PurchaseID: p.ID, Name: name, Steps: list})
	return true, err
}

// notStarted reports whether a step named name waits to run for the first
// time in any of the purchase's pipelines.
func notStarted(existing []store.Step, name string) bool {
	for _, s := range existing {
		if s.Name == name && s.Attempts == 0 && (s.Status == store.StepWaiting || s.Status == store.StepPending) {
			return true
		}
	}
	return false
}

// underway reports whether a step named name has yet to finish in any of
// the purchase's pipelines.
func underway(existing []store.Step, name string) bool {
	for _, s := range existing {
		if s.Name == name && unfinished(s) {
			return true
		}
	}
	return false
}

// followupsToRestore are the follow-ups a refund canceled that a reversal
// of it brings back: per follow-up, the last one canceled, when it is still
// ahead of now and no other of the same name is scheduled or was sent.
func followupsToRestore(existing []store.Step, now time.Time) []store.Step {
	live := map[string]bool{}
	last := map[string]store.Step{}
	var order []string
	for _, s := range existing {
		if !slices.Contains(s.Tags, TagFollowup) {
			continue
		}
		if s.Status != store.StepCanceled {
			live[s.Name] = true
			continue
		}
		prev, seen := last[s.Name]
		if !seen {
			order = append(order, s.Name)
		}
		if !seen || s.UpdatedAt.After(prev.UpdatedAt) || (s.UpdatedAt.Equal(prev.UpdatedAt) && s.ID > prev.ID) {
			last[s.Name] = s
		}
	}
	var out []store.Step
	for _, name := range order {
		if s := last[name]; !live[name] && s.RunAt.After(now) {
			out = append(out, s)
		}
	}
	return out
}

// countPipelines counts the distinct pipelines whose name starts with prefix.
func countPipelines(existing []store.Step, prefix string) int {
	seen := map[string]bool{}
	for _, s := range existing {
		if strings.HasPrefix(s.Pipeline, prefix) {
			seen[s.Pipeline] = true
		}
	}
	return len(seen)
}

// currencyOf returns the first non-empty currency code, lowercased.
func currencyOf(codes ...string) string {
	for _, c := range codes {
		if c != "" {
			return strings.ToLower(c)
		}
	}
	return ""
}
