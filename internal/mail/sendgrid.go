// SendGrid: the production Sender, a POST to /v3/mail/send through the
// sendgrid-go SDK. The SDK returns a response for any HTTP status and an
// error only when the request could not be made, so the status is
// classified here into the steps package's outcomes.
package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/paymentd/paymentd/steps"
)

// sendPath is SendGrid's mail send endpoint.
const sendPath = "/v3/mail/send"

// IdempotencyArg is the custom_args key carrying the idempotency key, so a
// SendGrid event can be traced back to the step that sent it.
const IdempotencyArg = "idempotency_key"

// SendGrid sends mail through the SendGrid v3 API. It is safe for
// concurrent use.
type SendGrid struct {
	apiKey  string
	baseURL string
	groupID int
	client  *rest.Client
	now     func() time.Time
}

// NewSendGrid returns a SendGrid sender. baseURL is the API host (empty
// means https://api.sendgrid.com); unsubscribeGroupID, when positive, is the
// ASM group attached to marketing mail; httpClient nil means a client with a
// 30-second timeout.
func NewSendGrid(apiKey, baseURL string, unsubscribeGroupID int, httpClient *http.Client) *SendGrid {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &SendGrid{
		apiKey:  apiKey,
		baseURL: strings.TrimRight(baseURL, "/"),
		groupID: unsubscribeGroupID,
		client:  &rest.Client{HTTPClient: httpClient},
		now:     time.Now,
	}
}

// APIError is a non-2xx answer from SendGrid.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is SendGrid's error text, API key redacted.
	Message string
}

// Error returns the status and SendGrid's message.
func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("sendgrid: status %d", e.StatusCode)
	}
	return fmt.Sprintf("sendgrid: status %d: %s", e.StatusCode, e.Message)
}

// Send posts m to SendGrid. 2xx is success. 429 and 5xx are
// steps.RetryAfter when SendGrid says when to come back (Retry-After in
// seconds or as an HTTP date, or for 429 X-RateLimit-Reset), else a plain
// error. 400, 401, 403, 404 and 413 are steps.Permanent, as is a message
// that cannot be encoded. Transport failures are plain errors. No error
// contains the API key.
func (s *SendGrid) Send(ctx context.Context, m Message, idempotencyKey string) error {
	body, err := s.body(m, idempotencyKey)
	if err != nil {
		return steps.Permanent(fmt.Errorf("build sendgrid request: %w", err))
	}
	req := sendgrid.GetRequest(s.apiKey, sendPath, s.baseURL)
	req.Method = rest.Post
	req.Body = body

	resp, err := s.client.SendWithContext(ctx, req)
	if resp != nil && resp.StatusCode/100 == 2 {
		return nil // accepted, even if reading the (empty) body failed
	}
	if err != nil {
		return fmt.Errorf("send via sendgrid: %s", s.redact(err.Error()))
	}
	return s.classify(resp)
}

// body builds the JSON request body with the helpers/mail types.
func (s *SendGrid) body(m Message, idempotencyKey string) ([]byte, error) {
	from, err := netmail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("parse from %q: %w", m.From, err)
	}
	to, err := netmail.ParseAddress(m.To)
	if err != nil {
		return nil, fmt.Errorf("parse to %q: %w", m.To, err)
	}
	if m.Text == "" && m.HTML == "" {
		return nil, errors.New("message has no content")
	}

	v3 := sgmail.NewV3Mail()
	v3.SetFrom(sgmail.NewEmail(from.Name, from.Address))
	v3.Subject = m.Subject
	p := sgmail.NewPersonalization()
	p.AddTos(sgmail.NewEmail(to.Name, to.Address))
	v3.AddPersonalizations(p)
	if m.ReplyTo != "" {
		rt, err := netmail.ParseAddress(m.ReplyTo)
		if err != nil {
			return nil, fmt.Errorf("parse reply-to %q: %w", m.ReplyTo, err)
		}
		v3.SetReplyTo(sgmail.NewEmail(rt.Name, rt.Address))
	}
	// SendGrid requires text/plain before text/html.
	if m.Text != "" {
		v3.AddContent(sgmail.NewContent("text/plain", m.Text))
	}
	if m.HTML != "" {
		v3.AddContent(sgmail.NewContent("text/html", m.HTML))
	}
	for k, v := range m.Headers {
		v3.SetHeader(k, v)
	}
	if m.Category != "" {
		v3.AddCategories(m.Category)
	}
	if idempotencyKey != "" {
		v3.SetCustomArg(IdempotencyArg, idempotencyKey)
	}
	if m.Marketing && s.groupID > 0 {
		v3.SetASM(sgmail.NewASM().SetGroupID(s.groupID))
	}
	b, err := json.Marshal(v3)
	if err != nil {
		return nil, fmt.Errorf("encode mail: %w", err)
	}
	return b, nil
}

// classify turns a non-2xx response into the step outcome.
func (s *SendGrid) classify(resp *rest.Response) error {
	apiErr := &APIError{StatusCode: resp.StatusCode, Message: s.redact(errorMessage(resp.Body))}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests || code >= 500:
		if d, ok := s.retryAfter(http.Header(resp.Headers), code == http.StatusTooManyRequests); ok {
			return steps.RetryAfter(d, apiErr)
		}
		return apiErr
	case code == http.StatusBadRequest, code == http.StatusUnauthorized, code == http.StatusForbidden,
		code == http.StatusNotFound, code == http.StatusRequestEntityTooLarge:
		return steps.Permanent(apiErr)
	default:
		return apiErr
	}
}

// retryAfter reads Retry-After (delay-seconds or HTTP-date) and, when
// rateLimited, falls back to X-RateLimit-Reset (Unix seconds).
func (s *SendGrid) retryAfter(h http.Header, rateLimited bool) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(s.now()), 0), true
		}
	}
	if rateLimited {
		if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
			if unix, err := strconv.ParseInt(v, 10, 64); err == nil {
				return max(time.Unix(unix, 0).Sub(s.now()), 0), true
			}
		}
	}
	return 0, false
}

// errorMessage extracts SendGrid's messages from an error body
// ({"errors":[{"message":...,"field":...}]}), or returns the body trimmed
// to a sensible length.
func errorMessage(body string) string {
	var parsed struct {
		Errors []struct {
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &parsed) == nil && len(parsed.Errors) > 0 {
		msgs := make([]string, 0, len(parsed.Errors))
		for _, e := range parsed.Errors {
			msg := e.Message
			if e.Field != nil && *e.Field != "" {
				msg = *e.Field + ": " + msg
			}
			msgs = append(msgs, msg)
		}
		return strings.Join(msgs, "; ")
	}
	body = strings.Join(strings.Fields(body), " ")
	if r := []rune(body); len(r) > 300 {
		body = string(r[:300]) + "…"
	}
	return body
}

// redact removes the API key from msg. Keys too short to be real are left
// alone rather than blanking ordinary words.
func (s *SendGrid) redact(msg string) string {
	if len(s.apiKey) < 8 {
		return msg
	}
	return strings.ReplaceAll(msg, s.apiKey, "[redacted]")
}
