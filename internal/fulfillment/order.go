// Orders (cart checkouts): the steps of an order's transitions, on the
// order subject. A paid order gets its confirmation with every line, the
// discount, tax and total, the admin notification, and access for each
// line whose product grants it: one GitHub invitation per order (every
// GitHub product opens the one repository) and one access webhook per
// product. A declined attempt on an embedded order's PaymentIntent gets one
// recovery email with the retry link, however many attempts fail. Refunds
// get the refund emails as purchases do; a full refund takes the access
// back, and a refund that then fails or is canceled gives it back and tells
// the operator. Canceled and expired orders send nothing. As for purchases, a
// payment older than the notify window, or a quiet run, sends no customer
// email; access is granted whatever the age.
package fulfillment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Order steps and pipelines.
const (
	StepOrderConfirmation  = "order_confirmation"         // customer: receipt with every line
	StepAdminOrder         = "admin_order"                // admin: new order
	StepOrderGitHub        = "order_grant_github"         // GitHub invitation for the order's GitHub lines
	StepOrderWebhook       = "order_grant_webhook"        // order.paid access webhook, per product
	StepOrderPaymentFailed = "order_payment_failed_email" // customer: card declined, retry link
	StepOrderRefundEmail   = "order_refund_email"         // customer: refund_full or refund_partial
	StepOrderRevoke        = "order_revoke_access"        // full refund: GitHub removal, order.refunded webhooks
	StepOrderTax           = "order_tax_transaction"      // an embedded order's Stripe Tax calculation, recorded
	StepOrderTaxReversal   = "order_tax_reversal"         // a refund of it, reversed
	// StepOrderRefundReversed tells the operator a refund of the order
	// failed or was canceled (mail.RefundReversed, as refund_reversed does
	// for a purchase).
	StepOrderRefundReversed = "order_refund_reversed"
	// StepOrderSuperseded takes back, once its pipeline's grant went to
	// the buyer's new GitHub account, the order's grants to the accounts
	// it replaced (a move: PUT /api/me/github).
	StepOrderSuperseded = "order_revoke_superseded"

	PipelineOrder              = "order"
	PipelineOrderPaymentFailed = "order_payment_failed"
	PrefixOrderRefund          = "refund:"  // + Stripe refund id, on the order subject
	PrefixOrderDispute         = "dispute:" // + Stripe dispute id: a lost dispute, on the order subject
	// PrefixOrderLateRevoke + grant id: the revocation of a grant that
	// landed after its order was refunded.
	PrefixOrderLateRevoke = "revoke_late_grant:"
	// PrefixOrderMove + 1, 2, ...: a move of the order's GitHub access to
	// another login.
	PrefixOrderMove = "access_move:"
)

// TaxRecorder records in Stripe Tax what an embedded order's PaymentIntent
// charged (Stripe reports count tax transactions, not calculations) and
// reverses refunds of it; *stripeapi.API satisfies it.
type TaxRecorder interface {
	CreateTaxTransaction(ctx context.Context, calculationID, reference string, metadata map[string]string, idempotencyKey string) (*stripe.TaxTransaction, error)
	ReverseTaxTransaction(ctx context.Context, transactionID, reference string, amount int64, idempotencyKey string) (*stripe.TaxTransaction, error)
}

// RegisterOrders registers the order step handlers; call it beside
// Register. tax records embedded orders' tax (nil when Stripe Tax is not
// used: such orders have no calculation).
func (f *Fulfillment) RegisterOrders(tax TaxRecorder) {
	f.engine.Register(StepOrderTax, func(ctx context.Context, job *steps.Job) (any, error) { return f.orderTax(ctx, job, tax) })
	f.engine.Register(StepOrderTaxReversal, func(ctx context.Context, job *steps.Job) (any, error) {
		return f.orderTaxReversal(ctx, job, tax)
	})
	for name, h := range map[string]steps.Handler{
		StepOrderConfirmation:   f.orderConfirmation,
		StepAdminOrder:          f.adminOrder,
		StepOrderGitHub:         f.orderGitHub,
		StepOrderPaymentFailed:  f.orderPaymentFailed,
		StepOrderRefundEmail:    f.orderRefundEmail,
		StepOrderRevoke:         f.orderRevoke,
		StepOrderRefundReversed: f.orderRefundReversed,
		StepOrderSuperseded:     f.orderSuperseded,
	} {
		f.engine.Register(name, h)
	}
	// One webhook step per product (a step's name is unique in its
	// pipeline); every configured webhook product has its name registered.
	for key, p := range f.products {
		if p.Access == providerWebhook {
			f.engine.Register(StepOrderWebhook+":"+key, f.orderWebhook)
		}
	}
}

// orderFacts is what decides a paid order's pipeline.
type orderFacts struct {
	Now, PaidAt  time.Time
	NotifyWindow time.Duration
	Quiet        bool
	// GitHub: a line's product grants GitHub access and the buyer named an
	// account; Webhooks: the products of lines granted by webhook.
	GitHub   bool
	Webhooks []string
}

