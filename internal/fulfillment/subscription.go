// Subscriptions: what a subscription's changes set in motion, as steps on
// the subscription's subject. The reconciler decides each change
// (reconcile.decideSubscription) and hands it to SubscriptionsChanged in
// the transaction that records it; every email is its own pipeline named
// after its cause, so a cause is emailed once however often it is seen.
// Handlers are level-based: each reads the subscription (and invoice) as
// they are when the step runs, so a reminder for an invoice paid meanwhile,
// or a trial reminder for a trial that moved or ended, sends nothing, and
// access follows the entitlement of the moment.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// Step names of a subscription's pipelines.
const (
	StepSubscriptionEmail   = "subscription_email"   // customer or admin email; the template is in the args
	StepSubscriptionAccess  = "subscription_access"  // grant or revoke, as the entitlement is when it runs
	StepSubscriptionWebhook = "subscription_webhook" // a subscription.* outbound webhook event
	// StepSubscriptionSuperseded takes back, once its pipeline's access
	// step granted the subscriber's new GitHub account, the grants to the
	// accounts it replaced (a move: PUT /api/me/github).
	StepSubscriptionSuperseded = "subscription_access_superseded"
)

// Pipeline name prefixes of a subscription's pipelines.
const (
	PrefixSubscriptionEmail   = "email:"       // + the email's cause (invoice_receipt:in_..., started, ...)
	PrefixSubscriptionAccess  = "access:"      // + the change's cause (sub:N)
	PrefixSubscriptionWebhook = "webhook:"     // + event + ":" + the change's cause
	PrefixSubscriptionMove    = "access_move:" // + 1, 2, ...: a move of granted access to another GitHub login
	// PrefixSubscriptionRepair + the wanted state, ":" and a sequence
	// number: an access repair the drift pass asked for.
	PrefixSubscriptionRepair = "access_repair:"
)

// subscriptionAccessArgs is the input of a subscription_access step.
type subscriptionAccessArgs struct {
	// All, when the step revokes, takes back every GitHub grant the
	// subscription ever had, whatever its recorded state (the drift pass
	// found the account still on GitHub).
	All bool `json:"all,omitempty"`
}

// subscriptionEmailArgs is the input of a subscription_email step.
type subscriptionEmailArgs struct {
	Template      string     `json:"template"`
	Admin         bool       `json:"admin,omitempty"`
	InvoiceID     string     `json:"invoice_id,omitempty"`
	TrialEnd      *time.Time `json:"trial_end,omitempty"`
	PreviousPrice string     `json:"previous_price,omitempty"`
}

// RegisterSubscriptions registers the subscription step handlers.
func (f *Fulfillment) RegisterSubscriptions() {
	f.engine.Register(StepSubscriptionEmail, f.subscriptionEmail)
	f.engine.Register(StepSubscriptionAccess, f.subscriptionAccess)
	f.engine.Register(StepSubscriptionWebhook, f.subscriptionWebhook)
	f.engine.Register(StepSubscriptionSuperseded, f.subscriptionSuperseded)
}

// SubscriptionsChanged implements reconcile.SubscriptionFulfillment:
// for each change it cancels the waiting steps the change makes moot, then
// it schedules every change's emails (each at its time), access step, plan
// credit moves and webhook events in one statement, in the caller's
// transaction (which holds the subscriptions' row locks).
func (f *Fulfillment) SubscriptionsChanged(ctx context.Context, q *store.Queries, cs []reconcile.SubscriptionChange) error {
	var ps []steps.Pipeline
	for _, c := range cs {
		subject := steps.SubscriptionSubject(c.Subscription.ID)
		for _, tag := range c.Cancel { // rare: one statement each
			if _, err := f.engine.CancelSubject(ctx, q, subject, tag); err != nil {
				return fmt.Errorf("subscription %s: %w", c.Subscription.ID, err)
			}
		}
		ps = append(ps, f.subscriptionPipelines(subject, c)...)
	}
	if _, err := f.engine.ScheduleAll(ctx, q, ps); err != nil {
		if len(cs) == 1 {
			return fmt.Errorf("subscription %s: %w", cs[0].Subscription.ID, err)
		}
		return fmt.Errorf("schedule the changes of %d subscriptions: %w", len(cs), err)
	}
	return nil
}

