package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/paymentd/paymentd/httpapi"
)

// userEndpoints are every route that needs a bearer token, with a body
// that would be acceptable with one.
var userEndpoints = []struct {
	method, path string
	body         any
}{
	{"POST", "/api/checkout", map[string]any{"product": "pro_one_time"}},
	{"POST", "/api/purchases/claim", map[string]any{"session_id": "cs_test_a1"}},
	{"GET", "/api/purchases", nil},
	{"PUT", "/api/me/github", map[string]any{"username": "octocat"}},
	{"GET", "/api/cart", nil},
	{"PUT", "/api/cart", map[string]any{"items": []any{}}},
	{"POST", "/api/checkout", map[string]any{"cart": true, "ui_mode": "embedded"}},
	{"GET", "/api/orders", nil},
}

// claims builds the claims of a token; mutate adjusts them.
func claims(iss, aud, sub, email string, now time.Time, mutate func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": iss, "aud": aud, "sub": sub, "email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func assertUnauthorized(t *testing.T, h *apiHarness, name, token string) {
	t.Helper()
	for _, e := range userEndpoints {
		r := h.do(e.method, e.path, token, e.body)
		if r.status != http.StatusUnauthorized || r.errorCode() != "unauthorized" ||
			!strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %s %s = %d %q WWW-Authenticate %q; want 401 unauthorized with a Bearer challenge",
				name, e.method, e.path, r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	}
}

func TestBadTokensAreRefusedOnEveryUserEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	now := h.clock.Now()
	iss, aud := h.cfg.Auth.Issuer, h.cfg.Auth.Audience
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ok := claims(iss, aud, "user-1", "ada@example.com", now, nil)

	cases := map[string]string{
		"missing":        "",
		"not a jwt":      "not-a-token",
		"forged":         sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), ok, ""),
		"expired":        sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "ada@example.com", now.Add(-2*time.Hour), nil), ""),
		"alg none":       sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok, ""),
		"wrong audience": sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, "someone-else", "user-1", "ada@example.com", now, nil), ""),
		"wrong issuer":   sign(t, jwt.SigningMethodHS256, h.secret, claims("https://evil.example", aud, "user-1", "ada@example.com", now, nil), ""),
		"no expiry": sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "ada@example.com", now,
			func(c jwt.MapClaims) { delete(c, "exp") }), ""),
		"no subject": sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "", "ada@example.com", now, nil), ""),
		"no email":   sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "", now, nil), ""),
		"email not verified": sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "ada@example.com", now,
			func(c jwt.MapClaims) { c["email_verified"] = false }), ""),
		"email not verified (string)": sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "ada@example.com", now,
			func(c jwt.MapClaims) { c["email_verified"] = "false" }), ""),
		"RS256 without a JWKS": sign(t, jwt.SigningMethodRS256, rsaKey, ok, "k1"),
	}
	for name, tok := range cases {
		assertUnauthorized(t, h, name, tok)
	}

	// Within the leeway, and without email_verified at all, a token is good.
	good := sign(t, jwt.SigningMethodHS256, h.secret, claims(iss, aud, "user-1", "ada@example.com", now.Add(-time.Hour-10*time.Second),
		func(c jwt.MapClaims) { delete(c, "email_verified") }), "")
	if r := h.do("GET", "/api/purchases", good, nil); r.status != http.StatusOK {
		t.Errorf("a token 10s past expiry (within leeway) = %d %s", r.status, r.body)
	}
	// The DevToken helper mints what the API accepts, until it expires.
	dev := h.token("user-1", "ada@example.com")
	if r := h.do("GET", "/api/purchases", dev, nil); r.status != http.StatusOK {
		t.Fatalf("DevToken = %d %s", r.status, r.body)
	}
	h.clock.Advance(2 * time.Hour)
	assertUnauthorized(t, h, "dev token after expiry", dev)
}

// jwks serves a JWK Set holding the public keys given.
func jwks(t *testing.T, keys map[string]any) *httptest.Server {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var set []map[string]string
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set = append(set, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			x, y := make([]byte, 32), make([]byte, 32)
			k.X.FillBytes(x)
			k.Y.FillBytes(y)
			set = append(set, map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
				"x": b64(x), "y": b64(y)})
		}
	}
	data, err := json.Marshal(map[string]any{"keys": set})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJWKSTokens(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := jwks(t, map[string]any{"rsa-1": &rsaKey.PublicKey, "ec-1": &ecKey.PublicKey})
	iss, aud := "https://id.example.com/", "paymentd-api"
	h := newHarness(t, harnessOptions{auth: &httpapi.AuthOptions{JWKSURL: keys.URL, Issuer: iss, Audience: aud}})
	now := time.Now()
	ok := claims(iss, aud, "user-jwks", "jwks@example.com", now, nil)

	for name, tok := range map[string]string{
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey, ok, "rsa-1"),
		"ES256": sign(t, jwt.SigningMethodES256, ecKey, ok, "ec-1"),
	} {
		if r := h.do("GET", "/api/purchases", tok, nil); r.status != http.StatusOK {
			t.Errorf("%s token from the JWKS = %d %s", name, r.status, r.body)
		}
	}
	pemLike, _ := json.Marshal(rsaKey.PublicKey) // an HS256 "secret" an attacker could know
	for name, tok := range map[string]string{
		"RS256 signed by another key": sign(t, jwt.SigningMethodRS256, otherRSA, ok, "rsa-1"),
		"RS256 with an unknown kid":   sign(t, jwt.SigningMethodRS256, otherRSA, ok, "rsa-unknown"),
		"HS256 with a JWKS only":      sign(t, jwt.SigningMethodHS256, pemLike, ok, "rsa-1"),
		"alg none":                    sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok, "rsa-1"),
		"wrong audience": sign(t, jwt.SigningMethodRS256, rsaKey, claims(iss, "other", "user-jwks", "jwks@example.com", now, nil),
			"rsa-1"),
		"expired": sign(t, jwt.SigningMethodRS256, rsaKey, claims(iss, aud, "user-jwks", "jwks@example.com", now.Add(-3*time.Hour), nil),
			"rsa-1"),
	} {
		assertUnauthorized(t, h, name, tok)
	}
}

func TestNewAuthenticatorNeedsAKeyAndClaims(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]httpapi.AuthOptions{
		"no key":      {Issuer: "i", Audience: "a"},
		"no issuer":   {Secret: []byte("s"), Audience: "a"},
		"no audience": {Secret: []byte("s"), Issuer: "i"},
	} {
		if _, err := httpapi.NewAuthenticator(t.Context(), o); err == nil {
			t.Errorf("%s: NewAuthenticator succeeded", name)
		}
	}
}
