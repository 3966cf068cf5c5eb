// Email steps: each renders one template from the purchase as it is when
// the step runs and hands it to the Sender with the step's idempotency key.
// A step that decides not to send records why instead; marketing mail
// (follow-ups, checkout recovery) is never sent to an address that
// unsubscribed.
//
// Email is at-least-once: SendGrid has no idempotency key, so a crash
// between its 202 and the step's completion sends the email again. To keep
// that window to the completion write alone, every handler does all that
// can fail (loading the purchase and the address, consent and unsubscribe
// checks, rendering) first, and ends with send, which returns as soon as
// the Sender accepted the message.
package fulfillment

import (
	"context"
	"errors"
	"fmt"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// mailResult is the recorded result of an email step.
type mailResult struct {
	Sent     bool   `json:"sent"`
	Template string `json:"template,omitempty"`
	To       string `json:"to,omitempty"`
	// Skipped says why nothing was sent.
	Skipped string `json:"skipped,omitempty"`
}

func skipMail(reason string) (any, error) { return mailResult{Skipped: reason}, nil }

// send renders template with d and sends it: the last thing an email
// handler does, so nothing that can fail comes after the provider accepted
// the message. Render errors are already steps.Permanent; the Sender's
// errors carry their own outcome.
func (f *Fulfillment) send(ctx context.Context, job *steps.Job, template string, d mail.Data) (any, error) {
	m, err := f.renderer.Render(template, d)
	if err != nil {
		return nil, err
	}
	if err := f.mailer.Send(ctx, m, job.IdempotencyKey); err != nil {
		return nil, fmt.Errorf("send %s: %w", template, err)
	}
	job.Logger.Info("email sent", "template", template)
	return mailResult{Sent: true, Template: template, To: m.To}, nil
}

// data fills in what every template may show about p.
func (f *Fulfillment) data(p store.Purchase, email string) mail.Data {
	prod := f.product(p.ProductKey)
	d := mail.Data{
		CustomerEmail:   email,
		ProductName:     prod.Name,
		Amount:          p.AmountTotal,
		Currency:        p.Currency,
		OriginalAmount:  p.AmountTotal,
		PurchaseID:      p.ID,
		StripeSessionID: p.StripeSessionID,
		StripeChargeID:  deref(p.StripeChargeID),
		GitHubUsername:  deref(p.GitHubUsername),
	}
	if prod.Access == providerGitHub {
		d.RepoURL = prod.RepoURL
	}
	return d
}

// customer loads the job's purchase and the buyer's address; the address
// is "" when neither the purchase nor the account has one.
func (f *Fulfillment) customer(ctx context.Context, job *steps.Job) (store.Purchase, string, error) {
	p, err := f.purchase(ctx, job)
	if err != nil {
		return p, "", err
	}
	email, err := f.email(ctx, p)
	return p, email, err
}

// toAdmin reports whether admin mail has somewhere to go.
func (f *Fulfillment) toAdmin() bool { return f.renderer.Brand().AdminEmail != "" }

func (f *Fulfillment) confirmation(ctx context.Context, job *steps.Job) (any, error) {
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	if email == "" {
		return skipMail("the purchase has no email address")
	}
	return f.send(ctx, job, mail.PurchaseConfirmation, f.data(p, email))
}

func (f *Fulfillment) adminPurchase(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	return f.send(ctx, job, mail.AdminPurchase, f.data(p, email))
}

// accessEmail tells the customer their access is ready, once the grant it
// waits for has granted it.
func (f *Fulfillment) accessEmail(ctx context.Context, job *steps.Job) (any, error) {
	var g grantResult
	err := job.Prior(ctx, StepGrantAccess, &g)
	if errors.Is(err, steps.ErrNoResult) {
		return skipMail("no grant in this pipeline")
	}
	if err != nil {
		return nil, err
	}
	if !g.Granted {
		return skipMail("access was not granted: " + g.Skipped)
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	switch {
	case !p.Status.Entitled():
		return skipMail("the purchase is " + string(p.Status))
	case email == "":
		return skipMail("the purchase has no email address")
	}
	d := f.data(p, email)
	d.GitHubUsername = g.Username
	if g.Provider != providerGitHub {
		d.RepoURL = ""
	}
	return f.send(ctx, job, mail.AccessGranted, d)
}

// followup sends one follow-up (marketing) email, unless the purchase was
// refunded or the address unsubscribed by the time it is due.
func (f *Fulfillment) followup(ctx context.Context, job *steps.Job) (any, error) {
	var args followupArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if args.Template == "" {
		args.Template = job.Name
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	switch {
	case !p.Status.Entitled():
		return skipMail("the purchase is " + string(p.Status))
	case email == "":
		return skipMail("the purchase has no email address")
	}
	if unsubscribed, err := f.db.IsUnsubscribed(ctx, email); err != nil {
		return nil, err
	} else if unsubscribed {
		return skipMail("the address unsubscribed")
	}
	return f.send(ctx, job, args.Template, f.data(p, email))
}

func (f *Fulfillment) refundEmail(ctx context.Context, job *steps.Job) (any, error) {
	var args refundArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	if email == "" {
		return skipMail("the purchase has no email address")
	}
	d := f.data(p, email)
	// The customer hears about the money this refund moves; the admin
	// (below) about the purchase as a whole.
	d.RefundedAmount, d.OriginalAmount, d.Currency = args.Amount, args.Total, args.Currency
	d.AccessRevoked = hasAccess(f.product(p.ProductKey)) && (args.Full || !p.Status.Entitled())
	template := mail.RefundPartial
	if args.Full {
		template = mail.RefundFull
	}
	return f.send(ctx, job, template, d)
}

func (f *Fulfillment) adminRefund(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	var args refundArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	d := f.data(p, email)
	d.RefundedAmount, d.OriginalAmount, d.Currency = args.Refunded, args.Total, args.Currency
	d.AccessRevoked = args.Full && hasAccess(f.product(p.ProductKey))
	d.Reason = args.Reason
	d.DisputeID = args.DisputeID
	return f.send(ctx, job, mail.AdminRefund, d)
}

// abandonedCheckout sends the checkout recovery email, unless the buyer
// has bought since, left no address, did not give a consent that was
// required, or unsubscribed.
func (f *Fulfillment) abandonedCheckout(ctx context.Context, job *steps.Job) (any, error) {
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	if email == "" {
		return skipMail("the checkout has no email address")
	}
	bought, err := f.db.CompletedSince(ctx, deref(p.UserID), email, p.CreatedAt)
	if err != nil {
		return nil, err
	}
	if bought {
		return skipMail("the buyer completed a purchase since")
	}
	if (p.ConsentRequired || f.cfg.AbandonedRequiresConsent) && (p.PromotionsConsent == nil || !*p.PromotionsConsent) {
		return skipMail("no consent to promotional email")
	}
	if unsubscribed, err := f.db.IsUnsubscribed(ctx, email); err != nil {
		return nil, err
	} else if unsubscribed {
		return skipMail("the address unsubscribed")
	}
	d := f.data(p, email)
	d.RecoveryURL = deref(p.RecoveryURL)
	if d.RecoveryURL == "" {
		d.RecoveryURL = f.renderer.Brand().PricingURL
	}
	return f.send(ctx, job, mail.AbandonedCheckout, d)
}

// paymentFailed tells the customer their asynchronous payment failed,
// unless the purchase was paid after all.
func (f *Fulfillment) paymentFailed(ctx context.Context, job *steps.Job) (any, error) {
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	switch {
	case p.Status != store.PurchaseFailed:
		return skipMail("the purchase is " + string(p.Status))
	case email == "":
		return skipMail("the purchase has no email address")
	}
	d := f.data(p, email)
	d.RecoveryURL = deref(p.RecoveryURL)
	return f.send(ctx, job, mail.AsyncPaymentFailed, d)
}

func (f *Fulfillment) disputeOpened(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	var args disputeArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	d := f.data(p, email)
	d.Amount, d.Currency, d.DisputeID, d.Reason = args.Amount, args.Currency, args.DisputeID, args.Reason
	return f.send(ctx, job, mail.DisputeOpened, d)
}

func (f *Fulfillment) refundReversed(ctx context.Context, job *steps.Job) (any, error) {
	if !f.toAdmin() {
		return skipMail("no admin email configured")
	}
	var args reversalArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	p, email, err := f.customer(ctx, job)
	if err != nil {
		return nil, err
	}
	d := f.data(p, email)
	d.RefundedAmount, d.Currency = args.Amount, args.Currency
	d.Reason = "refund " + args.RefundID + " " + args.Status
	return f.send(ctx, job, mail.RefundReversed, d)
}

// operatorAlert emails the admin about a step that failed for good,
// naming the purchase, the step and its last error. With no admin address
// configured the alert is only logged.
func (f *Fulfillment) operatorAlert(ctx context.Context, job *steps.Job) (any, error) {
	var args steps.AlertArgs
	if err := job.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if !f.toAdmin() {
		job.Logger.Error("step failed for good; no admin email configured to alert",
			"failed_step", args.Step, "failed_pipeline", args.Pipeline, "last_error", args.LastError)
		return skipMail("no admin email configured")
	}
	d := mail.Data{
		PurchaseID: args.PurchaseID,
		StepName:   args.Step + " (pipeline " + args.Pipeline + ")",
		LastError:  fmt.Sprintf("%s\n\n(step id %d, %d attempt(s))", args.LastError, args.StepID, args.Attempts),
	}
	if args.PurchaseID == "" && args.SubjectID != "" {
		d.PurchaseID = fmt.Sprintf("none (%s %s)", args.SubjectKind, args.SubjectID) // a subscription's or an order's step
	} else if args.PurchaseID == "" {
		d.PurchaseID = "none (a global step)"
	} else if p, err := f.db.GetPurchase(ctx, args.PurchaseID); err == nil {
		email, err := f.email(ctx, p)
		if err != nil {
			return nil, err
		}
		pd := f.data(p, email)
		pd.StepName, pd.LastError = d.StepName, d.LastError
		d = pd
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load purchase: %w", err)
	}
	return f.send(ctx, job, mail.OperatorAlert, d)
}
