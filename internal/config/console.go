// The console section: who may sign in to the operator console (served on
// the admin listener under /console/) and how its sessions, login limits and
// lists behave.
package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Console configures the operator console. With no operator and no role
// it is not served.
type Console struct {
	// Operators sign in with a name and a password, checked against an
	// argon2id or bcrypt hash (`paymentd operators hash` prints one).
	Operators []Operator `yaml:"operators"`
	// RoleClaim and Role let users of auth.jwks_url sign in with a token
	// whose claim RoleClaim (a dotted path such as "realm_access.roles";
	// a string or a list of strings) holds Role. Both or neither.
	RoleClaim string `yaml:"role_claim"`
	Role      string `yaml:"role"`
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LoginFailures is how many failed sign-ins one address, and one
	// operator name, may make in a burst; one more is allowed every
	// LoginWindow/LoginFailures after that, across every replica.
	LoginFailures int           `yaml:"login_failures"`
	LoginWindow   time.Duration `yaml:"login_window"`
	// StuckAfter is how long past its run_at a pending step counts as stuck.
	StuckAfter time.Duration `yaml:"stuck_after"`
	// DashboardURL is the Stripe Dashboard's base URL for the links to
	// objects (test-mode links add /test, chosen from the secret key).
	DashboardURL string `yaml:"dashboard_url"`
}

// Operator is one console operator with a password.
type Operator struct {
	Name string `yaml:"name"`
	// PasswordHash is a PHC argon2id string ($argon2id$v=19$m=...) or a
	// bcrypt hash ($2a$, $2b$ or $2y$). It is never logged or shown.
	PasswordHash string `yaml:"password_hash"`
}

// Enabled reports whether anyone can sign in to the console.
func (c Console) Enabled() bool { return len(c.Operators) > 0 || c.RoleClaim != "" }

func defaultConsole() Console {
	return Console{SessionTTL: 12 * time.Hour, LoginFailures: 5, LoginWindow: 15 * time.Minute,
		StuckAfter: time.Hour, DashboardURL: "https://dashboard.stripe.com"}
}

var operatorNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// validateConsole checks the console section. A problem with a password
// hash names the operator, never the hash.
func (c *Config) validateConsole(add func(key, format string, args ...any)) {
	cs := c.Console
	seen := map[string]bool{}
	for i, op := range cs.Operators {
		key := fmt.Sprintf("console.operators[%d]", i)
		if !operatorNameRE.MatchString(op.Name) {
			add(key+".name", "must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
		}
		if seen[strings.ToLower(op.Name)] {
			add(key+".name", "operator %q is listed twice", op.Name)
		}
		seen[strings.ToLower(op.Name)] = true
		if !IsPasswordHash(op.PasswordHash) {
			add(key+".password_hash", "must be an argon2id ($argon2id$...) or bcrypt ($2b$...) hash: run `paymentd operators hash`")
		}
	}
	if (cs.RoleClaim == "") != (cs.Role == "") {
		add("console.role", "console.role_claim and console.role go together: set both or neither")
	}
	if cs.RoleClaim != "" && c.Auth.JWKSURL == "" {
		add("console.role_claim", "needs auth.jwks_url: operators sign in with tokens from the users' JWKS, never with HS256 tokens")
	}
	if cs.SessionTTL <= 0 || cs.SessionTTL > 7*24*time.Hour {
		add("console.session_ttl", "must be a positive duration of at most 168h")
	}
	if cs.LoginFailures < 1 || cs.LoginFailures > 1000 {
		add("console.login_failures", "must be between 1 and 1000")
	}
	if cs.LoginWindow <= 0 {
		add("console.login_window", "must be a positive duration such as \"15m\"")
	}
	if cs.StuckAfter <= 0 {
		add("console.stuck_after", "must be a positive duration such as \"1h\"")
	}
	if cs.DashboardURL == "" || (!strings.HasPrefix(cs.DashboardURL, "https://") && !strings.HasPrefix(cs.DashboardURL, "http://")) {
		add("console.dashboard_url", "must be an absolute http(s) URL")
	}
	if c.Console.Enabled() && c.HTTP.AdminAddr == "" {
		add("console", "the console is served on the admin listener: set http.admin_addr")
	}
}

// IsPasswordHash reports whether s has the shape of a hash the console
// accepts: a PHC argon2id string or a bcrypt hash.
func IsPasswordHash(s string) bool {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return strings.Count(s, "$") == 5
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return len(s) == 60
	}
	return false
}
