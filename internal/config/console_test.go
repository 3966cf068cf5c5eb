package config_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

// A bcrypt hash of "correct horse" and an argon2id one, as paymentd
// operators hash prints them.
const (
	bcryptHash   = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
	argon2idHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$Q29tcGxldGVseSBtYWRlIHVwIGJ1dCB3ZWxsIHNoYXBlZA"
)

func consoleYAML(t *testing.T, section string) string {
	t.Helper()
	base, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(base), "\nconsole:\n")
	if i < 0 {
		t.Fatal("config.yaml has no console section")
	}
	return string(base[:i]) + "\nconsole:\n" + section
}

func TestConsoleIsOffUntilSomeoneCanSignIn(t *testing.T) {
	cfg, err := config.Load("../../config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Console.Enabled() {
		t.Error("the committed config enables the console with no operator")
	}
	if cfg.Console.SessionTTL != 12*time.Hour || cfg.Console.LoginFailures != 5 || cfg.Console.StuckAfter != time.Hour {
		t.Errorf("console defaults = %+v", cfg.Console)
	}
	cfg, err = config.Parse([]byte(consoleYAML(t, `
  operators:
    - {name: alice, password_hash: "`+bcryptHash+`"}
    - {name: bob, password_hash: "`+argon2idHash+`"}
`)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Console.Enabled() || len(cfg.Console.Operators) != 2 || cfg.Console.Operators[1].PasswordHash != argon2idHash {
		t.Errorf("console = %+v", cfg.Console)
	}
}

func TestConsoleProblemsNameTheKeyNeverTheHash(t *testing.T) {
	secretish := "$argon2id$not-quite-a-hash-but-secret"
	_, err := config.Parse([]byte(consoleYAML(t, `
  operators:
    - {name: alice, password_hash: "`+secretish+`"}
    - {name: Alice, password_hash: "`+bcryptHash+`"}
    - {name: "bad name", password_hash: "plaintext-password"}
  role: "ops"
  session_ttl: 0s
  login_failures: 0
`)), noEnv)
	if err == nil {
		t.Fatal("a bad console section loaded")
	}
	msg := err.Error()
	for _, want := range []string{"console.operators[0].password_hash:", "console.operators[1].name: operator \"Alice\" is listed twice",
		"console.operators[2].name:", "console.operators[2].password_hash:", "console.role: console.role_claim and console.role go together",
		"console.session_ttl:", "console.login_failures:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q:\n%s", want, msg)
		}
	}
	for _, leaked := range []string{secretish, "plaintext-password"} {
		if strings.Contains(msg, leaked) {
			t.Errorf("a problem shows the password hash %q:\n%s", leaked, msg)
		}
	}

	// Operators by role need the JWKS: an HS256 token must never make an operator.
	_, err = config.Parse([]byte(consoleYAML(t, "  role_claim: roles\n  role: ops\n")), noEnv)
	if err == nil || !strings.Contains(err.Error(), "console.role_claim: needs auth.jwks_url") {
		t.Errorf("a role without a JWKS = %v", err)
	}
	env := map[string]string{"PAYMENTD_ADMIN_ADDR": ""}
	_, err = config.Parse([]byte(strings.Replace(consoleYAML(t, "  operators: [{name: alice, password_hash: \""+bcryptHash+"\"}]\n"),
		`admin_addr: "127.0.0.1:9090"`, `admin_addr: ""`, 1)), func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "console: the console is served on the admin listener") {
		t.Errorf("a console without an admin listener = %v", err)
	}
}
