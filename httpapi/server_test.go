package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

type readyBody struct {
	Status   string            `json:"status"`
	Problems map[string]string `json:"problems"`
}

// getReady asks /readyz on the public listener and on the admin one, and
// returns the status and the raw bodies.
func getReady(t *testing.T, db *store.DB) (publicCode int, public string, adminCode int, admin readyBody) {
	t.Helper()
	api := httpapi.New(db, clock.Real{}, slog.New(slog.DiscardHandler), nil)
	get := func(h http.Handler) (int, []byte) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	publicCode, pub := get(api.Handler())
	adminCode, raw := get(api.AdminHandler(http.NotFoundHandler()))
	if err := json.Unmarshal(raw, &admin); err != nil {
		t.Fatalf("admin /readyz: %s: %v", raw, err)
	}
	return publicCode, string(pub), adminCode, admin
}

func TestReadyzReady(t *testing.T) {
	t.Parallel()
	code, body, adminCode, admin := getReady(t, pgtest.New(t))
	if code != http.StatusOK || body != `{"status":"ready"}`+"\n" || adminCode != http.StatusOK || admin.Status != "ready" {
		t.Fatalf("readyz = %d %s, admin %d %+v", code, body, adminCode, admin)
	}
}

// The public listener says only that it is unavailable; what is wrong (a
// database error, the schema) is internals, for the admin listener.
const publicUnavailable = `{"status":"unavailable"}` + "\n"

func TestReadyzFailsOnPendingMigrations(t *testing.T) {
	t.Parallel()
	code, body, adminCode, admin := getReady(t, pgtest.Open(t, pgtest.EmptyURL(t)))
	if code != http.StatusServiceUnavailable || body != publicUnavailable {
		t.Errorf("public readyz on an unmigrated database = %d %s; want 503 %s", code, body, publicUnavailable)
	}
	if adminCode != http.StatusServiceUnavailable || !strings.Contains(admin.Problems["migrations"], "paymentd migrate") {
		t.Errorf("admin readyz on an unmigrated database = %d %+v", adminCode, admin)
	}
}

func TestReadyzFailsWhenDatabaseIsDown(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	db := pgtest.Open(t, dbURL)
	// Take the database away under the pool.
	u, _ := url.Parse(dbURL)
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(context.Background(), strings.Replace(dbURL, "/"+name, "/postgres", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
	code, body, adminCode, detail := getReady(t, db)
	if code != http.StatusServiceUnavailable || body != publicUnavailable {
		t.Errorf("public readyz with the database gone = %d %s; want 503 %s", code, body, publicUnavailable)
	}
	if adminCode != http.StatusServiceUnavailable || !strings.HasPrefix(detail.Problems["database"], "unreachable") {
		t.Errorf("admin readyz with the database gone = %d %+v", adminCode, detail)
	}
}

// The server's write timeout outlasts the longest checkout, whose Stripe
// call alone may take the Stripe client's whole timeout: otherwise a
// session created late is lost to a closed connection.
func TestServerWriteTimeoutOutlastsACheckout(t *testing.T) {
	t.Parallel()
	srv := httpapi.NewHTTPServer(http.NotFoundHandler())
	if srv.WriteTimeout <= httpapi.CheckoutBudget || httpapi.CheckoutBudget <= stripeclient.Timeout {
		t.Errorf("write timeout %s, checkout budget %s, Stripe client timeout %s; want write > budget > Stripe",
			srv.WriteTimeout, httpapi.CheckoutBudget, stripeclient.Timeout)
	}
	if srv.ReadHeaderTimeout == 0 || srv.IdleTimeout == 0 {
		t.Errorf("server without read-header or idle timeouts: %+v", srv)
	}
}

func TestMetricsOnlyOnTheAdminListener(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	api := httpapi.New(pgtest.New(t), clock.Real{}, slog.New(slog.DiscardHandler), httpapi.NewMetrics(reg))
	public := httptest.NewServer(api.Handler())
	defer public.Close()
	admin := httptest.NewServer(api.AdminHandler(httpapi.MetricsHandler(reg)))
	defer admin.Close()
	for _, c := range []struct {
		srv  *httptest.Server
		path string
		want int
	}{
		{public, "/metrics", http.StatusNotFound},
		{public, "/healthz", http.StatusOK},
		{admin, "/metrics", http.StatusOK},
		{admin, "/healthz", http.StatusOK},
		{admin, "/api/purchases", http.StatusNotFound},
	} {
		resp, err := http.Get(c.srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s%s = %d; want %d", map[bool]string{true: "public", false: "admin"}[c.srv == public], c.path,
				resp.StatusCode, c.want)
		}
	}
}

func TestRequestIDAndMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	api := httpapi.New(pgtest.New(t), clock.Real{}, slog.New(slog.DiscardHandler), httpapi.NewMetrics(reg))
	api.Handle("GET /metrics", httpapi.MetricsHandler(reg)) // http.public_metrics: true
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
	req.Header.Set("X-Request-Id", "frontend-req-0001")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "frontend-req-0001" {
		t.Errorf("request id echoed as %q", got)
	}
	resp, _ = http.Get(srv.URL + "/nope")
	resp.Body.Close()
	if len(resp.Header.Get("X-Request-Id")) != 16 {
		t.Errorf("generated request id %q", resp.Header.Get("X-Request-Id"))
	}
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`paymentd_http_requests_total{code="200",route="GET /healthz"} 1`,
		`paymentd_http_requests_total{code="404",route="unmatched"} 1`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestEveryLogLineOfARequestCarriesItsID(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))
	api := httpapi.New(pgtest.New(t), clock.Real{}, log, nil)
	cfg := config.Defaults()
	cfg.Stripe.WebhookSecret = "whsec_test"
	auth, err := httpapi.NewAuthenticator(context.Background(), httpapi.AuthOptions{Secret: []byte(strings.Repeat("s", 32)),
		Issuer: "i", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	api.MountAPI(httpapi.APIDeps{Config: cfg, Auth: auth})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/api/stripe/webhook", strings.NewReader(`{}`))
	req.Header.Set("X-Request-Id", "req-id-12345678")
	req.Header.Set("Stripe-Signature", "t=1,v1=forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want the handler's line and the request line, got:\n%s", buf.String())
	}
	for _, line := range lines {
		if !strings.Contains(line, `"request_id":"req-id-12345678"`) {
			t.Errorf("log line without the request id: %s", line)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