// orderPlan is a paid order's pipeline, as decided.
type orderPlan struct {
	Confirmation, AdminEmail bool
	GitHub                   bool
	Webhooks                 []string
	Stale                    bool
}

// planOrder decides a paid order's pipeline as planPurchase does a
// purchase's: a payment older than the notify window gets no email at
// all, quiet no customer email; access whatever the age.
func planOrder(f orderFacts) orderPlan {
	stale := f.Now.Sub(f.PaidAt) > f.NotifyWindow
	return orderPlan{Confirmation: !f.Quiet && !stale, AdminEmail: !stale, GitHub: f.GitHub, Webhooks: f.Webhooks, Stale: stale}
}

// webhookGrantArgs names the product of an order_grant_webhook step.
type webhookGrantArgs struct {
	Product  string `json:"product"`
	Quantity int    `json:"quantity"`
}

// OrderPaid schedules a paid order's pipeline (reconcile.OrderFulfillment).
func (f *Fulfillment) OrderPaid(ctx context.Context, q *store.Queries, o store.Order, lines []store.OrderLine) error {
	now := f.clock.Now()
	paidAt := now
	if o.PaidAt != nil {
		paidAt = *o.PaidAt
	}
	facts := orderFacts{Now: now, PaidAt: paidAt, NotifyWindow: f.cfg.NotifyWindow, Quiet: f.quiet}
	username, err := orderGitHubUsername(ctx, q, o)
	if err != nil {
		return fmt.Errorf("schedule order %s: %w", o.ID, err)
	}
	access := f.accessOf(lines)
	facts.GitHub, facts.Webhooks = access.github && username != "", access.webhooks
	plan := planOrder(facts)
	if plan.Stale {
		f.log.Info("order paid longer ago than the notify window: no email", "order_id", o.ID, "paid_at", paidAt)
	}
	var list []steps.Step
	if plan.Confirmation {
		list = append(list, steps.Step{Name: StepOrderConfirmation})
	}
	if plan.AdminEmail {
		list = append(list, steps.Step{Name: StepAdminOrder})
	}
	if plan.GitHub {
		list = append(list, steps.Step{Name: StepOrderGitHub, Tags: []string{TagAccess}})
	}
	for _, key := range plan.Webhooks {
		list = append(list, access.webhookStep(key))
	}
	if o.UIMode == store.UIModeEmbedded && o.TaxCalculationID != nil {
		list = append(list, steps.Step{Name: StepOrderTax})
	}
	if len(list) == 0 {
		return nil
	}
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID), Name: PipelineOrder, Anchor: paidAt, Steps: list})
	return err
}

// OrderPaymentFailed schedules the recovery email of a declined attempt,
// once per order (an order has one PaymentIntent): the pipeline is unique
// per order, so later declines schedule nothing.
func (f *Fulfillment) OrderPaymentFailed(ctx context.Context, q *store.Queries, o store.Order) error {
	if f.quiet {
		return nil
	}
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID), Name: PipelineOrderPaymentFailed,
		Steps: []steps.Step{{Name: StepOrderPaymentFailed}}})
	return err
}

// orderRefundArgs is the input of an order's refund steps.
type orderRefundArgs struct {
	RefundID string `json:"refund_id"`
	Amount   int64  `json:"amount"`
	Refunded int64  `json:"refunded"` // cumulative, this refund included
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
	Full     bool   `json:"full"`
}

// OrderRefunded schedules refund r's pipeline: the customer's refund email
// (unless quiet or older than the notify window) and, once the order is
// fully refunded, the access taken back.
func (f *Fulfillment) OrderRefunded(ctx context.Context, q *store.Queries, o store.Order, r store.OrderRefund) error {
	args := orderRefundArgs{RefundID: r.ID, Amount: r.Amount, Refunded: o.AmountRefunded, Total: o.AmountTotal,
		Currency: o.Currency, Full: o.AmountRefunded >= o.AmountTotal}
	var list []steps.Step
	if !f.quiet && f.clock.Now().Sub(r.CreatedAt) <= f.cfg.NotifyWindow {
		list = append(list, steps.Step{Name: StepOrderRefundEmail, Args: args})
	}
	if o.UIMode == store.UIModeEmbedded && o.TaxCalculationID != nil {
		list = append(list, steps.Step{Name: StepOrderTaxReversal, Args: args})
	}
	if args.Full {
		revoke, err := f.orderTakeBack(ctx, q, o, args)
		if err != nil {
			return err
		}
		list = append(list, revoke)
	}
	if len(list) == 0 {
		return nil
	}
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID), Name: PrefixOrderRefund + r.ID, Steps: list})
	return err
}