// subscriptionPipelines are the pipelines one change sets in motion on the
// subscription's subject: an email per cause (none but the admin's when
// quiet), the access step when the entitlement moved and the product has
// access, the plan credit moves, and the outbound webhook events of a
// product whose access is the webhook.
func (f *Fulfillment) subscriptionPipelines(subject steps.Subject, c reconcile.SubscriptionChange) []steps.Pipeline {
	var ps []steps.Pipeline
	one := func(name string, at time.Time, st steps.Step) {
		ps = append(ps, steps.Pipeline{Subject: subject, Name: name, Anchor: at, Steps: []steps.Step{st}})
	}
	for _, e := range c.Emails {
		if f.quiet && !e.Admin {
			continue
		}
		st := steps.Step{Name: StepSubscriptionEmail, Args: subscriptionEmailArgs{Template: e.Template, Admin: e.Admin,
			InvoiceID: e.InvoiceID, TrialEnd: e.TrialEnd, PreviousPrice: e.PreviousPrice}}
		if e.Tag != "" {
			st.Tags = []string{e.Tag}
		}
		one(PrefixSubscriptionEmail+e.Cause, e.At, st)
	}
	product := f.product(c.Subscription.ProductKey)
	if c.Access != "" && hasAccess(product) {
		one(PrefixSubscriptionAccess+c.Cause, time.Time{}, steps.Step{Name: StepSubscriptionAccess})
	}
	ps = append(ps, f.subscriptionCreditPipelines(subject, c.Credits)...)
	if product.Access == providerWebhook {
		for _, ev := range c.Webhooks {
			one(PrefixSubscriptionWebhook+ev+":"+c.Cause, time.Time{},
				steps.Step{Name: StepSubscriptionWebhook, Args: webhookArgs{Event: ev}})
		}
	}
	return ps
}

// subscription loads the job's subscription; a missing one cannot appear.
func (f *Fulfillment) subscription(ctx context.Context, job *steps.Job) (store.Subscription, error) {
	s, err := f.db.GetSubscription(ctx, job.Subject.ID)
	if errors.Is(err, store.ErrNotFound) {
		return s, steps.Permanent(fmt.Errorf("subscription %s not found", job.Subject.ID))
	}
	if err != nil {
		return s, fmt.Errorf("load subscription: %w", err)
	}
	return s, nil
}

// subscriberContact is where a subscription's emails go: the address
// Stripe has for its customer (customer.updated keeps it current, on the
// subscription and the account), else the account's; and the account's
// name.
func (f *Fulfillment) subscriberContact(ctx context.Context, s store.Subscription) (email, name string, err error) {
	email = deref(s.CustomerEmail)
	if s.UserID != nil {
		c, err := f.db.AccountContactOf(ctx, *s.UserID)
		if err != nil {
			return "", "", err
		}
		if email == "" {
			email = deref(c.Email)
		}
		name = deref(c.Name)
	}
	return email, name, nil
}

// planName names a recurring interval: Monthly, Yearly, Every 3 months.
func planName(interval string, count int64) string {
	if count <= 1 {
		switch interval {
		case "day":
			return "Daily"
		case "week":
			return "Weekly"
		case "month":
			return "Monthly"
		case "year":
			return "Yearly"
		}
	}
	return "Every " + intervalLabel(interval, count)
}

// intervalLabel is "month", or "3 months".
func intervalLabel(interval string, count int64) string {
	if count <= 1 {
		return interval
	}
	return strconv.FormatInt(count, 10) + " " + interval + "s"
}

// priceOf returns the configured price with key among every product's.
func (f *Fulfillment) priceOf(key string) (config.Price, bool) {
	for _, p := range f.products {
		if pr, ok := p.Price(key); ok {
			return pr, true
		}
	}
	return config.Price{}, false
}

func formatDate(t *time.Time) string {
	if t == nil {
		return ""
	}
	return mail.FormatDate(*t)
}

