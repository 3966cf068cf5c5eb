// Package config loads paymentd's configuration: config.yaml for the shape
// and local defaults, the environment for secrets and per-deployment values.
// Load reports every problem at once, each under its key path, and treats an
// unknown key as a problem, so a typo never silently disables a feature.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Config is the whole of paymentd's configuration.
type Config struct {
	Database    Database    `yaml:"database"`
	HTTP        HTTP        `yaml:"http"`
	Auth        Auth        `yaml:"auth"`
	Stripe      Stripe      `yaml:"stripe"`
	Reconcile   Reconcile   `yaml:"reconcile"`
	Steps       Steps       `yaml:"steps"`
	Email       Email       `yaml:"email"`
	Brand       Brand       `yaml:"brand"`
	GitHub      GitHub      `yaml:"github"`
	Webhook     Webhook     `yaml:"access_webhook"`
	PostHog     PostHog     `yaml:"posthog"`
	Fulfillment Fulfillment `yaml:"fulfillment"`
	Products    []Product   `yaml:"products"`
	Log         Log         `yaml:"log"`
	// Retention is how long done and canceled steps and handled webhook
	// hints are kept before the daily maintenance job prunes them.
	Retention time.Duration `yaml:"retention"`
	Console   Console       `yaml:"console"`
	// Subscriptions configures grace and dunning (subscriptions.go).
	Subscriptions Subscriptions `yaml:"subscriptions"`
	Credits       Credits       `yaml:"credits"`
	Cart          Cart          `yaml:"cart"`
}

// Database says where Postgres is.
type Database struct {
	URL      string `yaml:"url" env:"DATABASE_URL"`
	MaxConns int32  `yaml:"max_conns"`
}

