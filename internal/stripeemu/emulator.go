// Package stripeemu is a stateful, in-process fake of the Stripe API
// endpoints paymentd uses: products, prices (one-time and recurring),
// coupons, promotion codes, Checkout Sessions, payment intents, charges,
// refunds, disputes, customers, subscriptions, invoices, billing portal
// sessions, tax calculations and transactions, and events (billing.go
// describes the subscription model, intents.go the payment intent one). It
// speaks Stripe's wire format (form-encoded requests, JSON responses in the
// 2023-10-16 API shapes) so the official stripe-go v76 client talks to it
// unchanged, records events for every state change, delivers them as signed
// webhooks, and serves hosted checkout, Elements, portal and invoice pages
// for local development.
//
// The Emulator is an http.Handler: mount it with httptest.NewServer (tests)
// or an http.Server (dev mode) and point stripe-go's API backend at its URL.
// Time comes from an injected clock.Clock, so tests move a clock.Fake to
// trigger expiry instead of sleeping.
package stripeemu

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
)

// APIVersion is the Stripe API version whose shapes the emulator speaks and
// stamps on every event.
const APIVersion = "2023-10-16"

// idempotencyTTL is how long a stored idempotent response is replayed, as on
// Stripe.
const idempotencyTTL = 24 * time.Hour

// maxBody bounds a request body the API will read.
const maxBody = 1 << 20

// Options configures an Emulator. The zero value is usable: it runs on the
// wall clock and delivers no webhooks.
type Options struct {
	// Clock is the source of time for created timestamps, expiry and webhook
	// signatures. Nil means the wall clock.
	Clock clock.Clock
	// WebhookURL receives every recorded event as a signed POST. Empty
	// disables delivery.
	WebhookURL string
	// WebhookSecret signs webhook payloads (whsec_...).
	WebhookSecret string
	// DropRate is the fraction (0..1) of webhook deliveries silently dropped.
	DropRate float64
	// Seed makes ids, injected faults and webhook drops deterministic.
	Seed int64
	// BaseURL is the public URL of the emulator, used for hosted checkout
	// page links. It may be set later with SetBaseURL.
	BaseURL string
	// HTTPClient delivers webhooks. Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives webhook delivery failures. Nil discards them.
	Logger *slog.Logger
	// WebhookConcurrency is how many webhooks are delivered at once. Stripe
	// delivers concurrently and guarantees no order; zero or one delivers
	// one at a time, in the order the events happened (deterministic, for
	// tests that want it).
	WebhookConcurrency int
}

// Request is one API request as the emulator received it.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path, e.g. /v1/checkout/sessions.
	Path string
	// Form holds the decoded query and body parameters.
	Form url.Values
	// IdempotencyKey is the Idempotency-Key header, if any.
	IdempotencyKey string
	// At is the emulator clock's time when the request arrived.
	At time.Time
	// Lost is set when the request was applied and its answer dropped
	// (Faults.RateLost).
	Lost bool
}

// Faults describes randomly injected API failures. Rates are fractions of
// requests (0..1); the draw is deterministic given Options.Seed and the order
// of requests.
type Faults struct {
	// Rate5xx is the fraction of API requests answered with 500.
	Rate5xx float64
	// Rate429 is the fraction of API requests answered with 429 and a
	// Retry-After header.
	Rate429 float64
	// RateLost is the fraction of API requests whose answer is lost: the
	// request is applied (a write takes effect, an idempotent one is stored
	// for replay) and then the connection is dropped without an answer, as
	// when the network fails after Stripe did the work.
	RateLost float64
	// RetryAfter is the Retry-After advertised on 429s, rounded up to whole
	// seconds; zero means one second.
	RetryAfter time.Duration
	// Latency is added to every API request before it is answered.
	Latency time.Duration
}

