// Package sendgridfake is a recording, in-memory fake of SendGrid's v3
// mail/send endpoint, as paymentd calls it: every message names its
// recipient, its template as its first category, and its idempotency key as
// a custom argument. It accepts each well-formed message at once (202) and
// remembers how often each key was sent, how often each recipient got each
// template, and when they first got it. It is an http.Handler, so tests and
// benchmarks serve it with httptest and point the real sendgrid-go client at
// it. A Fake is safe for concurrent use.
package sendgridfake

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Fake is the SendGrid fake.
type Fake struct {
	mu    sync.Mutex
	sends map[string]int    // idempotency key -> sends
	got   map[key]int       // recipient and template -> sends
	first map[key]time.Time // recipient and template -> first send
}

type key struct{ to, template string }

// New returns an empty Fake.
func New() *Fake {
	return &Fake{sends: map[string]int{}, got: map[key]int{}, first: map[key]time.Time{}}
}

// ServeHTTP accepts a message, or answers 400 to one without a recipient,
// a category or an idempotency key.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var body struct {
		Personalizations []struct {
			To []struct {
				Email string `json:"email"`
			} `json:"to"`
		} `json:"personalizations"`
		Categories []string          `json:"categories"`
		CustomArgs map[string]string `json:"custom_args"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Personalizations) == 0 ||
		len(body.Personalizations[0].To) == 0 || len(body.Categories) == 0 || body.CustomArgs["idempotency_key"] == "" {
		http.Error(w, "bad mail", http.StatusBadRequest)
		return
	}
	k := key{body.Personalizations[0].To[0].Email, body.Categories[0]}
	f.mu.Lock()
	f.sends[body.CustomArgs["idempotency_key"]]++
	f.got[k]++
	if _, ok := f.first[k]; !ok {
		f.first[k] = at
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// Count is how many times to got template.
func (f *Fake) Count(to, template string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[key{to, template}]
}

// First is when to first got template; zero when never.
func (f *Fake) First(to, template string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first[key{to, template}]
}

// Duplicates is how many sends repeated an idempotency key already sent.
func (f *Fake) Duplicates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.sends {
		n += c - 1
	}
	return n
}