// HTTP configures the public API listener and the admin listener.
type HTTP struct {
	Addr string `yaml:"addr" env:"PAYMENTD_HTTP_ADDR"`
	// AdminAddr serves /metrics, /healthz and /readyz with its problems;
	// empty means no admin listener (the api role then needs none).
	AdminAddr string `yaml:"admin_addr" env:"PAYMENTD_ADMIN_ADDR"`
	// PublicMetrics also serves /metrics on the public listener.
	PublicMetrics   bool          `yaml:"public_metrics"`
	PublicURL       string        `yaml:"public_url" env:"PAYMENTD_PUBLIC_URL"`
	CORSOrigins     []string      `yaml:"cors_origins"`
	MaxBodyBytes    int64         `yaml:"max_body_bytes"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// CheckoutRate is how many checkouts one user may start per minute,
	// counted across every replica.
	CheckoutRate int `yaml:"checkout_rate"`
	// StripeLookupRate is how many requests one user may make per minute,
	// counted across every replica, to the endpoints that ask Stripe on the
	// user's behalf (reading or changing a cart that Stripe prices, claiming
	// a session, opening the billing portal). It keeps one user from
	// spending the Stripe request budget every caller and the reconciler
	// share.
	StripeLookupRate int `yaml:"stripe_lookup_rate"`
}

// Auth configures how user-facing endpoints verify bearer JWTs.
type Auth struct {
	JWTSecret string `yaml:"jwt_secret" env:"PAYMENTD_JWT_SECRET"`
	JWKSURL   string `yaml:"jwks_url" env:"PAYMENTD_JWKS_URL"`
	Issuer    string `yaml:"issuer"`
	Audience  string `yaml:"audience"`
}

// Stripe configures the Stripe API client and the webhook endpoint.
type Stripe struct {
	SecretKey        string        `yaml:"secret_key" env:"STRIPE_SECRET_KEY"`
	WebhookSecret    string        `yaml:"webhook_secret" env:"STRIPE_WEBHOOK_SECRET"`
	APIBase          string        `yaml:"api_base" env:"STRIPE_API_BASE"`
	SuccessURL       string        `yaml:"success_url"`
	CancelURL        string        `yaml:"cancel_url"`
	RateLimit        float64       `yaml:"rate_limit"`
	WebhookTolerance time.Duration `yaml:"webhook_tolerance"`
	// AutomaticTax turns on Stripe Tax for carts: hosted checkouts
	// through the session's automatic_tax, embedded ones through a tax
	// calculation that the PaymentIntent's amount includes.
	AutomaticTax bool `yaml:"automatic_tax"`
}

// Reconcile configures when the reconciler runs.
type Reconcile struct {
	Schedule       string        `yaml:"schedule"`
	DeepSchedule   string        `yaml:"deep_schedule"`
	DeepWindow     time.Duration `yaml:"deep_window"`
	Overlap        time.Duration `yaml:"overlap"`
	AccessSchedule string        `yaml:"access_schedule"`
	// PassBudget bounds a scheduled pass; the next one resumes where it
	// stopped.
	PassBudget time.Duration `yaml:"pass_budget"`
}

// Steps configures the durable step engine.
type Steps struct {
	Workers       int           `yaml:"workers"`
	Lease         time.Duration `yaml:"lease"`
	Timeout       time.Duration `yaml:"timeout"`
	PollInterval  time.Duration `yaml:"poll_interval"`
	BackoffBase   time.Duration `yaml:"backoff_base"`
	BackoffMax    time.Duration `yaml:"backoff_max"`
	MaxAttempts   int           `yaml:"max_attempts"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Email configures how mail leaves.
type Email struct {
	Provider           string `yaml:"provider"`
	OutboxDir          string `yaml:"outbox_dir"`
	SendGridAPIKey     string `yaml:"sendgrid_api_key" env:"SENDGRID_API_KEY"`
	SendGridAPIBase    string `yaml:"sendgrid_api_base" env:"SENDGRID_API_BASE"`
	UnsubscribeGroupID int    `yaml:"unsubscribe_group_id"`
	UnsubscribeSecret  string `yaml:"unsubscribe_secret" env:"PAYMENTD_UNSUBSCRIBE_SECRET"`
	TemplateDir        string `yaml:"template_dir"`
}

// Brand is what the emails look like and who they are from.
type Brand struct {
	ProductName     string `yaml:"product_name"`
	FromAddress     string `yaml:"from_address"`
	FromName        string `yaml:"from_name"`
	SupportEmail    string `yaml:"support_email"`
	AdminEmail      string `yaml:"admin_email" env:"PAYMENTD_ADMIN_EMAIL"`
	PrimaryColor    string `yaml:"primary_color"`
	BackgroundColor string `yaml:"background_color"`
	TextColor       string `yaml:"text_color"`
	LogoURL         string `yaml:"logo_url"`
	PricingURL      string `yaml:"pricing_url"`
}

// GitHub configures the repository-access provider.
type GitHub struct {
	Token      string `yaml:"token" env:"GITHUB_TOKEN"`
	APIBase    string `yaml:"api_base" env:"GITHUB_API_BASE"`
	Owner      string `yaml:"owner"`
	Repo       string `yaml:"repo"`
	Permission string `yaml:"permission"`
}

// Webhook configures the signed outbound webhook access provider.
type Webhook struct {
	URL    string `yaml:"url" env:"PAYMENTD_ACCESS_WEBHOOK_URL"`
	Secret string `yaml:"secret" env:"PAYMENTD_ACCESS_WEBHOOK_SECRET"`
}

// PostHog configures optional product analytics.
type PostHog struct {
	APIKey string `yaml:"api_key" env:"POSTHOG_API_KEY"`
	Host   string `yaml:"host"`
}

// Fulfillment configures the purchase, refund and recovery pipelines.
type Fulfillment struct {
	FollowUps                []FollowUp    `yaml:"followups"`
	AbandonedDelay           time.Duration `yaml:"abandoned_delay"`
	AbandonedRequiresConsent bool          `yaml:"abandoned_requires_consent"`
	// NotifyWindow is how recent a payment or refund must be for its
	// customer emails to be sent: older ones (a backfill, a long outage)
	// are recorded and acted on quietly.
	NotifyWindow time.Duration `yaml:"notify_window"`
	// RetryURL is the frontend page where a buyer whose card was declined
	// tries another on the same order; paymentd adds order_id=<id>.
	RetryURL string `yaml:"retry_url"`
}

// FollowUp is one email sent a delay after the purchase completed.
type FollowUp struct {
	Delay    time.Duration `yaml:"delay"`
	Template string        `yaml:"template"`
}

// Product is one thing for sale; Key is the Stripe price's lookup_key.
type Product struct {
	Key         string   `yaml:"key"`
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Amount      int64    `yaml:"amount"`
	Currency    string   `yaml:"currency"`
	Features    []string `yaml:"features"`
	Access      string   `yaml:"access"`
	RepoURL     string   `yaml:"repo_url"`
	// Mode is payment (the default: Key is the price's lookup key) or
	// subscription (sold through Prices, with TrialDays): see
	// subscriptions.go.
	Mode      string  `yaml:"mode"`
	Prices    []Price `yaml:"prices"`
	TrialDays int     `yaml:"trial_days"`
	// Credits, when positive, is what the product grants: per unit bought
	// for a one-time product (a pack), per billing period for a
	// subscription product.
	Credits int64 `yaml:"credits"`
	// CreditsRollover makes a subscription's renewal add its credits to
	// what is left instead of resetting the balance to them.
	CreditsRollover bool `yaml:"credits_rollover"`
	// CreditsLowThreshold, when set, sends the credits_low email and the
	// credits.low webhook once per period when a consumption leaves the
	// balance below it.
	CreditsLowThreshold *int64 `yaml:"credits_low_threshold"`
	// Stock, when set, limits the product: the units on hand the first
	// time paymentd starts with it. From then on the database holds the
	// count (sales, paymentd stock set); this value is not applied again.
	Stock *int `yaml:"stock"`
}

// Cart configures carts and the checkouts of carts.
type Cart struct {
	// TTL is how long a cart is kept after its last change.
	TTL time.Duration `yaml:"ttl"`
	// CheckoutTTL is how long a checkout of a cart holds its stock: a
	// hosted order's session expires after it, and paymentd cancels an
	// embedded order's PaymentIntent after it (unless a payment is
	// processing). Stripe allows sessions between 30m and 24h.
	CheckoutTTL time.Duration `yaml:"checkout_ttl"`
}

// Log configures log/slog output.
type Log struct {
	Format string `yaml:"format" env:"PAYMENTD_LOG_FORMAT"`
	Level  string `yaml:"level" env:"PAYMENTD_LOG_LEVEL"`
}

// Product returns the product with key, if any.
func (c *Config) Product(key string) (Product, bool) {
	for _, p := range c.Products {
		if p.Key == key {
			return p, true
		}
	}
	return Product{}, false
}

// Problems is every configuration problem found, each naming its key path.
type Problems []string

func (p Problems) Error() string {
	return "invalid configuration:\n  " + strings.Join(p, "\n  ")
}

// Load reads the YAML file at path, applies environment overrides from
// getenv (os.Getenv when nil) and validates the result. On invalid input it
// returns Problems listing everything wrong.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, getenv)
}

