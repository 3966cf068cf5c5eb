// Package httpapi is paymentd's minimal HTTP API: checkout, claim and the
// caller's purchases for the frontend, the Stripe webhook endpoint that
// stores hints for the reconciler, and health, readiness and metrics for
// operators. Two listeners serve it: the public one (the API, /healthz and
// /readyz with only a status) and the admin one (/metrics, /healthz and
// /readyz with what is wrong), so internals stay off the internet.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

// Server holds the API's dependencies; Handler returns its routes.
type Server struct {
	db      *store.DB
	clock   clock.Clock
	log     *slog.Logger
	metrics *Metrics
	mux     *http.ServeMux
}

// New returns a server with the public health routes mounted: /healthz,
// and /readyz with its status only. metrics may be nil.
func New(db *store.DB, clk clock.Clock, log *slog.Logger, metrics *Metrics) *Server {
	log = slog.New(requestIDHandler{log.Handler()}) // every line of a request names it
	s := &Server{db: db, clock: clk, log: log, metrics: metrics, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.Handle("GET /readyz", s.readyz(false))
	return s
}

// Handle mounts h at pattern (a net/http ServeMux pattern with method) on
// the public listener.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler returns the public API with request ids and logging around
// every route.
func (s *Server) Handler() http.Handler {
	return s.requestID(s.mux)
}

// AdminHandler returns the admin listener's routes: /healthz, /readyz with
// the detail of any problem, and metrics at /metrics.
func (s *Server) AdminHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /readyz", s.readyz(true))
	mux.Handle("GET /metrics", metrics)
	return s.requestID(mux)
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the request id carried by ctx, if any.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID gives each request an id (the caller's X-Request-Id when sane),
// echoes it in the response and logs the request with it.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if len(id) < 8 || len(id) > 64 {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		s.metrics.observe(r, rec.status, time.Since(start))
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
			level = slog.LevelDebug // probes and scrapes would drown the log
		}
		s.log.LogAttrs(ctx, level, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.status),
			slog.Duration("duration", time.Since(start)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports whether this replica can serve: the database answers and
// its schema is current. Nothing else: a stalled reconciler or a failing
// Stripe must not take the API out of a load balancer (they show in
// metrics and operator alerts instead). With detail, a 503 names each
// problem; without (the public listener), it says only that it is
// unavailable, since the problems carry internals.
func (s *Server) readyz(detail bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		problems := map[string]string{}
		if err := s.db.Pool.Ping(ctx); err != nil {
			problems["database"] = "unreachable: " + err.Error()
		} else if pending, err := s.db.PendingMigrations(ctx); err != nil {
			problems["migrations"] = "cannot read schema_migrations: " + err.Error()
		} else if len(pending) > 0 {
			problems["migrations"] = "database is behind; run `paymentd migrate`"
		}
		switch {
		case len(problems) == 0:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		case detail:
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "problems": problems})
		default:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		}
	})
}

// WriteTimeout is the HTTP server's write timeout. It is derived from the
// longest checkout (CheckoutBudget, which includes a Stripe call taking the
// client's whole timeout), so a session Stripe created late is never lost
// to a closed connection.
const WriteTimeout = CheckoutBudget + 5*time.Second

// NewHTTPServer returns the http.Server that Serve runs h on.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: WriteTimeout, IdleTimeout: 120 * time.Second}
}

// Serve runs an HTTP server for h on ln until ctx ends, then shuts it down
// gracefully within timeout.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := NewHTTPServer(h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