// OrderRefundReversed handles refund r of order o having failed or been
// canceled after it was recorded live, as RefundReversed does for a
// purchase: when o is paid for again (entitled), revocations not run yet
// are canceled and the access o lacks is granted again (a grant the
// refund canceled before it ran, or one a revocation took back); the
// operator is always told. The reconciler calls it once per refund; the
// pipeline is unique per refund all the same.
func (f *Fulfillment) OrderRefundReversed(ctx context.Context, q *store.Queries, o store.Order, r store.OrderRefund) error {
	var list []steps.Step
	if o.Status.Entitled() {
		if _, err := f.engine.CancelSubject(ctx, q, steps.OrderSubject(o.ID), TagRevoke); err != nil {
			return fmt.Errorf("cancel revocations of order %s: %w", o.ID, err)
		}
		grants, err := f.orderRegrants(ctx, q, o)
		if err != nil {
			return fmt.Errorf("restore access of order %s: %w", o.ID, err)
		}
		list = append(list, grants...)
	}
	list = append(list, steps.Step{Name: StepOrderRefundReversed, Args: reversalArgs{
		RefundID: r.ID, Amount: r.Amount, Currency: currencyOf(r.Currency, o.Currency), Status: r.Status}})
	_, err := f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID), Name: PrefixRestore + r.ID, Steps: list})
	return err
}

// orderRegrants are the grant steps that give an order paid for again the
// access it lacks: per provider (and webhook product) of its lines, one
// unless an active grant or a grant step still to run already stands for
// it. GitHub needs an account named, as at payment.
func (f *Fulfillment) orderRegrants(ctx context.Context, q *store.Queries, o store.Order) ([]steps.Step, error) {
	lines, err := q.OrderLines(ctx, o.ID)
	if err != nil {
		return nil, err
	}
	grants, err := q.OrderGrants(ctx, o.ID)
	if err != nil {
		return nil, err
	}
	existing, err := q.SubjectSteps(ctx, o.ID)
	if err != nil {
		return nil, err
	}
	active := map[string]bool{} // by provider and product key
	for _, g := range grants {
		if g.State.Active() {
			key := string(g.Provider)
			if g.Provider == store.ProviderWebhook {
				key += ":" + g.ProductKey
			}
			active[key] = true
		}
	}
	var list []steps.Step
	access := f.accessOf(lines)
	if access.github && !active[string(store.ProviderGitHub)] && !underway(existing, StepOrderGitHub) {
		login, err := orderGitHubUsername(ctx, q, o)
		if err != nil {
			return nil, err
		}
		if login != "" {
			list = append(list, steps.Step{Name: StepOrderGitHub, Tags: []string{TagAccess}})
		}
	}
	for _, key := range access.webhooks {
		step := access.webhookStep(key)
		if active[string(store.ProviderWebhook)+":"+key] || underway(existing, step.Name) {
			continue
		}
		list = append(list, step)
	}
	return list, nil
}

// OrderDisputeLost treats lost dispute d as a full refund of order o
// without the customer email: access steps still to run are canceled and
// the access taken back, and an embedded order taxed by Stripe Tax has
// what its refunds left of the tax transaction reversed. The operator was
// alerted about the dispute.
func (f *Fulfillment) OrderDisputeLost(ctx context.Context, q *store.Queries, o store.Order, d store.OrderDispute) error {
	revoke, err := f.orderTakeBack(ctx, q, o, nil)
	if err != nil {
		return err
	}
	list := []steps.Step{revoke}
	if args, ok := disputeTaxReversal(o, d); ok && o.UIMode == store.UIModeEmbedded && o.TaxCalculationID != nil {
		list = append(list, steps.Step{Name: StepOrderTaxReversal, Args: args})
	}
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID), Name: PrefixOrderDispute + d.ID,
		Steps: list})
	return err
}

// disputeTaxReversal is the tax reversal of lost dispute d of order o, in
// the terms of a refund's (orderTaxReversal): what the order's refunds
// left, at most the disputed amount; the whole transaction when nothing
// was refunded and everything was disputed. None when the refunds left
// nothing.
func disputeTaxReversal(o store.Order, d store.OrderDispute) (orderRefundArgs, bool) {
	left := o.AmountTotal - o.AmountRefunded
	amount := left
	if strings.EqualFold(d.Currency, o.Currency) && d.Amount > 0 {
		amount = min(d.Amount, left)
	}
	if amount <= 0 {
		return orderRefundArgs{}, false
	}
	refunded := o.AmountRefunded + amount
	return orderRefundArgs{RefundID: d.ID, Amount: amount, Refunded: refunded, Total: o.AmountTotal,
		Currency: o.Currency, Full: refunded >= o.AmountTotal}, true
}

// orderTakeBack cancels the access steps of o still to run and returns the
// step that takes back what o granted (args is its input), for an order
// no longer paid for.
func (f *Fulfillment) orderTakeBack(ctx context.Context, q *store.Queries, o store.Order, args any) (steps.Step, error) {
	if _, err := f.engine.CancelSubject(ctx, q, steps.OrderSubject(o.ID), TagAccess); err != nil {
		return steps.Step{}, fmt.Errorf("cancel access steps of order %s: %w", o.ID, err)
	}
	return steps.Step{Name: StepOrderRevoke, Tags: []string{TagRevoke}, Args: args}, nil
}

