package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// apiHarness is the API on a fresh database, served over HTTP, with the
// committed config.yaml as its configuration.
type apiHarness struct {
	t       *testing.T
	db      *store.DB
	clock   *clock.Fake
	cfg     *config.Config
	reg     *prometheus.Registry
	srv     *httptest.Server
	secret  []byte
	authOpt httpapi.AuthOptions
}

// harnessOptions adjusts the harness before the API is mounted.
type harnessOptions struct {
	// deps fills the dependencies beyond Config and Auth.
	deps httpapi.APIDeps
	// auth replaces the HS256 authentication built from config.yaml.
	auth *httpapi.AuthOptions
	// db reuses a database instead of creating one.
	db *store.DB
	// clock replaces the fake clock the harness would start at now.
	clock *clock.Fake
}

// testLogger routes the server's logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func loadConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("../config.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatalf("load config.yaml: %v", err)
	}
	return cfg
}

func newHarness(t *testing.T, o harnessOptions) *apiHarness {
	t.Helper()
	h := &apiHarness{t: t, db: o.db, clock: o.clock, cfg: o.deps.Config, reg: prometheus.NewRegistry()}
	if h.clock == nil {
		h.clock = clock.NewFake(time.Now())
	}
	if h.db == nil {
		h.db = pgtest.New(t)
	}
	if h.cfg == nil {
		h.cfg = loadConfig(t)
	}
	h.secret = []byte(h.cfg.Auth.JWTSecret)
	h.authOpt = httpapi.AuthOptions{Secret: h.secret, Issuer: h.cfg.Auth.Issuer, Audience: h.cfg.Auth.Audience,
		Clock: h.clock}
	if o.auth != nil {
		h.authOpt = *o.auth
	}
	auth, err := httpapi.NewAuthenticator(t.Context(), h.authOpt)
	if err != nil {
		t.Fatal(err)
	}
	deps := o.deps
	deps.Config, deps.Auth = h.cfg, auth
	log := testLogger(t)
	s := httpapi.New(h.db, h.clock, log, httpapi.NewMetrics(h.reg))
	s.MountAPI(deps)
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// token mints a valid HS256 token for a user.
func (h *apiHarness) token(userID, email string) string {
	h.t.Helper()
	tok, err := httpapi.DevToken(h.secret, h.cfg.Auth.Issuer, h.cfg.Auth.Audience, userID, email, time.Hour, h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// response is an HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the code of an error response, "" if it is not one.
func (r response) errorCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// errorMessage returns the message of an error response.
func (r response) errorMessage() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Message
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; body is JSON-encoded unless it is a string or []byte.
func (h *apiHarness) do(method, path, token string, body any, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// count runs a count query.
func (h *apiHarness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.db.Pool.QueryRow(h.t.Context(), sql, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// counter returns a counter's value by metric name and one label.
func (h *apiHarness) counter(name, label, value string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestCORSPreflightAndResponses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	allowed := h.cfg.HTTP.CORSOrigins[0]

	r := h.do("OPTIONS", "/api/checkout", "", nil, "Origin", allowed, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization, content-type")
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != allowed {
		t.Fatalf("preflight from %s = %d, Allow-Origin %q", allowed, r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	for _, want := range []string{"Authorization", "Content-Type"} {
		if !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), want) {
			t.Errorf("preflight allows headers %q, lacking %s", r.header.Get("Access-Control-Allow-Headers"), want)
		}
	}
	if !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight allows methods %q", r.header.Get("Access-Control-Allow-Methods"))
	}

	for _, c := range []struct{ origin, method, path string }{
		{"https://evil.example", "POST", "/api/checkout"},
		{allowed + ".evil.example", "POST", "/api/checkout"},
		{allowed, "DELETE", "/api/purchases"}, // a method the path does not serve
	} {
		r := h.do("OPTIONS", c.path, "", nil, "Origin", c.origin, "Access-Control-Request-Method", c.method)
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight %s %s from %s granted Allow-Origin %q", c.method, c.path, c.origin, got)
		}
	}

	tok := h.token("user-cors", "cors@example.com")
	r = h.do("GET", "/api/purchases", tok, nil, "Origin", allowed)
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != allowed {
		t.Errorf("GET from %s = %d, Allow-Origin %q", allowed, r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	r = h.do("GET", "/api/purchases", tok, nil, "Origin", "https://evil.example")
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("GET from a disallowed origin got Allow-Origin %q", got)
	}
	// The webhook is server to server: no CORS.
	r = h.do("OPTIONS", "/api/stripe/webhook", "", nil, "Origin", allowed, "Access-Control-Request-Method", "POST")
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("webhook preflight granted Allow-Origin %q", got)
	}
}

func TestMissingDependencyAnswers503(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tok := h.token("user-1", "ada@example.com")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/checkout", map[string]any{"product": "pro_one_time"}},
		{"POST", "/api/purchases/claim", map[string]any{"session_id": "cs_test_1"}},
		{"PUT", "/api/me/github", map[string]any{"username": "ada"}},
	} {
		r := h.do(c.method, c.path, tok, c.body)
		if r.status != http.StatusServiceUnavailable || r.errorCode() != "unavailable" {
			t.Errorf("%s %s without its dependency = %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