// Emulator is the fake Stripe. It is safe for concurrent use; all state sits
// behind one mutex.
type Emulator struct {
	clock clock.Clock
	log   *slog.Logger
	mux   *http.ServeMux
	hooks *webhookSender

	mu       sync.Mutex
	baseURL  string
	seq      uint64
	idRNG    *rand.Rand
	faultRNG *rand.Rand
	dropRNG  *rand.Rand

	webhookURL    string
	webhookSecret string
	dropRate      float64

	faults     Faults
	failNext   int
	failStatus int
	failPath   pathFault

	requests []Request

	idem      map[string]*idemEntry
	idemOrder []*idemEntry
	inflight  map[string]bool
	zbuf      bytes.Buffer
	zw        *flate.Writer

	products  store[*product]
	prices    store[*price]
	coupons   map[string]*coupon
	promos    store[*promotionCode]
	customers store[*customer]
	sessions  store[*session]
	intents   store[*paymentIntent]
	charges   store[*charge]
	refunds   store[*refund]
	disputes  store[*dispute]
	events    store[*event]

	lookupKeys       map[string]*price
	sessionByIntent  map[string]*session
	chargesByIntent  map[string][]*charge
	refundsByCharge  map[string][]*refund
	disputesByCharge map[string][]*dispute
	expiry           expiryHeap
	bill             *billing  // subscriptions, invoices, portal sessions and their clock
	pay              *payments // API payment intents' timers, Stripe Tax settings and objects
}

// idemEntry is a stored response to an idempotent POST.
type idemEntry struct {
	key       string
	method    string
	path      string
	params    string
	status    int
	requestID string
	body      []byte // flate-compressed
	storedAt  time.Time
}

// New returns an Emulator configured by opts.
func New(opts Options) *Emulator {
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	httpClient := opts.HTTPClient
	if httpClient == nil {
		// As many idle connections as deliveries in flight, so each
		// delivery reuses one (Go's default keeps 2 per host).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(opts.WebhookConcurrency, 2)
		httpClient = &http.Client{Timeout: 10 * time.Second, Transport: t}
	}
	seed := uint64(opts.Seed)
	vclk := &virtualClock{base: clk} // object times; webhooks are signed on clk
	e := &Emulator{
		clock:            vclk,
		bill:             newBilling(vclk),
		pay:              newPayments(),
		log:              logger,
		baseURL:          strings.TrimRight(opts.BaseURL, "/"),
		idRNG:            rand.New(rand.NewPCG(seed, 0x1d5)),
		faultRNG:         rand.New(rand.NewPCG(seed, 0xfa17)),
		dropRNG:          rand.New(rand.NewPCG(seed, 0xd409)),
		webhookURL:       opts.WebhookURL,
		webhookSecret:    opts.WebhookSecret,
		dropRate:         opts.DropRate,
		idem:             map[string]*idemEntry{},
		inflight:         map[string]bool{},
		products:         newStore[*product]("product"),
		prices:           newStore[*price]("price"),
		coupons:          map[string]*coupon{},
		promos:           newStore[*promotionCode]("promotion_code"),
		customers:        newStore[*customer]("customer"),
		sessions:         newStore[*session]("checkout.session"),
		intents:          newStore[*paymentIntent]("payment_intent"),
		charges:          newStore[*charge]("charge"),
		refunds:          newStore[*refund]("refund"),
		disputes:         newStore[*dispute]("dispute"),
		events:           newStore[*event]("event"),
		lookupKeys:       map[string]*price{},
		sessionByIntent:  map[string]*session{},
		chargesByIntent:  map[string][]*charge{},
		refundsByCharge:  map[string][]*refund{},
		disputesByCharge: map[string][]*dispute{},
	}
	e.zw, _ = flate.NewWriter(&e.zbuf, flate.BestSpeed) // error only for a bad level
	e.hooks = newWebhookSender(clk, httpClient, logger, opts.WebhookConcurrency)
	e.mux = e.routes()
	return e
}

// SetBaseURL sets the public URL used in hosted checkout links, typically
// the httptest server's URL once it is known.
func (e *Emulator) SetBaseURL(u string) {
	e.mu.Lock()
	e.baseURL = strings.TrimRight(u, "/")
	e.mu.Unlock()
}

// SetWebhook changes where events recorded from now on are delivered, the
// signing secret and the drop rate. An empty url disables delivery.
func (e *Emulator) SetWebhook(url, secret string, dropRate float64) {
	e.mu.Lock()
	e.webhookURL, e.webhookSecret, e.dropRate = url, secret, dropRate
	e.mu.Unlock()
}

// SetFaults replaces the random fault configuration for API requests.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	e.faults = f
	e.mu.Unlock()
}

// FailNext makes the next n API requests fail with the given HTTP status
// (429s carry Retry-After), before any other processing.
func (e *Emulator) FailNext(n int, status int) {
	e.mu.Lock()
	e.failNext, e.failStatus = n, status
	e.mu.Unlock()
}