// order loads the job's order; a missing one cannot appear later.
func (f *Fulfillment) order(ctx context.Context, job *steps.Job) (store.Order, []store.OrderLine, error) {
	o, err := f.db.GetOrder(ctx, job.Subject.ID)
	if errors.Is(err, store.ErrNotFound) {
		return o, nil, steps.Permanent(fmt.Errorf("order %s not found", job.Subject.ID))
	}
	if err != nil {
		return o, nil, fmt.Errorf("load order: %w", err)
	}
	lines, err := f.db.OrderLines(ctx, o.ID)
	if err != nil {
		return o, nil, fmt.Errorf("load order lines: %w", err)
	}
	return o, lines, nil
}

// orderEmail is the buyer's address: the order's, else the account's.
func (f *Fulfillment) orderEmail(ctx context.Context, o store.Order) (string, error) {
	if o.Email != nil && *o.Email != "" {
		return *o.Email, nil
	}
	a, err := f.db.GetAccount(ctx, o.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.Email == nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load account: %w", err)
	}
	return *a.Email, nil
}

// orderAccess is what an order's lines ask of the access providers: a
// GitHub grant (a line of a GitHub product), and a webhook grant for each
// webhook product, in the order of its first line, of its lines' summed
// quantities.
type orderAccess struct {
	github     bool
	webhooks   []string
	quantities map[string]int
}

func (f *Fulfillment) accessOf(lines []store.OrderLine) orderAccess {
	a := orderAccess{quantities: map[string]int{}}
	for _, l := range lines {
		switch f.product(l.ProductKey).Access {
		case providerGitHub:
			a.github = true
		case providerWebhook:
			if _, ok := a.quantities[l.ProductKey]; !ok {
				a.webhooks = append(a.webhooks, l.ProductKey)
			}
			a.quantities[l.ProductKey] += l.Quantity
		}
	}
	return a
}

// webhookStep is the grant step of webhook product key.
func (a orderAccess) webhookStep(key string) steps.Step {
	return steps.Step{Name: StepOrderWebhook + ":" + key, Tags: []string{TagAccess},
		Args: webhookGrantArgs{Product: key, Quantity: a.quantities[key]}}
}

// orderMail loads the job's order, its lines and its buyer's address
// (orderEmail), and what the order templates show about them (orderData;
// CustomerEmail is "" when the order has no address).
func (f *Fulfillment) orderMail(ctx context.Context, job *steps.Job) (store.Order, []store.OrderLine, mail.Data, error) {
	o, lines, err := f.order(ctx, job)
	if err != nil {
		return o, nil, mail.Data{}, err
	}
	email, err := f.orderEmail(ctx, o)
	if err != nil {
		return o, nil, mail.Data{}, err
	}
	return o, lines, f.orderData(o, lines, email), nil
}

// orderGitHubUsername is the account an order's GitHub access goes to:
// the order's, else the buyer's account's.
func orderGitHubUsername(ctx context.Context, q *store.Queries, o store.Order) (string, error) {
	if o.GitHubUsername != nil && *o.GitHubUsername != "" {
		return *o.GitHubUsername, nil
	}
	a, err := q.GetAccount(ctx, o.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.GitHubUsername == nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load account: %w", err)
	}
	return *a.GitHubUsername, nil
}

// orderData is what the order templates show about o.
func (f *Fulfillment) orderData(o store.Order, lines []store.OrderLine, email string) mail.Data {
	d := mail.Data{CustomerEmail: email, Amount: o.AmountTotal, OriginalAmount: o.AmountTotal, Currency: o.Currency,
		OrderID: o.ID, PurchaseID: o.ID, Subtotal: o.AmountSubtotal, Discount: o.AmountDiscount, Tax: o.AmountTax,
		PromotionCode: deref(o.PromotionCode), StripeSessionID: deref(o.StripeSessionID), StripeChargeID: deref(o.StripeChargeID),
		ProductName: "your order"}
	for _, l := range lines {
		name := f.product(l.ProductKey).Name
		if name == "" {
			name = l.ProductKey
		}
		d.Lines = append(d.Lines, mail.Line{Name: name, Quantity: l.Quantity, UnitAmount: l.UnitAmount,
			Amount: l.AmountSubtotal - l.AmountDiscount})
	}
	return d
}

func (f *Fulfillment) orderConfirmation(ctx context.Context, job *steps.Job) (any, error) {
	_, _, d, err := f.orderMail(ctx, job)
	if err != nil {
		return nil, err
	}
	if d.CustomerEmail == "" {
		return skipMail("the order has no email address")
	}
	return f.send(ctx, job, mail.OrderConfirmation, d)
}

func (f *Fulfillment) adminOrder(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	_, _, d, err := f.orderMail(ctx, job)
	if err != nil {
		return nil, err
	}
	return f.send(ctx, job, mail.AdminOrder, d)
}

// orderPaymentFailed sends the recovery email unless the order was paid
// or ended meanwhile (a canceled order sends nothing).
func (f *Fulfillment) orderPaymentFailed(ctx context.Context, job *steps.Job) (any, error) {
	o, _, d, err := f.orderMail(ctx, job)
	if err != nil {
		return nil, err
	}
	if !o.Status.Open() {
		return skipMail("the order is " + string(o.Status))
	}
	if d.CustomerEmail == "" {
		return skipMail("the order has no email address")
	}
	d.RetryURL = retryURL(f.cfg.RetryURL, o.ID)
	d.Reason = deref(o.LastPaymentError)
	return f.send(ctx, job, mail.OrderPaymentFailed, d)
}