// Parse is Load for YAML already in memory.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := Defaults()
	var problems Problems

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{fmt.Sprintf("config: %v", err)}
	}
	if len(root.Content) > 0 {
		problems = append(problems, unknownKeys(root.Content[0], reflect.TypeOf(Config{}), "")...)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(cfg); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					problems = append(problems, "config: "+e)
				}
			} else {
				problems = append(problems, fmt.Sprintf("config: %v", err))
			}
		}
	}
	problems = append(problems, applyEnv(reflect.ValueOf(cfg).Elem(), "", getenv)...)
	problems = append(problems, cfg.validate()...)
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, problems
	}
	return cfg, nil
}

// Defaults returns the built-in defaults that config.yaml may override.
func Defaults() *Config {
	return &Config{
		Database: Database{MaxConns: 20},
		HTTP: HTTP{Addr: "127.0.0.1:8080", AdminAddr: "127.0.0.1:9090", PublicURL: "http://localhost:8080",
			MaxBodyBytes: 64 << 10, ShutdownTimeout: 20 * time.Second, CheckoutRate: 10,
			StripeLookupRate: 60},
		Auth: Auth{Issuer: "paymentd-dev", Audience: "paymentd"},
		Stripe: Stripe{RateLimit: 20, WebhookTolerance: 300 * time.Second,
			SuccessURL: "http://localhost:8080/?session_id={CHECKOUT_SESSION_ID}",
			CancelURL:  "http://localhost:8080/"},
		Reconcile: Reconcile{Schedule: "@every 1m", DeepSchedule: "@daily", DeepWindow: 30 * 24 * time.Hour,
			Overlap: 10 * time.Minute, AccessSchedule: "@hourly", PassBudget: 5 * time.Minute},
		Steps: Steps{Workers: 16, Lease: time.Minute, Timeout: 45 * time.Second, PollInterval: time.Second,
			BackoffBase: 10 * time.Second, BackoffMax: time.Hour, MaxAttempts: 10, ShutdownGrace: 15 * time.Second},
		Email:  Email{Provider: "outbox", OutboxDir: ".data/outbox"},
		GitHub: GitHub{Permission: "pull"},
		Fulfillment: Fulfillment{AbandonedDelay: time.Hour, NotifyWindow: 72 * time.Hour, FollowUps: []FollowUp{
			{Delay: 7 * 24 * time.Hour, Template: "followup_onboarding"},
			{Delay: 14 * 24 * time.Hour, Template: "followup_feedback"},
			{Delay: 30 * 24 * time.Hour, Template: "followup_testimonial"},
		}},
		Log: Log{Format: "text", Level: "info"},

		Retention:     90 * 24 * time.Hour,
		Console:       defaultConsole(),
		Subscriptions: defaultSubscriptions(),
		Cart:          Cart{TTL: 7 * 24 * time.Hour, CheckoutTTL: time.Hour},
	}
}