// pathFault fails requests to one path (see FailPath).
type pathFault struct {
	path            string
	skip, n, status int
}

// FailPath makes requests to path fail with status: the next skip of them
// are answered as usual, the n after those fail. It replaces an earlier
// FailPath.
func (e *Emulator) FailPath(path string, skip, n, status int) {
	e.mu.Lock()
	e.failPath = pathFault{path: path, skip: skip, n: n, status: status}
	e.mu.Unlock()
}

// Requests returns a copy of the API request log, oldest first.
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Request, len(e.requests))
	for i, r := range e.requests {
		r.Form = cloneValues(r.Form)
		out[i] = r
	}
	return out
}

// WriteRequests returns the logged API requests that were not GETs.
func (e *Emulator) WriteRequests() []Request {
	var out []Request
	for _, r := range e.Requests() {
		if r.Method != http.MethodGet {
			out = append(out, r)
		}
	}
	return out
}

// ResetRequests empties the API request log.
func (e *Emulator) ResetRequests() {
	e.mu.Lock()
	e.requests = nil
	e.mu.Unlock()
}

// Tick applies the time-based transitions due at the clock's current time:
// open Checkout Sessions past expires_at expire. Every incoming HTTP request
// calls it first, so tests only need it when nothing else touches the
// emulator after moving the clock.
func (e *Emulator) Tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
}

// ServeHTTP serves the Stripe API under /v1/ and the hosted checkout page
// under /checkout/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.Tick()
	e.mux.ServeHTTP(w, r)
}

// apiError is a Stripe error response. A payment that failed also names
// the charge and decline code, and carries the payment intent as it now is.
type apiError struct {
	status        int
	Type          string `json:"type"`
	Charge        string `json:"charge,omitempty"`
	Code          string `json:"code,omitempty"`
	DeclineCode   string `json:"decline_code,omitempty"`
	DocURL        string `json:"doc_url,omitempty"`
	Msg           string `json:"message"`
	Param         string `json:"param,omitempty"`
	PaymentIntent any    `json:"payment_intent,omitempty"`
	PaymentMethod any    `json:"payment_method,omitempty"`
}

// Error describes the Stripe error.
func (a *apiError) Error() string {
	return fmt.Sprintf("stripe %d %s: %s", a.status, a.Type, a.Msg)
}

// invalid is a 400 invalid_request_error.
func invalid(param, code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, Type: "invalid_request_error", Code: code, Param: param, Msg: fmt.Sprintf(format, args...)}
}

// missing is a 404 resource_missing error for an unknown id in the path.
func missing(kind, id string) *apiError {
	return &apiError{status: http.StatusNotFound, Type: "invalid_request_error", Code: "resource_missing", Param: "id", Msg: fmt.Sprintf("No such %s: '%s'", kind, id)}
}

// call is one API request being handled.
type call struct {
	r         *http.Request
	form      url.Values
	idemKey   string
	requestID string
	expand    expander
}

// eventRequest returns the request stamp for events this call causes.
func (c *call) eventRequest() eventRequestJSON {
	id := c.requestID
	er := eventRequestJSON{ID: &id}
	if c.idemKey != "" {
		k := c.idemKey
		er.IdempotencyKey = &k
	}
	return er
}

// apiFunc handles an API call with e.mu held and returns the response object.
type apiFunc func(c *call) (any, error)