// retryURL is base with order_id=id added to its query; "" without base
// (the template then links to the pricing page).
func retryURL(base, id string) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("order_id", id)
	u.RawQuery = q.Encode()
	return u.String()
}

func (f *Fulfillment) orderRefundEmail(ctx context.Context, job *steps.Job) (any, error) {
	var args orderRefundArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	_, lines, d, err := f.orderMail(ctx, job)
	if err != nil {
		return nil, err
	}
	if d.CustomerEmail == "" {
		return skipMail("the order has no email address")
	}
	d.RefundedAmount, d.OriginalAmount = args.Amount, args.Total
	template := mail.RefundPartial
	if args.Full {
		template = mail.RefundFull
		for _, l := range lines {
			d.AccessRevoked = d.AccessRevoked || hasAccess(f.product(l.ProductKey))
		}
	}
	return f.send(ctx, job, template, d)
}

// orderRefundReversed tells the operator that a refund of the order failed
// or was canceled, with the template a purchase's refund_reversed uses.
func (f *Fulfillment) orderRefundReversed(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	var args reversalArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	_, _, d, err := f.orderMail(ctx, job)
	if err != nil {
		return nil, err
	}
	d.RefundedAmount, d.Currency = args.Amount, args.Currency
	d.Reason = "refund " + args.RefundID + " " + args.Status
	return f.send(ctx, job, mail.RefundReversed, d)
}

// grantOutcome is the recorded result of an order's grant step.
type grantOutcome struct {
	Granted  bool   `json:"granted"`
	Provider string `json:"provider"`
	Username string `json:"username,omitempty"`
	// GitHubUserID is the account a GitHub grant went to.
	GitHubUserID int64  `json:"github_user_id,omitempty"`
	Product      string `json:"product,omitempty"`
	Skipped      string `json:"skipped,omitempty"`
}

// orderGitHub invites the buyer's GitHub account to the repository, once
// per order, recording the grant before GitHub is called.
func (f *Fulfillment) orderGitHub(ctx context.Context, job *steps.Job) (any, error) {
	if f.github == nil {
		return nil, steps.Permanent(errors.New("github access is not configured (github.token)"))
	}
	o, _, err := f.order(ctx, job)
	if err != nil {
		return nil, err
	}
	if !o.Status.Entitled() {
		return grantOutcome{Provider: providerGitHub, Skipped: "the order is " + string(o.Status)}, nil
	}
	login, err := orderGitHubUsername(ctx, f.db.Queries, o)
	if err != nil {
		return nil, err
	}
	if login == "" {
		return grantOutcome{Provider: providerGitHub, Skipped: "no GitHub username"}, nil
	}
	user, err := f.github.User(ctx, login)
	if err != nil {
		return nil, err
	}
	already, err := f.github.IsCollaborator(ctx, user.Login)
	if err != nil {
		return nil, err
	}
	// Access from before is access no grant of paymentd's accounts for
	// (another order's, a purchase's, a subscription's): that one is
	// never removed, the others are when nothing pays for them any more.
	preexisting := false
	if already {
		others, err := f.db.GrantsToGitHubUser(ctx, user.ID, user.Login, o.ID)
		if err != nil {
			return nil, err
		}
		preexisting = !grantedByUs(others, user)
	}
	g, err := f.recordOrderAttempt(ctx, store.OrderGrant{OrderID: o.ID, Provider: store.ProviderGitHub,
		GitHubUserID: user.ID, GitHubLogin: user.Login, Preexisting: preexisting})
	if err != nil || g == nil {
		return skippedOrderGrant(providerGitHub, "", err)
	}
	res := access.GrantResult{AlreadyCollaborator: already}
	if !already {
		if res, err = f.github.Grant(ctx, user.Login, job.IdempotencyKey); err != nil {
			return nil, err
		}
	}
	job.OnCommit(func(ctx context.Context, q *store.Queries) error {
		return f.settleOrderGrant(ctx, q, *g, res.InvitationID)
	})
	return grantOutcome{Granted: true, Provider: providerGitHub, Username: user.Login, GitHubUserID: user.ID}, nil
}

// orderSuperseded takes back, from an order whose GitHub access moved to
// another login, the active grants to accounts other than the one its
// pipeline's grant went to; nothing unless that grant happened (a login
// that does not exist leaves the old access alone). An account that had
// access before, or that something else paid for grants, stays.
func (f *Fulfillment) orderSuperseded(ctx context.Context, job *steps.Job) (any, error) {
	o, _, err := f.order(ctx, job)
	if err != nil {
		return nil, err
	}
	var granted grantOutcome
	err = job.Prior(ctx, StepOrderGitHub, &granted)
	if errors.Is(err, steps.ErrNoResult) || (err == nil && (!granted.Granted || granted.GitHubUserID == 0)) {
		return map[string]any{"skipped": "the grant that would supersede them did not happen"}, nil
	}
	if err != nil {
		return nil, err
	}
	grants, err := f.db.OrderGrants(ctx, o.ID)
	if err != nil {
		return nil, err
	}
	return f.takeBackOrderGrants(ctx, job, o, grants, func(g store.OrderGrant) bool {
		return g.Provider == store.ProviderGitHub && g.State.Active() && g.GitHubUserID != granted.GitHubUserID
	})
}

