package mail_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
)

const testAPIKey = "SG.test-key.very-secret-value"

// fakeSendGrid answers /v3/mail/send with a fixed status, headers and body,
// and records the last request.
type fakeSendGrid struct {
	mu      sync.Mutex
	status  int
	headers map[string]string
	body    string

	gotMethod, gotPath, gotAuth, gotType string
	gotBody                              []byte
}

func (f *fakeSendGrid) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gotMethod, f.gotPath = r.Method, r.URL.Path
	f.gotAuth, f.gotType = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
	f.gotBody, _ = io.ReadAll(r.Body)
	for k, v := range f.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

func newFakeSendGrid(t *testing.T, status int, headers map[string]string, body string) (*fakeSendGrid, *mail.SendGrid) {
	t.Helper()
	f := &fakeSendGrid{status: status, headers: headers, body: body}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, mail.NewSendGrid(testAPIKey, srv.URL, 42, srv.Client())
}

func render(t *testing.T, name string) mail.Message {
	t.Helper()
	m, err := newRenderer(t).Render(name, mail.SampleData(name, "usd"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sgBody is the part of the mail send body the tests look at.
type sgBody struct {
	From struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"from"`
	ReplyTo *struct {
		Email string `json:"email"`
	} `json:"reply_to"`
	Subject          string `json:"subject"`
	Personalizations []struct {
		To []struct {
			Email string `json:"email"`
		} `json:"to"`
	} `json:"personalizations"`
	Content []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	Headers    map[string]string `json:"headers"`
	Categories []string          `json:"categories"`
	CustomArgs map[string]string `json:"custom_args"`
	Asm        *struct {
		GroupID int `json:"group_id"`
	} `json:"asm"`
}

func TestSendGridRequest(t *testing.T) {
	f, sg := newFakeSendGrid(t, http.StatusAccepted, nil, "")
	m := render(t, mail.FollowupFeedback)
	if err := sg.Send(context.Background(), m, "purchase-1/followup_feedback"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if f.gotMethod != http.MethodPost || f.gotPath != "/v3/mail/send" {
		t.Errorf("request %s %s", f.gotMethod, f.gotPath)
	}
	if f.gotAuth != "Bearer "+testAPIKey || f.gotType != "application/json" {
		t.Errorf("Authorization %q, Content-Type %q", f.gotAuth, f.gotType)
	}
	var b sgBody
	if err := json.Unmarshal(f.gotBody, &b); err != nil {
		t.Fatalf("decode body: %v\n%s", err, f.gotBody)
	}
	if b.From.Email != "hello@acme.test" || b.From.Name != "Sam at Acme" {
		t.Errorf("from = %+v", b.From)
	}
	if b.ReplyTo == nil || b.ReplyTo.Email != "support@acme.test" {
		t.Errorf("reply_to = %+v", b.ReplyTo)
	}
	if b.Subject != m.Subject {
		t.Errorf("subject = %q", b.Subject)
	}
	if len(b.Personalizations) != 1 || len(b.Personalizations[0].To) != 1 || b.Personalizations[0].To[0].Email != "ada@example.com" {
		t.Errorf("personalizations = %+v", b.Personalizations)
	}
	if len(b.Content) != 2 || b.Content[0].Type != "text/plain" || b.Content[0].Value != m.Text ||
		b.Content[1].Type != "text/html" || b.Content[1].Value != m.HTML {
		t.Errorf("content types/values wrong: %d parts", len(b.Content))
	}
	if b.Headers["List-Unsubscribe"] != m.Headers["List-Unsubscribe"] || b.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Errorf("headers = %v", b.Headers)
	}
	if len(b.Categories) != 1 || b.Categories[0] != mail.FollowupFeedback {
		t.Errorf("categories = %v", b.Categories)
	}
	if b.CustomArgs[mail.IdempotencyArg] != "purchase-1/followup_feedback" {
		t.Errorf("custom_args = %v", b.CustomArgs)
	}
	if b.Asm == nil || b.Asm.GroupID != 42 {
		t.Errorf("asm = %+v, want group 42 on marketing mail", b.Asm)
	}
}

func TestSendGridTransactionalHasNoASM(t *testing.T) {
	f, sg := newFakeSendGrid(t, http.StatusAccepted, nil, "")
	if err := sg.Send(context.Background(), render(t, mail.PurchaseConfirmation), "k"); err != nil {
		t.Fatal(err)
	}
	var b sgBody
	if err := json.Unmarshal(f.gotBody, &b); err != nil {
		t.Fatal(err)
	}
	if b.Asm != nil || len(b.Headers) != 0 {
		t.Errorf("transactional mail carries asm %+v or headers %v", b.Asm, b.Headers)
	}
}

func TestSendGridMarketingWithoutGroup(t *testing.T) {
	f := &fakeSendGrid{status: http.StatusAccepted}
	srv := httptest.NewServer(f)
	defer srv.Close()
	sg := mail.NewSendGrid(testAPIKey, srv.URL+"/", 0, nil)
	if err := sg.Send(context.Background(), render(t, mail.AbandonedCheckout), "k"); err != nil {
		t.Fatal(err)
	}
	if f.gotPath != "/v3/mail/send" {
		t.Errorf("path = %q with a trailing-slash base URL", f.gotPath)
	}
	if strings.Contains(string(f.gotBody), `"asm"`) {
		t.Error("asm set although the group ID is 0")
	}
}

const sgErrorBody = `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}`

func TestSendGridStatusClassification(t *testing.T) {
	echo := `{"errors":[{"message":"bad key ` + testAPIKey + `","field":null}]}`
	tests := []struct {
		name      string
		status    int
		headers   map[string]string
		body      string
		permanent bool
		delay     time.Duration // -1: no RetryAfter
		contains  string
	}{
		{"429 Retry-After", 429, map[string]string{"Retry-After": "7"}, `{"errors":[{"message":"too many requests"}]}`, false, 7 * time.Second, "too many requests"},
		{"429 no header", 429, nil, "", false, -1, "status 429"},
		{"503 Retry-After", 503, map[string]string{"Retry-After": "120"}, "upstream unavailable", false, 120 * time.Second, "upstream unavailable"},
		{"500", 500, nil, "<html>oops</html>", false, -1, "status 500"},
		{"502 bad Retry-After", 502, map[string]string{"Retry-After": "soon"}, "", false, -1, "status 502"},
		{"400", 400, nil, sgErrorBody, true, -1, "from: The from address does not match a verified Sender Identity."},
		{"401 echoing the key", 401, nil, echo, true, -1, "status 401"},
		{"403", 403, nil, `{"errors":[{"message":"access forbidden"}]}`, true, -1, "access forbidden"},
		{"404", 404, nil, "", true, -1, "status 404"},
		{"413", 413, nil, "", true, -1, "status 413"},
		{"409", 409, nil, "", false, -1, "status 409"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sg := newFakeSendGrid(t, tt.status, tt.headers, tt.body)
			err := sg.Send(context.Background(), render(t, mail.PurchaseConfirmation), "k")
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := steps.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", got, tt.permanent, err)
			}
			d, ok := steps.RetryDelay(err)
			if tt.delay < 0 && ok {
				t.Errorf("unexpected RetryAfter %s", d)
			}
			if tt.delay >= 0 && (!ok || d != tt.delay) {
				t.Errorf("RetryDelay = %s, %v, want %s", d, ok, tt.delay)
			}
			var apiErr *mail.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status {
				t.Errorf("error %v does not carry status %d", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q lacks %q", err, tt.contains)
			}
			if strings.Contains(err.Error(), testAPIKey) || strings.Contains(err.Error(), "very-secret") {
				t.Errorf("error leaks the API key: %q", err)
			}
		})
	}
}

func TestSendGridRetryAfterDate(t *testing.T) {
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	_, sg := newFakeSendGrid(t, 503, map[string]string{"Retry-After": at}, "")
	err := sg.Send(context.Background(), render(t, mail.PurchaseConfirmation), "k")
	d, ok := steps.RetryDelay(err)
	if !ok || d < 80*time.Second || d > 90*time.Second {
		t.Errorf("RetryDelay = %s, %v, want about 90s", d, ok)
	}
}

func TestSendGridRateLimitReset(t *testing.T) {
	reset := time.Now().Add(30 * time.Second).Unix()
	_, sg := newFakeSendGrid(t, 429, map[string]string{"X-RateLimit-Reset": strconv.FormatInt(reset, 10)}, "")
	err := sg.Send(context.Background(), render(t, mail.PurchaseConfirmation), "k")
	d, ok := steps.RetryDelay(err)
	if !ok || d < 20*time.Second || d > 31*time.Second {
		t.Errorf("RetryDelay = %s, %v, want about 30s", d, ok)
	}
}

func TestSendGridTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	sg := mail.NewSendGrid(testAPIKey, url, 0, nil)
	err := sg.Send(context.Background(), render(t, mail.PurchaseConfirmation), "k")
	if err == nil || steps.IsPermanent(err) {
		t.Fatalf("err = %v, want a plain retryable error", err)
	}
	if _, ok := steps.RetryDelay(err); ok {
		t.Error("transport error asks for a specific delay")
	}
	if strings.Contains(err.Error(), testAPIKey) {
		t.Errorf("error leaks the API key: %q", err)
	}
}

func TestSendGridBadMessageIsPermanent(t *testing.T) {
	_, sg := newFakeSendGrid(t, http.StatusAccepted, nil, "")
	m := render(t, mail.PurchaseConfirmation)
	m.To = "not an address"
	if err := sg.Send(context.Background(), m, "k"); !steps.IsPermanent(err) {
		t.Errorf("err = %v, want permanent", err)
	}
}