// api wraps an endpoint with the common pipeline: authentication, request
// log, fault injection, latency, idempotency and JSON encoding.
func (e *Emulator) api(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			writeError(w, "", invalid("", "", "Invalid request body: %v", err))
			return
		}
		c := &call{r: r, form: r.Form, idemKey: strings.TrimSpace(r.Header.Get("Idempotency-Key"))}
		c.expand = parseExpand(r.Form)

		e.mu.Lock()
		c.requestID = e.newIDLocked("req_")
		e.requests = append(e.requests, Request{Method: r.Method, Path: r.URL.Path, Form: cloneValues(r.Form), IdempotencyKey: c.idemKey, At: e.clock.Now()})
		authed := authorized(r) || publishableRetrieve(r)
		var d draw
		if authed {
			d = e.drawFaultLocked(r.URL.Path)
			e.requests[len(e.requests)-1].Lost = d.lost
		}
		fault, latency := d.fault, d.latency
		e.mu.Unlock()

		if !authed {
			writeError(w, c.requestID, &apiError{status: http.StatusUnauthorized, Type: "invalid_request_error",
				Msg: "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."})
			return
		}
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if fault != nil {
			if fault.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(fault.retryAfter))
			}
			writeError(w, c.requestID, fault.err)
			return
		}

		idempotent := r.Method == http.MethodPost && c.idemKey != ""
		params := r.Form.Encode()
		if idempotent {
			e.mu.Lock()
			replay, aerr := e.idemLookupLocked(c.idemKey, r.Method, r.URL.Path, params)
			if aerr == nil && replay == nil {
				e.inflight[c.idemKey] = true
			}
			e.mu.Unlock()
			if aerr != nil {
				d.dropIfLost()
				writeError(w, c.requestID, aerr)
				return
			}
			if replay != nil {
				d.dropIfLost()
				w.Header().Set("Idempotent-Replayed", "true")
				writeRaw(w, replay.requestID, replay.status, replay.inflate())
				return
			}
		}

		e.mu.Lock()
		status, body := http.StatusOK, []byte(nil)
		res, err := fn(c)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = &apiError{status: http.StatusInternalServerError, Type: "api_error", Msg: err.Error()}
			}
			status, body = ae.status, mustJSON(map[string]any{"error": ae})
		} else {
			body = mustJSON(res)
		}
		if idempotent {
			delete(e.inflight, c.idemKey)
			// A declined card is a result, replayed like a success; a
			// refused request is not (Stripe saves no result for it).
			if status < 300 || status == http.StatusPaymentRequired {
				e.idemStoreLocked(&idemEntry{key: c.idemKey, method: r.Method, path: r.URL.Path, params: params, status: status, requestID: c.requestID}, body)
			}
		}
		e.mu.Unlock()
		d.dropIfLost()
		writeRaw(w, c.requestID, status, body)
	})
}

// authorized reports whether the request carries a secret or restricted key,
// as a Bearer token or as the Basic-auth user name.
func authorized(r *http.Request) bool {
	key := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		key = strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	} else if u, _, ok := r.BasicAuth(); ok {
		key = u
	}
	return strings.HasPrefix(key, "sk_") || strings.HasPrefix(key, "rk_")
}

// injected is a fault chosen for one request.
type injected struct {
	err        *apiError
	retryAfter int
}

// draw is what befalls one request: an injected error instead of an
// answer, or a lost answer after the request is applied, and a latency.
type draw struct {
	fault   *injected
	lost    bool
	latency time.Duration
}

// dropIfLost, for a request whose answer is lost, ends the handler without
// answering: the server drops the connection (HTTP/1) or resets the stream
// (HTTP/2), and logs nothing.
func (d draw) dropIfLost() {
	if d.lost {
		panic(http.ErrAbortHandler)
	}
}

// drawFaultLocked decides whether this request fails and how long it waits.
// One number is drawn per request whatever the rates, in the order 429,
// 5xx, lost, so adding a lost rate leaves the other faults of a seed where
// they were.
func (e *Emulator) drawFaultLocked(path string) draw {
	retryAfter := int(math.Ceil(e.faults.RetryAfter.Seconds()))
	if retryAfter < 1 {
		retryAfter = 1
	}
	d := draw{latency: e.faults.Latency}
	if e.failNext > 0 {
		e.failNext--
		d.fault = faultFor(e.failStatus, retryAfter)
		return d
	}
	if f := &e.failPath; f.path == path && f.skip+f.n > 0 {
		if f.skip > 0 {
			f.skip--
		} else {
			f.n--
			d.fault = faultFor(f.status, retryAfter)
			return d
		}
	}
	if e.faults.Rate5xx > 0 || e.faults.Rate429 > 0 || e.faults.RateLost > 0 {
		x := e.faultRNG.Float64()
		switch {
		case x < e.faults.Rate429:
			d.fault = faultFor(http.StatusTooManyRequests, retryAfter)
		case x < e.faults.Rate429+e.faults.Rate5xx:
			d.fault = faultFor(http.StatusInternalServerError, retryAfter)
		case x < e.faults.Rate429+e.faults.Rate5xx+e.faults.RateLost:
			d.lost = true
		}
	}
	return d
}