// recordOrderAttempt records that g is about to be granted, in a
// transaction that locks its order and first checks that it is still paid
// for, as recordAttempt does for purchases: a refund recorded before is
// seen here, and one recorded after finds the attempt. A nil grant means
// the order lost its entitlement: grant nothing.
func (f *Fulfillment) recordOrderAttempt(ctx context.Context, g store.OrderGrant) (*store.OrderGrant, error) {
	var out *store.OrderGrant
	err := f.db.InTx(ctx, func(q *store.Queries) error {
		out = nil
		o, err := q.LockOrder(ctx, g.OrderID)
		if err != nil || !o.Status.Entitled() {
			return err
		}
		recorded, err := q.RecordOrderGrantAttempt(ctx, g, f.clock.Now())
		out = &recorded
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record grant attempt: %w", err)
	}
	return out, nil
}

// skippedOrderGrant is the outcome of an order grant whose attempt was not
// recorded: an error, or an order that lost its entitlement meanwhile.
func skippedOrderGrant(provider, product string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return grantOutcome{Provider: provider, Product: product, Skipped: "the order lost its entitlement before the grant"}, nil
}

// settleOrderGrant runs in the transaction that completes an order's grant
// step: the grant is marked granted, since the provider gave it. When the
// order lost its entitlement while the provider was being called, the
// refund's revocation may have run before the grant landed: a revocation
// of its own takes it back.
func (f *Fulfillment) settleOrderGrant(ctx context.Context, q *store.Queries, g store.OrderGrant, invitationID int64) error {
	o, err := q.LockOrder(ctx, g.OrderID)
	if err != nil {
		return err
	}
	if err := q.MarkOrderGrantGranted(ctx, g.ID, invitationID, f.clock.Now()); err != nil {
		return err
	}
	if o.Status.Entitled() {
		return nil
	}
	f.log.Warn("an order grant completed after the order lost its entitlement; revoking it",
		"order_id", o.ID, "grant_id", g.ID, "status", string(o.Status))
	_, err = f.engine.Schedule(ctx, q, steps.Pipeline{Subject: steps.OrderSubject(o.ID),
		Name:  PrefixOrderLateRevoke + strconv.FormatInt(g.ID, 10),
		Steps: []steps.Step{{Name: StepOrderRevoke, Tags: []string{TagRevoke}}}})
	return err
}

// orderWebhookPayload is the data of the order.paid and order.refunded
// access webhooks.
type orderWebhookPayload struct {
	OrderID  string `json:"order_id"`
	UserID   string `json:"user_id"`
	Email    string `json:"email,omitempty"`
	Product  string `json:"product"`
	Quantity int    `json:"quantity"`
}

// orderWebhook sends order.paid for one product of the order.
func (f *Fulfillment) orderWebhook(ctx context.Context, job *steps.Job) (any, error) {
	if f.webhook == nil {
		return nil, steps.Permanent(errors.New("the access webhook is not configured (access_webhook.url)"))
	}
	var args webhookGrantArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	o, _, err := f.order(ctx, job)
	if err != nil {
		return nil, err
	}
	if !o.Status.Entitled() {
		return grantOutcome{Provider: providerWebhook, Product: args.Product, Skipped: "the order is " + string(o.Status)}, nil
	}
	g, err := f.recordOrderAttempt(ctx, store.OrderGrant{OrderID: o.ID, Provider: store.ProviderWebhook,
		ProductKey: args.Product})
	if err != nil || g == nil {
		return skippedOrderGrant(providerWebhook, args.Product, err)
	}
	if err := f.webhook.Send(ctx, "order.paid", job.IdempotencyKey, orderWebhookPayload{OrderID: o.ID, UserID: o.UserID,
		Email: deref(o.Email), Product: args.Product, Quantity: args.Quantity}); err != nil {
		return nil, err
	}
	job.OnCommit(func(ctx context.Context, q *store.Queries) error { return f.settleOrderGrant(ctx, q, *g, 0) })
	return grantOutcome{Granted: true, Provider: providerWebhook, Product: args.Product}, nil
}

// orderRevoke takes back a fully refunded order's access: order.refunded
// for each webhook grant, and the GitHub collaborator removed unless the
// account had access before, or still has it through another order or a
// purchase. The order is read again when it runs: one paid for again
// meanwhile (its refund failed or was canceled) keeps its access.
func (f *Fulfillment) orderRevoke(ctx context.Context, job *steps.Job) (any, error) {
	o, _, err := f.order(ctx, job)
	if err != nil {
		return nil, err
	}
	if o.Status.Entitled() {
		return map[string]any{"skipped": "the order is " + string(o.Status) + " again"}, nil
	}
	var args orderRevokeArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	grants, err := f.db.OrderGrants(ctx, o.ID)
	if err != nil {
		return nil, err
	}
	return f.takeBackOrderGrants(ctx, job, o, grants, func(g store.OrderGrant) bool {
		return g.State != store.GrantRevoked || (args.GitHubAll && g.Provider == store.ProviderGitHub)
	})
}

// orderRevokeArgs is the input of an order_revoke_access step.
type orderRevokeArgs struct {
	// GitHubAll takes back every GitHub grant the order ever had, whatever
	// its recorded state (the drift pass found the account still there).
	GitHubAll bool `json:"github_all,omitempty"`
}

// RepairOrderAccess implements reconcile.OrderFulfillment: a grant step
// for a paid order whose account is gone from GitHub, a revocation of
// every GitHub grant for one no longer paid for whose account is still
// there; nothing while one is already to run.
func (f *Fulfillment) RepairOrderAccess(ctx context.Context, q *store.Queries, o store.Order, want store.AccessState) error {
	var step steps.Step
	switch want {
	case store.AccessGranted:
		step = steps.Step{Name: StepOrderGitHub, Tags: []string{TagAccess}}
	case store.AccessRevoked:
		step = steps.Step{Name: StepOrderRevoke, Tags: []string{TagRevoke}, Args: orderRevokeArgs{GitHubAll: true}}
	default:
		return fmt.Errorf("repair access of order %s: cannot repair towards %q", o.ID, want)
	}
	return f.scheduleRepair(ctx, q, steps.OrderSubject(o.ID), PrefixRepair, want, step,
		StepOrderGitHub, StepOrderRevoke, StepOrderSuperseded)
}

// takeBackOrderGrants takes back the grants of o that pick selects:
// order.refunded for a webhook grant, the GitHub account removed unless it
// must stay (takeBackOrderGitHub); each is marked revoked.
func (f *Fulfillment) takeBackOrderGrants(ctx context.Context, job *steps.Job, o store.Order, grants []store.OrderGrant,
	pick func(store.OrderGrant) bool) (any, error) {
	var revoked []int64
	var kept []string
	for _, g := range grants {
		if !pick(g) {
			continue
		}
		switch g.Provider {
		case store.ProviderWebhook:
			if f.webhook == nil {
				return nil, steps.Permanent(errors.New("the access webhook is not configured (access_webhook.url)"))
			}
			if err := f.webhook.Send(ctx, "order.refunded", fmt.Sprintf("%s:%d", job.IdempotencyKey, g.ID),
				orderWebhookPayload{OrderID: o.ID, UserID: o.UserID, Email: deref(o.Email), Product: g.ProductKey}); err != nil {
				return nil, err
			}
		case store.ProviderGitHub:
			keep, err := f.takeBackOrderGitHub(ctx, o, g)
			if err != nil {
				return nil, err
			}
			if keep != "" {
				kept = append(kept, keep)
			}
		}
		revoked = append(revoked, g.ID)
	}
	if err := f.db.MarkOrderGrantsRevoked(ctx, revoked, f.clock.Now()); err != nil {
		return nil, err
	}
	return map[string]any{"revoked": len(revoked), "kept": strings.Join(kept, "; ")}, nil
}

// takeBackOrderGitHub removes the account an order's GitHub grant went to,
// unless it must stay (keepGitHub: it says why, and nothing is removed).
// The account is found by its id (its login may have been renamed, and the
// old login taken by someone else), and its invitations go with it; an
// account that no longer exists leaves only the invitation to delete.
func (f *Fulfillment) takeBackOrderGitHub(ctx context.Context, o store.Order, g store.OrderGrant) (kept string, err error) {
	if kept, err = f.keepGitHub(ctx, o, g); err != nil || kept != "" {
		return kept, err
	}
	user, err := f.github.UserByID(ctx, g.GitHubUserID)
	switch {
	case errors.Is(err, access.ErrNoSuchUser):
		return "", f.github.DeleteInvitation(ctx, g.InvitationID)
	case err != nil:
		return "", err
	}
	return "", f.github.Revoke(ctx, user, g.InvitationID)
}

// keepGitHub says why a GitHub grant must not be removed ("" when it may).
func (f *Fulfillment) keepGitHub(ctx context.Context, o store.Order, g store.OrderGrant) (string, error) {
	switch {
	case g.Preexisting:
		return g.GitHubLogin + " had access before the order", nil
	case f.github == nil:
		return "", steps.Permanent(errors.New("github access is not configured (github.token)"))
	}
	others, err := f.db.GrantsToGitHubUser(ctx, g.GitHubUserID, g.GitHubLogin, o.ID)
	if err != nil || len(others) == 0 {
		return "", err
	}
	switch other := others[0]; {
	case other.OrderID != "":
		return g.GitHubLogin + " has access through another order", nil
	case other.SubscriptionID != "":
		return g.GitHubLogin + " has access through a subscription", nil
	default:
		return g.GitHubLogin + " has access through a purchase", nil
	}
}

// taxResult is the recorded result of an order_tax_transaction step.
type taxResult struct {
	TransactionID string `json:"tax_transaction_id"`
}

// orderTax records a paid embedded order's tax calculation as a Stripe Tax
// transaction, referenced by the order id (once: the step's idempotency
// key is the same on every attempt).
func (f *Fulfillment) orderTax(ctx context.Context, job *steps.Job, tax TaxRecorder) (any, error) {
	o, _, err := f.order(ctx, job)
	if err != nil {
		return nil, err
	}
	if o.TaxCalculationID == nil || !o.Status.Paid() {
		return map[string]string{"skipped": "no paid tax calculation"}, nil
	}
	if tax == nil {
		return nil, steps.Permanent(errors.New("no Stripe client to record the tax transaction"))
	}
	tx, err := tax.CreateTaxTransaction(ctx, *o.TaxCalculationID, o.ID, map[string]string{"order_id": o.ID,
		"payment_intent_id": deref(o.StripePaymentIntentID)}, job.IdempotencyKey)
	if err != nil {
		return nil, fmt.Errorf("record tax transaction: %w", err)
	}
	return taxResult{TransactionID: tx.ID}, nil
}

// orderTaxReversal reverses a refund in the order's tax transaction: the
// whole of what remains for a full refund, else the refund's amount. It
// waits (retries) until the transaction is recorded.
func (f *Fulfillment) orderTaxReversal(ctx context.Context, job *steps.Job, tax TaxRecorder) (any, error) {
	var args orderRefundArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if tax == nil {
		return nil, steps.Permanent(errors.New("no Stripe client to reverse the tax transaction"))
	}
	all, err := f.db.SubjectSteps(ctx, job.Subject.ID)
	if err != nil {
		return nil, err
	}
	var rec taxResult
	for _, s := range all {
		if s.Name == StepOrderTax && s.Status == store.StepDone && len(s.Result) > 0 {
			if err := json.Unmarshal(s.Result, &rec); err != nil {
				return nil, steps.Permanent(fmt.Errorf("read the tax transaction: %w", err))
			}
		}
	}
	if rec.TransactionID == "" {
		return nil, errors.New("the order's tax transaction is not recorded yet")
	}
	amount := args.Amount
	if args.Full && args.Refunded == args.Amount {
		amount = 0 // one refund of everything: a full reversal
	}
	tx, err := tax.ReverseTaxTransaction(ctx, rec.TransactionID, job.Subject.ID+":"+args.RefundID, amount, job.IdempotencyKey)
	if err != nil {
		return nil, fmt.Errorf("reverse tax transaction: %w", err)
	}
	return taxResult{TransactionID: tx.ID}, nil
}

// requestOrderAccess gives username the GitHub access of userID's paid
// orders that have a GitHub line: an order with no GitHub grant yet (the
// buyer named no account at checkout) records the login and its grant is
// scheduled; one whose grants go to another login moves (the new account
// granted, then the old one's grant taken back). It returns how many
// orders will change.
func (f *Fulfillment) requestOrderAccess(ctx context.Context, q *store.Queries, userID, username string) (int, error) {
	orders, err := q.UserOrders(ctx, userID, 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range orders {
		if !o.Status.Entitled() {
			continue
		}
		lines, err := q.OrderLines(ctx, o.ID)
		if err != nil {
			return n, err
		}
		github := false
		for _, l := range lines {
			github = github || f.product(l.ProductKey).Access == providerGitHub
		}
		if !github {
			continue
		}
		if o, err = q.LockOrder(ctx, o.ID); err != nil {
			return n, err
		}
		existing, err := q.SubjectSteps(ctx, o.ID)
		if err != nil {
			return n, err
		}
		if underway(existing, StepOrderGitHub) {
			continue // a grant is scheduled or running: it reads the login when it runs
		}
		grants, err := q.OrderGrants(ctx, o.ID)
		if err != nil {
			return n, err
		}
		given, same := false, false
		for _, g := range grants {
			active := g.Provider == store.ProviderGitHub && g.State.Active()
			given = given || active
			same = same || (active && strings.EqualFold(g.GitHubLogin, username))
		}
		if same {
			continue
		}
		o.GitHubUsername = &username
		if err := q.UpdateOrder(ctx, o, f.clock.Now()); err != nil {
			return n, err
		}
		p := steps.Pipeline{Subject: steps.OrderSubject(o.ID),
			Name:  PrefixAccess + strconv.Itoa(countPipelines(existing, PrefixAccess)+1),
			Steps: []steps.Step{{Name: StepOrderGitHub, Tags: []string{TagAccess}}}}
		if given {
			p.Name = PrefixOrderMove + strconv.Itoa(countPipelines(existing, PrefixOrderMove)+1)
			p.Steps = append(p.Steps, steps.Step{Name: StepOrderSuperseded, After: StepOrderGitHub, Tags: []string{TagAccess}})
		}
		if _, err := f.engine.Schedule(ctx, q, p); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