// EnvVars lists every environment variable Load reads, with its key path.
func EnvVars() map[string]string {
	out := map[string]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			path := joinPath(prefix, yamlName(f))
			if env := f.Tag.Get("env"); env != "" {
				out[env] = path
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, path)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

func applyEnv(v reflect.Value, prefix string, getenv func(string) string) Problems {
	var problems Problems
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		path := joinPath(prefix, yamlName(f))
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			problems = append(problems, applyEnv(fv, path, getenv)...)
			continue
		}
		env := f.Tag.Get("env")
		if env == "" {
			continue
		}
		val := getenv(env)
		if val == "" {
			continue
		}
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(val)
		case reflect.Int, reflect.Int32, reflect.Int64:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s (from %s): %q is not a whole number", path, env, val))
				continue
			}
			fv.SetInt(n)
		}
	}
	return problems
}

// unknownKeys walks a YAML mapping against the struct type it decodes into
// and names every key the struct does not have.
func unknownKeys(n *yaml.Node, t reflect.Type, prefix string) Problems {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var problems Problems
	switch {
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(time.Duration(0)):
		if n.Kind != yaml.MappingNode {
			return nil // a type error the decoder reports
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			fields[yamlName(t.Field(i))] = t.Field(i).Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			path := joinPath(prefix, key)
			ft, ok := fields[key]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: unknown key (line %d)", path, n.Content[i].Line))
				continue
			}
			problems = append(problems, unknownKeys(n.Content[i+1], ft, path)...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			problems = append(problems, unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", prefix, i))...)
		}
	}
	return problems
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// sameListener reports whether two listen addresses would claim the same
// port on some interface: equal ports (other than 0, "any free port") and
// equal hosts, or one of them listening on every interface.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return pa == pb && pa != "0" && (ha == hb || every(ha) || every(hb))
}

var (
	productKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,199}$`)
	colorRE      = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// ScheduleParser parses reconcile schedules: five-field cron expressions or
// descriptors such as "@every 1m" or "@daily". Validation and the
// reconciler's cron share it, so a schedule that validates also runs.
var ScheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