// subscriptionData fills in what the subscription templates show.
func (f *Fulfillment) subscriptionData(s store.Subscription, email, name string) mail.Data {
	return mail.Data{CustomerEmail: email, CustomerName: name, ProductName: f.product(s.ProductKey).Name,
		Amount: s.Amount, Currency: s.Currency, SubscriptionID: s.ID, PlanName: planName(s.Interval, s.IntervalCount),
		Interval: intervalLabel(s.Interval, s.IntervalCount), TrialEnd: formatDate(s.TrialEnd)}
}

// subscriptionEmail sends one email of the subscription lifecycle, unless
// what it is about is no longer so when it runs.
func (f *Fulfillment) subscriptionEmail(ctx context.Context, job *steps.Job) (any, error) {
	var args subscriptionEmailArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	s, err := f.subscription(ctx, job)
	if err != nil {
		return nil, err
	}
	email, name, err := f.subscriberContact(ctx, s)
	if err != nil {
		return nil, err
	}
	d := f.subscriptionData(s, email, name)
	var inv *store.Invoice
	if args.InvoiceID != "" {
		i, err := f.db.GetInvoice(ctx, args.InvoiceID)
		if err != nil {
			return nil, fmt.Errorf("load invoice %s: %w", args.InvoiceID, err)
		}
		inv = &i
		d.InvoiceNumber, d.InvoiceURL = deref(i.Number), deref(i.HostedInvoiceURL)
		d.PeriodStart, d.PeriodEnd = formatDate(i.PeriodStart), formatDate(i.PeriodEnd)
		d.Currency = i.Currency
	}
	if why := moot(args, s, inv); why != "" {
		return skipMail(why)
	}
	template := args.Template
	switch template {
	case mail.InvoiceReceipt:
		d.Amount = inv.AmountPaid
	case mail.PaymentFailed, mail.PaymentReminder:
		d.Amount = inv.AmountRemaining
	case mail.SubscriptionCanceling:
		d.EndsAt = formatDate(&s.CurrentPeriodEnd)
	case mail.SubscriptionEnded:
		d.EndsAt = formatDate(s.EndedAt)
		d.Reason = string(s.Status)
	case mail.PlanChanged:
		if pr, ok := f.priceOf(args.PreviousPrice); ok {
			d.PreviousPlan = planName(pr.Interval, pr.Count())
		}
	}
	if args.Admin {
		if !f.toAdmin() {
			return skipMail("no admin email configured")
		}
		switch template {
		case mail.SubscriptionStarted:
			template = mail.AdminSubscriptionStarted
		case mail.SubscriptionEnded:
			template = mail.AdminSubscriptionEnded
		default:
			return nil, steps.Permanent(fmt.Errorf("no admin copy of %s", template))
		}
	} else if email == "" {
		return skipMail("the subscription has no email address")
	}
	return f.send(ctx, job, template, d)
}

// moot says why an email is no longer due ("" when it is): a trial
// reminder whose trial ended or moved, a failure email or reminder for an
// invoice that is no longer owed, or one for a subscription that ended.
func moot(args subscriptionEmailArgs, s store.Subscription, inv *store.Invoice) string {
	switch args.Template {
	case mail.TrialEnding:
		switch {
		case s.Status != store.SubscriptionTrialing:
			return "the trial is over: the subscription is " + string(s.Status)
		case args.TrialEnd != nil && (s.TrialEnd == nil || !s.TrialEnd.Equal(*args.TrialEnd)):
			return "the trial end moved"
		}
	case mail.InvoiceReceipt:
		if inv == nil {
			return "no invoice named"
		}
	case mail.PaymentFailed, mail.PaymentReminder:
		switch {
		case inv == nil:
			return "no invoice named"
		case !inv.Status.Unpaid():
			return "the invoice is " + string(inv.Status)
		case s.Status.Terminal():
			return "the subscription is " + string(s.Status)
		}
	}
	return ""
}

// accessResult is the recorded result of a subscription_access step.
type accessResult struct {
	Want     store.AccessState `json:"want"`
	Provider string            `json:"provider,omitempty"`
	Username string            `json:"username,omitempty"`
	// GitHubUserID is the account a grant went to.
	GitHubUserID int64   `json:"github_user_id,omitempty"`
	Skipped      string  `json:"skipped,omitempty"`
	Kept         []int64 `json:"kept_for_grants,omitempty"`
	// Revoked lists the grants taken back.
	Revoked []int64 `json:"revoked_grants,omitempty"`
}