// faultFor builds the Stripe-style error body for an injected status.
func faultFor(status, retryAfter int) *injected {
	switch {
	case status == http.StatusTooManyRequests:
		return &injected{retryAfter: retryAfter, err: &apiError{status: status, Type: "invalid_request_error", Code: "rate_limit",
			Msg: "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."}}
	case status >= 500:
		return &injected{err: &apiError{status: status, Type: "api_error", Msg: "An unknown error occurred (injected by stripeemu)."}}
	default:
		return &injected{err: &apiError{status: status, Type: "invalid_request_error", Msg: fmt.Sprintf("Injected failure with status %d.", status)}}
	}
}

// idemLookupLocked returns a stored response to replay, an error for a
// conflicting reuse of the key, or neither for a fresh key.
func (e *Emulator) idemLookupLocked(key, method, path, params string) (*idemEntry, *apiError) {
	e.pruneIdemLocked()
	if e.inflight[key] {
		return nil, &apiError{status: http.StatusConflict, Type: "idempotency_error", Code: "idempotency_key_in_use",
			Msg: "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): " + key + ". Please try again later."}
	}
	ent, ok := e.idem[key]
	if !ok {
		return nil, nil
	}
	if ent.method != method || ent.path != path || ent.params != params {
		return nil, &apiError{status: http.StatusBadRequest, Type: "idempotency_error",
			Msg: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key)}
	}
	return ent, nil
}

// idemStoreLocked keeps a successful response for replay, compressed because
// stripe-go sends a fresh key with every POST.
func (e *Emulator) idemStoreLocked(ent *idemEntry, body []byte) {
	e.zbuf.Reset()
	e.zw.Reset(&e.zbuf)
	_, _ = e.zw.Write(body) // writes to a bytes.Buffer cannot fail
	_ = e.zw.Close()
	ent.body = bytes.Clone(e.zbuf.Bytes())
	ent.storedAt = e.clock.Now()
	e.idem[ent.key] = ent
	e.idemOrder = append(e.idemOrder, ent)
}

// pruneIdemLocked forgets keys older than idempotencyTTL.
func (e *Emulator) pruneIdemLocked() {
	cutoff := e.clock.Now().Add(-idempotencyTTL)
	n := 0
	for n < len(e.idemOrder) && e.idemOrder[n].storedAt.Before(cutoff) {
		if e.idem[e.idemOrder[n].key] == e.idemOrder[n] {
			delete(e.idem, e.idemOrder[n].key)
		}
		n++
	}
	if n > 0 {
		e.idemOrder = append(e.idemOrder[:0:0], e.idemOrder[n:]...)
	}
}

// inflate returns the stored response body.
func (ent *idemEntry) inflate() []byte {
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(ent.body)))
	if err != nil {
		return mustJSON(map[string]any{"error": &apiError{Type: "api_error", Msg: "stripeemu: corrupt idempotency record"}})
	}
	return b
}

// mustJSON encodes v; the emulator only encodes its own plain structs, so a
// failure is a programming error.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Errorf("stripeemu: encode response: %w", err))
	}
	return b
}

// writeError writes a Stripe error envelope.
func writeError(w http.ResponseWriter, requestID string, ae *apiError) {
	writeRaw(w, requestID, ae.status, mustJSON(map[string]any{"error": ae}))
}

// writeRaw writes a JSON body with Stripe's response headers.
func writeRaw(w http.ResponseWriter, requestID string, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Stripe-Version", APIVersion)
	if requestID != "" {
		h.Set("Request-Id", requestID)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// cloneValues deep-copies form values.
func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// base62 is ordered so fixed-width encodings sort like the numbers.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newIDLocked returns a Stripe-looking id. A fixed-width sequence number
// comes first so ids of objects created in the same second sort by creation
// order; a seeded random tail makes them look like Stripe's.
func (e *Emulator) newIDLocked(prefix string) string {
	e.seq++
	var b [24]byte
	n := e.seq
	for i := 9; i >= 0; i-- {
		b[i] = base62[n%62]
		n /= 62
	}
	for i := 10; i < len(b); i++ {
		b[i] = base62[e.idRNG.IntN(62)]
	}
	return prefix + string(b[:])
}

// nowUnix is the clock's time in Unix seconds.
func (e *Emulator) nowUnix() int64 { return e.clock.Now().Unix() }
