// Sample data: realistic, deterministic values for every template, used to
// validate templates at start-up, for previews and for golden tests.
package mail

import "time"

// SampleData returns example Data for the named template with amounts in
// currency. The brand and unsubscribe link are left for the Renderer, and
// ProductName is empty so the brand's product name is used.
func SampleData(name, currency string) Data {
	d := Data{
		CustomerEmail:   "ada@example.com",
		CustomerName:    "Ada Lovelace",
		Amount:          19900,
		Currency:        currency,
		OriginalAmount:  19900,
		PurchaseID:      "pur_01HZX4K7V9Q2M3N8B6C5D4E3F2",
		StripeSessionID: "cs_test_a1B2c3D4e5F6g7H8i9J0",
		StripeChargeID:  "ch_3PqR5sT7uV9wX1yZ2aB4cD6e",
	}
	switch name {
	case AccessGranted:
		d.RepoURL = "https://github.com/acme-labs/starter-kit"
		d.GitHubUsername = "adalovelace"
		d.AccessDetails = "Once you accept the invitation, clone the repository with:\ngit clone git@github.com:acme-labs/starter-kit.git"
	case RefundFull:
		d.RefundedAmount = 19900
		d.AccessRevoked = true
	case RefundPartial:
		d.RefundedAmount = 5000
	case AdminRefund:
		d.RefundedAmount = 19900
		d.AccessRevoked = true
		d.Reason = "requested_by_customer"
	case AbandonedCheckout:
		d.RecoveryURL = "https://checkout.stripe.com/c/pay/cs_test_recover_b1C2d3E4"
	case OperatorAlert:
		d.StepName = "grant_access"
		d.LastError = "github: add collaborator: 502 Bad Gateway (attempt 8 of 8)"
	case DisputeOpened:
		d.DisputeID = "dp_1PqR5sT7uV9wX1yZ"
		d.Reason = "fraudulent"
	case OrderConfirmation, AdminOrder, OrderPaymentFailed:
		d.OrderID = "0f9c5a8e-3b1d-4c7a-9e2f-6d4b8a1c3e5f"
		d.Lines = []Line{{Name: "Acme Pro", Quantity: 1, UnitAmount: 19900, Amount: 15920},
			{Name: "Acme sticker pack", Quantity: 3, UnitAmount: 900, Amount: 2160}}
		d.Subtotal, d.Discount, d.Tax, d.Amount = 22600, 4520, 1808, 19888
		d.PromotionCode = "LAUNCH20"
		if name == OrderPaymentFailed {
			d.RetryURL = "https://app.example.com/orders/retry?order_id=0f9c5a8e-3b1d-4c7a-9e2f-6d4b8a1c3e5f"
			d.Reason = "insufficient_funds"
		}
	case CreditsLow:
		d.CreditsBalance = 42
		d.CreditsThreshold = 50
	case RefundReversed:
		d.RefundedAmount = 19900
		d.Reason = "expired_or_canceled_card"
	case SubscriptionStarted, AdminSubscriptionStarted, TrialEnding, InvoiceReceipt, PaymentFailed, PaymentReminder,
		SubscriptionCanceling, SubscriptionResumed, SubscriptionEnded, AdminSubscriptionEnded, PlanChanged:
		d.Amount = 2900
		d.SubscriptionID = "5c0d3a4e-9b1f-4c2d-8e7a-6f5b4c3d2e1f"
		d.PlanName, d.Interval = "Monthly", "month"
		d.PurchaseID, d.StripeSessionID, d.StripeChargeID = "", "", ""
		switch name {
		case SubscriptionStarted, AdminSubscriptionStarted, TrialEnding:
			d.TrialEnd = "March 16, 2026"
		case InvoiceReceipt, PaymentFailed, PaymentReminder:
			d.InvoiceNumber = "ACME-0042"
			d.InvoiceURL = "https://invoice.stripe.com/i/acct_1Acme/test_inv_a1B2c3D4"
			d.PeriodStart, d.PeriodEnd = "March 2, 2026", "April 2, 2026"
		case SubscriptionCanceling, SubscriptionEnded:
			d.EndsAt = "April 2, 2026"
		case AdminSubscriptionEnded:
			d.Reason = "canceled"
		case PlanChanged:
			d.PlanName, d.PreviousPlan, d.Interval, d.Amount = "Yearly", "Monthly", "year", 29000
		}
	}
	return d
}

// FormatDate is how the emails write a date: "March 2, 2026", in UTC.
func FormatDate(t time.Time) string { return t.UTC().Format("January 2, 2006") }
