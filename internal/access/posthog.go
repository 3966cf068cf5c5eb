// PostHog analytics: purchase events are captured through PostHog's public
// capture endpoint. Capturing is best-effort for the callers; this client
// only reports whether it worked.

package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

const (
	// defaultPostHogHost is PostHog Cloud's US ingestion host.
	defaultPostHogHost = "https://us.i.posthog.com"
	// defaultPostHogTimeout bounds a capture when the caller gives no
	// HTTP client.
	defaultPostHogTimeout = 10 * time.Second
	// eventUUIDNamespace is the UUID namespace EventUUID derives from.
	eventUUIDNamespace = "6f1c9a7e-2b4d-5e8f-9a0b-3c4d5e6f7a8b"
)

// PostHogOptions configures a PostHog client.
type PostHogOptions struct {
	// APIKey is the project API key (phc_...). Required.
	APIKey string
	// Host is the PostHog ingestion host; empty means
	// https://us.i.posthog.com.
	Host string
	// HTTPClient sends the requests; nil means a client with a 10 second
	// timeout.
	HTTPClient *http.Client
	// Clock stamps the events; nil means time.Now.
	Clock func() time.Time
}

// PostHog captures analytics events. It is safe for concurrent use.
type PostHog struct {
	apiKey   string
	endpoint string
	client   *http.Client
	now      func() time.Time
}

// captureBody is the JSON body of POST /capture/.
type captureBody struct {
	APIKey     string         `json:"api_key"`
	Event      string         `json:"event"`
	DistinctID string         `json:"distinct_id"`
	Properties map[string]any `json:"properties"`
	Timestamp  string         `json:"timestamp"`
	UUID       string         `json:"uuid,omitempty"`
}

// NewPostHog returns a PostHog client configured by opts.
func NewPostHog(opts PostHogOptions) (*PostHog, error) {
	if opts.APIKey == "" {
		return nil, errors.New("access: posthog: API key is required")
	}
	host := opts.Host
	if host == "" {
		host = defaultPostHogHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("access: posthog: host: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("access: posthog: host %q is not an absolute http(s) URL", host)
	}
	p := &PostHog{
		apiKey:   opts.APIKey,
		endpoint: strings.TrimRight(host, "/") + "/capture/",
		client:   opts.HTTPClient,
		now:      opts.Clock,
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: defaultPostHogTimeout}
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// Capture sends one event for distinctID with props. PostHog deduplicates
// events by uuid: pass a UUID, or any other stable string such as the step's
// idempotency key, which is turned into a UUID with EventUUID; empty sends
// none. Any non-2xx answer or transport error is returned.
func (p *PostHog) Capture(ctx context.Context, distinctID, event string, props map[string]any, uuidStr string) error {
	what := fmt.Sprintf("access: posthog: capture %s", event)
	if distinctID == "" || event == "" {
		return fmt.Errorf("%s: distinct id and event are required", what)
	}
	if props == nil {
		props = map[string]any{}
	}
	if uuidStr != "" {
		if _, err := uuid.Parse(uuidStr); err != nil {
			uuidStr = EventUUID(uuidStr)
		}
	}
	body, err := json.Marshal(captureBody{
		APIKey:     p.apiKey,
		Event:      event,
		DistinctID: distinctID,
		Properties: props,
		Timestamp:  p.now().UTC().Format(time.RFC3339Nano),
		UUID:       uuidStr,
	})
	if err != nil {
		return fmt.Errorf("%s: encode: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paymentd")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: PostHog answered %s: %q", what, resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}

// EventUUID derives a stable name-based (version 5) UUID from key, so a
// retried capture carries the same uuid and PostHog keeps one event.
func EventUUID(key string) string {
	return uuid.NewSHA1(uuid.MustParse(eventUUIDNamespace), []byte(key)).String()
}
