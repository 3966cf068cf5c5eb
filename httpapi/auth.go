// Bearer authentication: user-facing endpoints take a JWT whose subject is
// the user id and whose email claim is the buyer's address. Tokens are
// signed with a shared HS256 secret (first-party frontends, dev tokens) or
// by an identity provider whose public keys are published as a JWKS
// (RS256/ES256). Anything else, including alg "none", is refused.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/paymentd/paymentd/internal/clock"
)

// User is the caller a verified bearer token names.
type User struct {
	// ID is the token's subject.
	ID string
	// Email is the token's email claim. A token that says
	// email_verified=false is refused outright.
	Email string
	// EmailVerified is true only when the token says email_verified=true.
	// A token without the claim is accepted, but its email proves nothing:
	// it cannot claim a purchase by email (a Payment Link's).
	EmailVerified bool
}

// AuthOptions configures bearer-token verification. At least one of
// Secret and JWKSURL is required; Issuer and Audience always are.
type AuthOptions struct {
	// Secret verifies HS256 tokens.
	Secret []byte
	// JWKSURL publishes the keys that verify RS256 and ES256 tokens.
	JWKSURL string
	// Issuer and Audience must match the token's iss and aud claims.
	Issuer, Audience string
	// Leeway tolerates clock skew on exp, nbf and iat; 0 means 30s.
	Leeway time.Duration
	// Clock tells the time tokens are checked against; nil means the wall clock.
	Clock clock.Clock
	// HTTPClient fetches the JWKS; nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives JWKS refresh failures; nil discards them.
	Logger *slog.Logger
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	secret  []byte
	jwks    keyfunc.Keyfunc
	parser  *jwt.Parser
	methods []string
}

// NewAuthenticator returns an authenticator for o. With a JWKS URL it
// starts a goroutine, ended by ctx, that refreshes the key set hourly and
// when a token names an unknown key id (at most every five minutes). An
// unreachable JWKS endpoint does not fail construction: tokens are refused
// until it answers.
func NewAuthenticator(ctx context.Context, o AuthOptions) (*Authenticator, error) {
	if len(o.Secret) == 0 && o.JWKSURL == "" {
		return nil, errors.New("auth: set a JWT secret or a JWKS URL")
	}
	if o.Issuer == "" || o.Audience == "" {
		return nil, errors.New("auth: issuer and audience are required")
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{}
	if len(o.Secret) > 0 {
		a.secret = o.Secret
		a.methods = append(a.methods, jwt.SigningMethodHS256.Alg())
	}
	if o.JWKSURL != "" {
		client := o.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		log := o.Logger
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{o.JWKSURL}, keyfunc.Override{
			Client:          client,
			RefreshInterval: time.Hour,
			RefreshErrorHandlerFunc: func(u string) func(ctx context.Context, err error) {
				return func(ctx context.Context, err error) {
					log.WarnContext(ctx, "refresh JWKS", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("auth: load JWKS from %s: %w", o.JWKSURL, err)
		}
		a.jwks = k
		a.methods = append(a.methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
	}
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(a.methods),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(o.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(o.Leeway),
		jwt.WithTimeFunc(o.Clock.Now),
	)
	return a, nil
}

// tokenClaims are the claims paymentd reads.
type tokenClaims struct {
	Email         string    `json:"email"`
	EmailVerified claimBool `json:"email_verified"`
	jwt.RegisteredClaims
}

// claimBool accepts true/false as JSON booleans or strings (some identity
// providers send "false") and remembers whether the claim was present.
type claimBool struct{ set, value bool }

// MarshalJSON writes the claim as a JSON boolean (DevToken sets it).
func (b claimBool) MarshalJSON() ([]byte, error) { return json.Marshal(b.value) }

// UnmarshalJSON reads a boolean, "true"/"false" or null.
func (b *claimBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = claimBool{set: true, value: v}
	case string:
		*b = claimBool{set: true, value: !strings.EqualFold(v, "false")}
	case nil:
		*b = claimBool{}
	default:
		return fmt.Errorf("email_verified: want a boolean, got %T", v)
	}
	return nil
}

// Verify checks a raw token and returns the user it names. Any failure is
// an error whose text is safe to log (it never contains the token).
func (a *Authenticator) Verify(ctx context.Context, raw string) (User, error) {
	var claims tokenClaims
	_, err := a.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
			if a.secret == nil {
				return nil, errors.New("HS256 tokens are not accepted")
			}
			return a.secret, nil
		}
		if a.jwks == nil {
			return nil, fmt.Errorf("%s tokens are not accepted", t.Method.Alg())
		}
		return a.jwks.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		return User{}, err
	}
	switch {
	case claims.Subject == "":
		return User{}, errors.New("token has no subject")
	case claims.Email == "" || !strings.Contains(claims.Email, "@"):
		return User{}, errors.New("token has no email")
	case claims.EmailVerified.set && !claims.EmailVerified.value:
		return User{}, errors.New("token's email is not verified")
	}
	return User{ID: claims.Subject, Email: claims.Email,
		EmailVerified: claims.EmailVerified.set && claims.EmailVerified.value}, nil
}

// DevToken mints an HS256 token for userID and email, valid for ttl from
// now, that an Authenticator with the same secret, issuer and audience
// accepts. It is for development (`make run`'s walkthrough) and tests.
func DevToken(secret []byte, issuer, audience, userID, email string, ttl time.Duration, now time.Time) (string, error) {
	claims := tokenClaims{
		Email:         email,
		EmailVerified: claimBool{set: true, value: true},
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: userID, Audience: jwt.ClaimStrings{audience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign dev token: %w", err)
	}
	return s, nil
}

// authed wraps h so it runs only for a request with a valid bearer token;
// every other request gets 401 with WWW-Authenticate: Bearer.
func (a *api) authed(h func(w http.ResponseWriter, r *http.Request, u User) error) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		raw, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paymentd"`)
			return Errorf(http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token>")
		}
		u, err := a.auth.Verify(r.Context(), raw)
		if err != nil {
			a.log.InfoContext(r.Context(), "bearer token refused", "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="paymentd", error="invalid_token"`)
			return Errorf(http.StatusUnauthorized, "unauthorized", "the bearer token is invalid or expired")
		}
		return h(w, r, u)
	})
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
