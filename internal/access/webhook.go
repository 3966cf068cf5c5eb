// Signed outbound webhooks: purchase lifecycle events are POSTed to the
// product's backend, signed as the Standard Webhooks specification
// (https://www.standardwebhooks.com) describes, so the receiver can verify
// them with any Standard Webhooks library and deduplicate retries by
// message id.

package access

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paymentd/paymentd/steps"
)

// Standard Webhooks request headers.
const (
	// HeaderWebhookID carries the message id, stable across retries.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp carries the attempt's unix time in seconds.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature carries "v1,<base64 HMAC-SHA256>".
	HeaderWebhookSignature = "webhook-signature"
)

const (
	// webhookSecretPrefix starts a Standard Webhooks secret.
	webhookSecretPrefix = "whsec_"
	// defaultWebhookTimeout bounds one delivery attempt.
	defaultWebhookTimeout = 10 * time.Second
	// maxErrorBody is how much of a failed response body goes into the error.
	maxErrorBody = 512
)

// WebhookOptions configures a Webhook.
type WebhookOptions struct {
	// URL receives the events. Required; http or https.
	URL string
	// Secret is the signing secret, "whsec_" followed by the base64 key
	// (the prefix may be omitted). Required.
	Secret string
	// HTTPClient sends the requests; nil means a new http.Client. Redirects
	// are never followed (a redirected POST would arrive as a bodiless GET),
	// so a 3xx answer is an error.
	HTTPClient *http.Client
	// Clock stamps the messages; nil means time.Now.
	Clock func() time.Time
	// Timeout bounds each delivery attempt; 0 means 10 seconds.
	Timeout time.Duration
}

// Webhook delivers signed events to one endpoint. It is safe for concurrent
// use.
type Webhook struct {
	url     string
	key     []byte
	client  *http.Client
	now     func() time.Time
	timeout time.Duration
}

// webhookBody is the JSON body of every delivery.
type webhookBody struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// NewWebhook returns a Webhook configured by opts.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("access: webhook: URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("access: webhook: URL %q is not an absolute http(s) URL", opts.URL)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(opts.Secret, webhookSecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("access: webhook: secret is not %s<base64>: %w", webhookSecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, errors.New("access: webhook: secret is required")
	}
	client := &http.Client{}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient // a shallow copy, to change only our redirect policy
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w := &Webhook{url: opts.URL, key: key, client: client, now: opts.Clock, timeout: opts.Timeout}
	if w.now == nil {
		w.now = time.Now
	}
	if w.timeout <= 0 {
		w.timeout = defaultWebhookTimeout
	}
	return w, nil
}

// Send POSTs {"type": event, "timestamp": <RFC 3339>, "data": payload},
// signed. msgID becomes the webhook-id header; pass the step's idempotency
// key so every retry carries the same id and the receiver can deduplicate.
// The timestamps are those of the attempt.
//
// A 2xx answer is success. 429 or 503 with a Retry-After header is
// steps.RetryAfter; any other answer or a transport error is a plain error,
// so the step retries. An empty event or msgID, or a payload that does not
// encode, is steps.Permanent.
func (w *Webhook) Send(ctx context.Context, event, msgID string, payload any) error {
	what := fmt.Sprintf("access: webhook: send %s %s", event, msgID)
	if event == "" || msgID == "" {
		return steps.Permanent(fmt.Errorf("%s: event and message id are required", what))
	}
	if strings.ContainsFunc(msgID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return steps.Permanent(fmt.Errorf("%s: message id contains control characters", what))
	}
	now := w.now()
	body, err := json.Marshal(webhookBody{
		Type:      event,
		Timestamp: now.UTC().Format(time.RFC3339),
		Data:      payload,
	})
	if err != nil {
		return steps.Permanent(fmt.Errorf("%s: encode payload: %w", what, err))
	}

	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return steps.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paymentd")
	req.Header.Set(HeaderWebhookID, msgID)
	req.Header.Set(HeaderWebhookTimestamp, ts)
	req.Header.Set(HeaderWebhookSignature, "v1,"+sign(w.key, msgID, ts, body))

	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused

	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	err = fmt.Errorf("%s: receiver answered %s: %q", what, resp.Status, bytes.TrimSpace(snippet))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), w.now()); ok {
			return steps.RetryAfter(d, err)
		}
	}
	return err
}

// sign returns the base64 HMAC-SHA256 of "msgID.timestamp.body" under key,
// the Standard Webhooks v1 signature.
func sign(key []byte, msgID, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
