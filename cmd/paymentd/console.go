// The operator console's place in serve: built from the app's own parts
// (the database, the engine, the reconciler, fulfillment), so it acts
// through the same functions as the CLI and the reconciler, and served on
// the admin listener only, beside /metrics, never on the public one.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/console"
	"github.com/paymentd/paymentd/internal/fulfillment"
)

// newConsole builds the operator console, or returns nil when no one can
// sign in (no operator, no role). dev drops the cookie's Secure flag for
// the plain-HTTP dev stack.
func newConsole(ctx context.Context, cfg *config.Config, log *slog.Logger, a *app, dev bool) (*console.Console, error) {
	if !cfg.Console.Enabled() {
		return nil, nil
	}
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		return nil, fmt.Errorf("console: email templates: %w", err)
	}
	var tokens console.TokenVerifier
	if cfg.Console.RoleClaim != "" {
		// The users' JWKS only: an HS256 token (the users' shared secret)
		// never signs in an operator.
		auth, err := httpapi.NewAuthenticator(ctx, httpapi.AuthOptions{JWKSURL: cfg.Auth.JWKSURL, Issuer: cfg.Auth.Issuer,
			Audience: cfg.Auth.Audience, Clock: a.clock, Logger: log.With("component", "console")})
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		tokens = auth
	}
	return console.New(console.Options{DB: a.db, Clock: a.clock, Log: log.With("component", "console"), Config: cfg,
		Engine: a.engine, Reconciler: a.rec, Access: a.ful, Renderer: renderer, Tokens: tokens, Dev: dev})
}

// withConsole serves the console under /console/ beside the admin routes.
func withConsole(admin http.Handler, con *console.Console) http.Handler {
	if con == nil {
		return admin
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", con.Handler())
	mux.Handle("/", admin)
	return mux
}