// subscriptionAccess moves the subscription's access to what its
// entitlement is now: granted (GitHub invitation by account id; a grant
// record for the webhook provider, whose events tell the seller's app) or
// revoked (an account that had access before, or that another entitled
// purchase or subscription grants, keeps it).
func (f *Fulfillment) subscriptionAccess(ctx context.Context, job *steps.Job) (any, error) {
	var args subscriptionAccessArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	s, err := f.subscription(ctx, job)
	if err != nil {
		return nil, err
	}
	prod := f.product(s.ProductKey)
	want := store.AccessRevoked
	if s.Entitled {
		want = store.AccessGranted
	}
	res := accessResult{Want: want, Provider: prod.Access}
	switch {
	case !hasAccess(prod):
		res.Skipped = "the product has no access provider"
		return res, nil
	case want == store.AccessGranted:
		err = f.grantSubscription(ctx, job, s, prod, &res)
	default:
		err = f.revokeSubscription(ctx, s, args.All, &res)
	}
	if err != nil || res.Skipped != "" {
		return res, err
	}
	job.OnCommit(func(ctx context.Context, q *store.Queries) error {
		cur, err := q.LockSubscription(ctx, s.ID)
		if err != nil {
			return err
		}
		if cur.Entitled != s.Entitled {
			// The entitlement moved while the provider was called: run
			// again, against the entitlement of then.
			return fmt.Errorf("subscription %s: entitlement changed during the access step", s.ID)
		}
		return q.SetSubscriptionAccess(ctx, s.ID, want, f.clock.Now())
	})
	return res, nil
}

