package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/text/currency"
)

// checker collects the problems of one validation: every section adds to it
// and none stops at the first, so an operator sees all of them at once.
type checker struct{ problems Problems }

func (ck *checker) add(key, format string, args ...any) {
	ck.problems = append(ck.problems, key+": "+fmt.Sprintf(format, args...))
}

func (ck *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		ck.add(key, "must be a positive duration such as \"90m\" or \"168h\"")
	}
}

func (ck *checker) url(key, raw string, required bool) {
	if raw == "" {
		if required {
			ck.add(key, "is required")
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ck.add(key, "must be an absolute http(s) URL, got %q", raw)
	}
}

func (ck *checker) email(key, v string, required bool) {
	if (v != "" || required) && !strings.Contains(v, "@") {
		ck.add(key, "must be an email address")
	}
}

func (ck *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ck.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

// validate checks the whole configuration, section by section.
func (c *Config) validate() Problems {
	ck := &checker{}
	if c.Database.MaxConns < 2 {
		ck.add("database.max_conns", "must be at least 2")
	}
	c.validateHTTP(ck)
	c.validateAuth(ck)
	c.validateStripe(ck)
	c.validateReconcile(ck)
	c.validateSteps(ck)
	c.validateEmail(ck)
	c.validateBrand(ck)
	c.validateAccess(ck)
	c.validateFulfillment(ck)
	c.validateProducts(ck)
	c.validateLive(ck)
	c.validateConsole(ck.add)
	c.validateCredits(ck.add)
	c.validateSubscriptions(ck.add)
	ck.oneOf("log.format", c.Log.Format, "text", "json")
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	return ck.problems
}

func (c *Config) validateHTTP(ck *checker) {
	h := c.HTTP
	if h.Addr == "" {
		ck.add("http.addr", "is required")
	}
	if h.AdminAddr != "" && sameListener(h.Addr, h.AdminAddr) {
		ck.add("http.admin_addr", "must differ from http.addr (%s): /metrics and readiness details stay off the public listener", h.Addr)
	}
	if h.CheckoutRate < 1 || h.CheckoutRate > 10000 {
		ck.add("http.checkout_rate", "must be between 1 and 10000 checkouts per user per minute")
	}
	if h.StripeLookupRate < 1 || h.StripeLookupRate > 10000 {
		ck.add("http.stripe_lookup_rate", "must be between 1 and 10000 Stripe lookups per user per minute")
	}
	ck.url("http.public_url", h.PublicURL, true)
	for i, o := range h.CORSOrigins {
		ck.url(fmt.Sprintf("http.cors_origins[%d]", i), o, true)
	}
	if h.MaxBodyBytes < 1024 {
		ck.add("http.max_body_bytes", "must be at least 1024")
	}
	ck.positive("http.shutdown_timeout", h.ShutdownTimeout)
}

func (c *Config) validateAuth(ck *checker) {
	if c.Auth.JWTSecret == "" && c.Auth.JWKSURL == "" {
		ck.add("auth", "set auth.jwt_secret (PAYMENTD_JWT_SECRET) or auth.jwks_url")
	}
	if c.Auth.JWTSecret != "" && len(c.Auth.JWTSecret) < 32 {
		ck.add("auth.jwt_secret", "must be at least 32 bytes for HS256")
	}
	ck.url("auth.jwks_url", c.Auth.JWKSURL, false)
}

func (c *Config) validateStripe(ck *checker) {
	s := c.Stripe
	if s.SecretKey == "" {
		ck.add("stripe.secret_key", "is required (STRIPE_SECRET_KEY)")
	} else if !strings.HasPrefix(s.SecretKey, "sk_") && !strings.HasPrefix(s.SecretKey, "rk_") {
		ck.add("stripe.secret_key", "must be a Stripe secret or restricted key (sk_... or rk_...)")
	}
	if s.WebhookSecret == "" {
		ck.add("stripe.webhook_secret", "is required (STRIPE_WEBHOOK_SECRET)")
	}
	ck.url("stripe.api_base", s.APIBase, false)
	ck.url("stripe.success_url", s.SuccessURL, true)
	if s.SuccessURL != "" && !strings.Contains(s.SuccessURL, "{CHECKOUT_SESSION_ID}") {
		ck.add("stripe.success_url", "must contain {CHECKOUT_SESSION_ID} so the frontend can claim the purchase")
	}
	ck.url("stripe.cancel_url", s.CancelURL, true)
	if s.RateLimit <= 0 || s.RateLimit > 100 {
		ck.add("stripe.rate_limit", "must be between 0 and 100 requests per second")
	}
	ck.positive("stripe.webhook_tolerance", s.WebhookTolerance)
}

func (c *Config) validateReconcile(ck *checker) {
	r := c.Reconcile
	for _, s := range []struct{ key, spec string }{
		{"reconcile.schedule", r.Schedule}, {"reconcile.deep_schedule", r.DeepSchedule},
		{"reconcile.access_schedule", r.AccessSchedule},
	} {
		if _, err := ScheduleParser.Parse(s.spec); err != nil {
			ck.add(s.key, "invalid schedule %q: %v", s.spec, err)
		}
	}
	ck.positive("reconcile.deep_window", r.DeepWindow)
	ck.positive("reconcile.pass_budget", r.PassBudget)
	if r.Overlap < 0 {
		ck.add("reconcile.overlap", "must not be negative")
	}
}

func (c *Config) validateSteps(ck *checker) {
	s := c.Steps
	if s.Workers < 1 || s.Workers > 256 {
		ck.add("steps.workers", "must be between 1 and 256")
	}
	ck.positive("steps.lease", s.Lease)
	ck.positive("steps.timeout", s.Timeout)
	if s.Lease > 0 && s.Timeout >= s.Lease {
		ck.add("steps.timeout", "must be below steps.lease, so a step's run ends before its claim could lapse")
	}
	ck.positive("steps.poll_interval", s.PollInterval)
	ck.positive("steps.backoff_base", s.BackoffBase)
	ck.positive("steps.shutdown_grace", s.ShutdownGrace)
	if s.BackoffMax < s.BackoffBase {
		ck.add("steps.backoff_max", "must be at least steps.backoff_base")
	}
	if s.MaxAttempts < 1 {
		ck.add("steps.max_attempts", "must be at least 1")
	}
	if c.Retention < 24*time.Hour {
		ck.add("retention", "must be at least 24h (it is how long finished steps and handled webhook hints are kept)")
	}
}

func (c *Config) validateEmail(ck *checker) {
	e := c.Email
	switch e.Provider {
	case "outbox":
		if e.OutboxDir == "" {
			ck.add("email.outbox_dir", "is required when email.provider is outbox")
		}
	case "sendgrid":
		if e.SendGridAPIKey == "" {
			ck.add("email.sendgrid_api_key", "is required when email.provider is sendgrid (SENDGRID_API_KEY)")
		}
	default:
		ck.add("email.provider", "must be outbox or sendgrid, got %q", e.Provider)
	}
	ck.url("email.sendgrid_api_base", e.SendGridAPIBase, false)
	if e.UnsubscribeSecret == "" {
		ck.add("email.unsubscribe_secret", "is required (PAYMENTD_UNSUBSCRIBE_SECRET)")
	}
}

func (c *Config) validateBrand(ck *checker) {
	b := c.Brand
	if b.ProductName == "" {
		ck.add("brand.product_name", "is required")
	}
	ck.email("brand.from_address", b.FromAddress, true)
	ck.email("brand.support_email", b.SupportEmail, false)
	ck.email("brand.admin_email", b.AdminEmail, false)
	for _, col := range []struct{ key, v string }{{"brand.primary_color", b.PrimaryColor},
		{"brand.background_color", b.BackgroundColor}, {"brand.text_color", b.TextColor}} {
		if col.v != "" && !colorRE.MatchString(col.v) {
			ck.add(col.key, "must be a colour like #d97757, got %q", col.v)
		}
	}
	ck.url("brand.logo_url", b.LogoURL, false)
	ck.url("brand.pricing_url", b.PricingURL, true)
}

// validateAccess checks the access providers and analytics.
func (c *Config) validateAccess(ck *checker) {
	ck.url("github.api_base", c.GitHub.APIBase, false)
	ck.oneOf("github.permission", c.GitHub.Permission, "pull", "triage", "push", "maintain", "admin")
	ck.url("access_webhook.url", c.Webhook.URL, false)
	if c.Webhook.URL != "" && !strings.HasPrefix(c.Webhook.Secret, "whsec_") {
		ck.add("access_webhook.secret", "must be a Standard Webhooks secret (whsec_...) when access_webhook.url is set")
	}
	if c.PostHog.APIKey != "" {
		ck.url("posthog.host", c.PostHog.Host, true)
	}
}

func (c *Config) validateFulfillment(ck *checker) {
	for i, f := range c.Fulfillment.FollowUps {
		key := fmt.Sprintf("fulfillment.followups[%d]", i)
		ck.positive(key+".delay", f.Delay)
		if f.Template == "" {
			ck.add(key+".template", "is required")
		}
	}
	ck.positive("fulfillment.abandoned_delay", c.Fulfillment.AbandonedDelay)
	ck.positive("fulfillment.notify_window", c.Fulfillment.NotifyWindow)
	ck.url("fulfillment.retry_url", c.Fulfillment.RetryURL, false)
	ck.positive("cart.ttl", c.Cart.TTL)
	if c.Cart.CheckoutTTL < 30*time.Minute || c.Cart.CheckoutTTL > 24*time.Hour {
		ck.add("cart.checkout_ttl", "must be between 30m and 24h (the bounds Stripe puts on a Checkout Session's expiry)")
	}
}

func (c *Config) validateProducts(ck *checker) {
	if len(c.Products) == 0 {
		ck.add("products", "list at least one product")
	}
	seen := map[string]bool{}
	for i, prod := range c.Products {
		key := fmt.Sprintf("products[%d]", i)
		if seen[prod.Key] {
			ck.add(key+".key", "duplicate product key %q", prod.Key)
		}
		seen[prod.Key] = true
		validateProductMode(key, prod, seen, ck.add)
		c.validateProduct(ck, key, prod)
	}
}

// validateProduct checks one product; key is its place in the list.
func (c *Config) validateProduct(ck *checker, key string, prod Product) {
	if !productKeyRE.MatchString(prod.Key) {
		ck.add(key+".key", "must be a Stripe lookup key of lower-case letters, digits, _ and -, got %q", prod.Key)
	}
	if prod.Name == "" {
		ck.add(key+".name", "is required")
	}
	if !prod.IsSubscription() && prod.Amount <= 0 {
		ck.add(key+".amount", "must be a positive amount in minor units (19900 is $199.00)")
	}
	if _, err := currency.ParseISO(prod.Currency); !prod.IsSubscription() && (err != nil || prod.Currency != strings.ToLower(prod.Currency)) {
		ck.add(key+".currency", "must be a lower-case ISO 4217 code such as usd, got %q", prod.Currency)
	}
	switch prod.Access {
	case "", "none":
	case "github":
		if c.GitHub.Owner == "" || c.GitHub.Repo == "" {
			ck.add(key+".access", "github access needs github.owner and github.repo")
		}
	case "webhook":
		if c.Webhook.URL == "" {
			ck.add(key+".access", "webhook access needs access_webhook.url")
		}
	default:
		ck.add(key+".access", "must be none, github or webhook, got %q", prod.Access)
	}
	ck.url(key+".repo_url", prod.RepoURL, false)
	switch {
	case prod.Stock != nil && prod.IsSubscription():
		// Stock is held by a cart's checkout, and the cart takes one-time
		// products only: a subscription's stock would never be held.
		ck.add(key+".stock", "is for one-time products, sold through the cart; a subscription has no stock")
	case prod.Stock != nil && *prod.Stock < 0:
		ck.add(key+".stock", "must not be negative")
	}
}

// validateLive refuses live keys with dev placeholders or the dev outbox: a
// deployment that forgot its environment, better refused than run.
func (c *Config) validateLive(ck *checker) {
	if !strings.HasPrefix(c.Stripe.SecretKey, "sk_live_") && !strings.HasPrefix(c.Stripe.SecretKey, "rk_live_") {
		return
	}
	for _, s := range []struct{ key, v string }{{"auth.jwt_secret", c.Auth.JWTSecret},
		{"email.unsubscribe_secret", c.Email.UnsubscribeSecret}, {"stripe.webhook_secret", c.Stripe.WebhookSecret}} {
		if strings.Contains(s.v, "dev-only") || strings.Contains(s.v, "dev_emulator") {
			ck.add(s.key, "is still config.yaml's dev placeholder while stripe.secret_key is live; set it from the environment")
		}
	}
	if c.Email.Provider == "outbox" {
		ck.add("email.provider", "is the dev outbox while stripe.secret_key is live: customers would get no email; use sendgrid")
	}
}
