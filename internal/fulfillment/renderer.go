// The email renderer as config.yaml describes it, so the daemon and the
// operators' commands (emails preview) render the same emails.
package fulfillment

import (
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/mail"
)

// NewRenderer builds the email renderer from cfg's brand, its public URL
// (unsubscribe links), template directory and unsubscribe secret.
func NewRenderer(cfg *config.Config) (*mail.Renderer, error) {
	b := cfg.Brand
	return mail.NewRenderer(mail.Brand{
		ProductName: b.ProductName, FromAddress: b.FromAddress, FromName: b.FromName,
		SupportEmail: b.SupportEmail, AdminEmail: b.AdminEmail,
		PrimaryColor: b.PrimaryColor, BackgroundColor: b.BackgroundColor, TextColor: b.TextColor,
		LogoURL: b.LogoURL, PricingURL: b.PricingURL, PublicURL: cfg.HTTP.PublicURL,
	}, cfg.Email.TemplateDir, []byte(cfg.Email.UnsubscribeSecret))
}