// grantSubscription grants access to the subscriber's GitHub account (the
// account's GitHub username) or records the webhook provider's grant.
func (f *Fulfillment) grantSubscription(ctx context.Context, job *steps.Job, s store.Subscription, prod config.Product,
	res *accessResult) error {
	now := f.clock.Now()
	if prod.Access == providerWebhook {
		g, err := f.db.RecordSubscriptionGrantAttempt(ctx, store.Grant{SubscriptionID: s.ID, Provider: store.ProviderWebhook}, now)
		if err != nil {
			return err
		}
		return f.db.MarkGrantGranted(ctx, g.ID, 0, now)
	}
	if f.github == nil {
		return errors.New("grant GitHub access: GitHub is not configured (github.token)")
	}
	login := ""
	if s.UserID != nil {
		a, err := f.db.GetAccount(ctx, *s.UserID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		login = deref(a.GitHubUsername)
	}
	if login == "" {
		res.Skipped = "no GitHub username yet"
		return nil
	}
	user, err := f.github.User(ctx, login)
	if err != nil {
		return err
	}
	has, err := f.github.IsCollaborator(ctx, user.Login)
	if err != nil {
		return err
	}
	preexisting, err := f.subscriberHadAccess(ctx, s.ID, user, has)
	if err != nil {
		return err
	}
	g, err := f.db.RecordSubscriptionGrantAttempt(ctx, store.Grant{SubscriptionID: s.ID, Provider: store.ProviderGitHub,
		GitHubUserID: user.ID, GitHubLogin: user.Login, Preexisting: preexisting}, now)
	if err != nil {
		return err
	}
	var invitation int64
	if !has {
		r, err := f.github.Grant(ctx, user.Login, job.IdempotencyKey)
		if err != nil {
			return err
		}
		invitation = r.InvitationID
	}
	res.Username, res.GitHubUserID = user.Login, user.ID
	return f.db.MarkGrantGranted(ctx, g.ID, invitation, now)
}

// subscriberHadAccess reports whether a GitHub account that is a
// collaborator (has) had that access before any grant of paymentd's: no
// active grant of this subscription or of another entitled subject went to it.
func (f *Fulfillment) subscriberHadAccess(ctx context.Context, subscriptionID string, user access.User, has bool) (bool, error) {
	if !has {
		return false, nil
	}
	mine, err := f.db.SubscriptionGrants(ctx, subscriptionID)
	if err != nil {
		return false, err
	}
	others, err := f.db.GrantsToGitHubUser(ctx, user.ID, user.Login, subscriptionID)
	if err != nil {
		return false, err
	}
	return !grantedByUs(append(mine, others...), user), nil
}

// revokeSubscription takes back the subscription's active grants (all:
// every GitHub grant it ever had): a GitHub account is removed unless it
// had access before or another entitled purchase or subscription grants
// it; every grant is marked revoked.
func (f *Fulfillment) revokeSubscription(ctx context.Context, s store.Subscription, all bool, res *accessResult) error {
	grants, err := f.db.SubscriptionGrants(ctx, s.ID)
	if err != nil {
		return err
	}
	return f.takeBackSubscriptionGrants(ctx, s, grants, func(g store.Grant) bool {
		return g.State.Active() || (all && g.Provider == store.ProviderGitHub)
	}, res)
}

// RepairSubscriptionAccess implements reconcile.SubscriptionFulfillment:
// it schedules an access step, which grants or revokes as the entitlement
// is when it runs (a revocation taking back every GitHub grant, since the
// account is still on GitHub), unless one is already to run.
func (f *Fulfillment) RepairSubscriptionAccess(ctx context.Context, q *store.Queries, s store.Subscription, want store.AccessState) error {
	if want != store.AccessGranted && want != store.AccessRevoked {
		return fmt.Errorf("repair access of subscription %s: cannot repair towards %q", s.ID, want)
	}
	if !hasAccess(f.product(s.ProductKey)) {
		return nil
	}
	return f.scheduleRepair(ctx, q, steps.SubscriptionSubject(s.ID), PrefixSubscriptionRepair, want,
		steps.Step{Name: StepSubscriptionAccess, Args: subscriptionAccessArgs{All: want == store.AccessRevoked}},
		StepSubscriptionAccess)
}

// subscriptionSuperseded takes back, from a subscription whose access moved
// to another GitHub login, the active grants to accounts other than the
// one its pipeline's access step granted. Nothing is taken back unless that
// grant happened: a login that does not exist leaves the old access alone.
func (f *Fulfillment) subscriptionSuperseded(ctx context.Context, job *steps.Job) (any, error) {
	s, err := f.subscription(ctx, job)
	if err != nil {
		return nil, err
	}
	var granted accessResult
	err = job.Prior(ctx, StepSubscriptionAccess, &granted)
	if errors.Is(err, steps.ErrNoResult) || (err == nil && (granted.Want != store.AccessGranted || granted.GitHubUserID == 0)) {
		return accessResult{Skipped: "the grant that would supersede them did not happen"}, nil
	}
	if err != nil {
		return nil, err
	}
	grants, err := f.db.SubscriptionGrants(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	res := accessResult{Want: store.AccessGranted, Provider: providerGitHub, GitHubUserID: granted.GitHubUserID}
	superseded := func(g store.Grant) bool {
		if !g.State.Active() || g.Provider != store.ProviderGitHub {
			return false
		}
		if g.GitHubUserID == 0 {
			return !strings.EqualFold(g.GitHubLogin, granted.Username)
		}
		return g.GitHubUserID != granted.GitHubUserID
	}
	return res, f.takeBackSubscriptionGrants(ctx, s, grants, superseded, &res)
}

// takeBackSubscriptionGrants takes back the grants of s that pick selects:
// a GitHub account is removed unless it had access before or another
// entitled purchase or subscription grants it; each is marked revoked.
func (f *Fulfillment) takeBackSubscriptionGrants(ctx context.Context, s store.Subscription, grants []store.Grant,
	pick func(store.Grant) bool, res *accessResult) error {
	var ids []int64
	for _, g := range grants {
		if !pick(g) {
			continue
		}
		ids = append(ids, g.ID)
		if g.Provider != store.ProviderGitHub || g.Preexisting {
			continue
		}
		others, err := f.db.GrantsToGitHubUser(ctx, g.GitHubUserID, g.GitHubLogin, s.ID)
		if err != nil {
			return err
		}
		if len(others) > 0 {
			res.Kept = append(res.Kept, g.ID)
			continue
		}
		if f.github == nil {
			return errors.New("revoke GitHub access: GitHub is not configured (github.token)")
		}
		user, err := f.currentAccount(ctx, g)
		switch {
		case errors.Is(err, access.ErrNoSuchUser) || errors.Is(err, access.ErrUnknownUser):
			if err := f.github.DeleteInvitation(ctx, g.InvitationID); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := f.github.Revoke(ctx, user, g.InvitationID); err != nil {
				return err
			}
			if res.Username == "" {
				res.Username = user.Login
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	res.Revoked = ids
	return f.db.MarkGrantsRevoked(ctx, ids, f.clock.Now())
}

// subscriptionWebhook sends one subscription.* event to the outbound
// webhook, with the subscription as it is now and the organization id.
func (f *Fulfillment) subscriptionWebhook(ctx context.Context, job *steps.Job) (any, error) {
	var args webhookArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if f.webhook == nil {
		return nil, errors.New("send subscription webhook: the access webhook is not configured")
	}
	s, err := f.subscription(ctx, job)
	if err != nil {
		return nil, err
	}
	email, _, err := f.subscriberContact(ctx, s)
	if err != nil {
		return nil, err
	}
	payload := access.Subscription{SubscriptionID: s.ID, StripeSubscriptionID: s.StripeSubscriptionID,
		OrganizationID: deref(s.OrganizationID), UserID: deref(s.UserID), Email: email, ProductKey: s.ProductKey,
		PriceKey: s.PriceKey, Status: string(s.Status), Entitled: s.Entitled, CancelAtPeriodEnd: s.CancelAtPeriodEnd,
		CurrentPeriodEnd: s.CurrentPeriodEnd.UTC().Format(time.RFC3339), Event: args.Event}
	if s.EndedAt != nil {
		payload.EndedAt = s.EndedAt.UTC().Format(time.RFC3339)
	}
	if err := f.webhook.Send(ctx, args.Event, job.IdempotencyKey, payload); err != nil {
		return nil, err
	}
	return map[string]any{"sent": true, "event": args.Event}, nil
}

// requestSubscriptionAccess schedules, under each subscription's row lock,
// the access step of each of the user's entitled GitHub subscriptions
// whose access is not granted yet (it was waiting for a username; once per
// username), and moves the access of those granted to another login: the
// new account is granted, then the old one's grant taken back. It reports
// how many it scheduled.
func (f *Fulfillment) requestSubscriptionAccess(ctx context.Context, q *store.Queries, userID, username string) (int, error) {
	ss, err := q.UserSubscriptions(ctx, userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range ss {
		if f.product(s.ProductKey).Access != providerGitHub {
			continue
		}
		if s, err = q.LockSubscription(ctx, s.ID); err != nil {
			return n, err
		}
		if !s.Entitled {
			continue
		}
		p := steps.Pipeline{Subject: steps.SubscriptionSubject(s.ID),
			Name:  PrefixSubscriptionAccess + "github:" + strings.ToLower(username),
			Steps: []steps.Step{{Name: StepSubscriptionAccess}}}
		if s.AccessState == store.AccessGranted {
			// Granted already: a login the grants do not name is a move.
			// The access step grants the account's login as it is when it
			// runs; then the grants it supersedes are taken back.
			grants, err := q.SubscriptionGrants(ctx, s.ID)
			if err != nil {
				return n, err
			}
			if grantsLogin(grants, username) {
				continue
			}
			existing, err := q.SubjectSteps(ctx, s.ID)
			if err != nil {
				return n, err
			}
			p.Name = PrefixSubscriptionMove + strconv.Itoa(countPipelines(existing, PrefixSubscriptionMove)+1)
			p.Steps = append(p.Steps, steps.Step{Name: StepSubscriptionSuperseded, After: StepSubscriptionAccess})
		}
		added, err := f.engine.Schedule(ctx, q, p)
		if err != nil {
			return n, err
		}
		n += min(added, 1)
	}
	return n, nil
}

// grantsLogin reports whether an active GitHub grant goes to login.
func grantsLogin(grants []store.Grant, login string) bool {
	for _, g := range grants {
		if g.State.Active() && g.Provider == store.ProviderGitHub && strings.EqualFold(g.GitHubLogin, login) {
			return true
		}
	}
	return false
}
