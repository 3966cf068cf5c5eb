// Events and webhook delivery. Every state change records an event; when a
// webhook URL is configured the event is queued and POSTed, signed the way
// Stripe signs (Stripe-Signature: t=...,v1=...): by one goroutine, in order,
// or as Stripe does, by several at once (Options.WebhookConcurrency), so that
// events arrive in no guaranteed order.
// Failed deliveries are logged and not retried: the daemon's reconciler is
// the safety net, exactly as with a lost webhook in production.

package stripeemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/stripe/stripe-go/v76/webhook"
)

// recordLocked stores an event of type typ whose data.object is a snapshot
// of obj (already rendered), and queues its webhook.
func (e *Emulator) recordLocked(typ string, obj any, req eventRequestJSON, prev map[string]any) {
	ev := &event{eventJSON: eventJSON{
		ID: e.newIDLocked("evt_"), Object: "event", APIVersion: APIVersion, Created: e.nowUnix(),
		Data: eventDataJSON{Object: mustJSON(obj), PreviousAttributes: prev}, Request: req, Type: typ,
	}}
	deliver := e.webhookURL != "" && !(e.dropRate > 0 && e.dropRNG.Float64() < e.dropRate)
	if e.webhookURL != "" {
		ev.PendingWebhooks = 1
	}
	ev.raw = mustJSON(ev.eventJSON)
	e.events.add(ev)
	if deliver {
		e.hooks.enqueue(delivery{url: e.webhookURL, secret: e.webhookSecret, eventID: ev.ID, payload: ev.raw})
	}
}

// Flush waits until every queued webhook has been delivered (or has failed),
// or ctx is done.
func (e *Emulator) Flush(ctx context.Context) error {
	return e.hooks.flush(ctx)
}

// Close stops webhook delivery, abandoning queued deliveries. The API keeps
// working; events recorded afterwards are not delivered.
func (e *Emulator) Close() error {
	e.hooks.close()
	return nil
}

// delivery is one queued webhook POST.
type delivery struct {
	url     string
	secret  string
	eventID string
	payload []byte
}

// webhookSender delivers webhooks from workers goroutines, started on the
// first delivery.
type webhookSender struct {
	workers int
	clock   clock.Clock
	client  *http.Client
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	queue   []delivery
	pending int           // queued plus in flight
	idle    chan struct{} // closed while pending == 0
	wake    chan struct{}
	started bool
	closed  bool
	done    chan struct{}
}

// newWebhookSender returns an idle sender.
func newWebhookSender(clk clock.Clock, client *http.Client, log *slog.Logger, workers int) *webhookSender {
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &webhookSender{workers: max(workers, 1), clock: clk, client: client, log: log, ctx: ctx, cancel: cancel,
		idle: idle, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// enqueue queues d behind earlier deliveries.
func (w *webhookSender) enqueue(d delivery) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.queue = append(w.queue, d)
	if w.pending == 0 {
		w.idle = make(chan struct{})
	}
	w.pending++
	if !w.started {
		w.started = true
		var wg sync.WaitGroup
		for range w.workers {
			wg.Add(1)
			go func() { defer wg.Done(); w.run() }()
		}
		go func() { wg.Wait(); close(w.done) }()
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run delivers queued webhooks until the sender is closed.
func (w *webhookSender) run() {
	for w.ctx.Err() == nil {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.ctx.Done():
				return
			}
		}
		d := w.queue[0]
		w.queue[0] = delivery{}
		w.queue = w.queue[1:]
		if len(w.queue) > 0 {
			select { // more to send: another worker may take the next
			case w.wake <- struct{}{}:
			default:
			}
		}
		w.mu.Unlock()

		if err := w.post(d); err != nil && w.ctx.Err() == nil {
			w.log.Warn("stripeemu: webhook delivery failed", "event", d.eventID, "url", d.url, "err", err)
		}

		w.mu.Lock()
		w.pending--
		if w.pending == 0 {
			close(w.idle)
		}
		w.mu.Unlock()
	}
}

// post signs and sends one webhook.
func (w *webhookSender) post(d delivery) error {
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: d.payload, Secret: d.secret, Timestamp: w.clock.Now()})
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, d.url, bytes.NewReader(d.payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", signed.Header)
	res, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("endpoint answered %s", res.Status)
	}
	return nil
}

// flush waits for the queue to drain.
func (w *webhookSender) flush(ctx context.Context) error {
	w.mu.Lock()
	idle := w.idle
	w.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stripeemu: flush webhooks: %w", ctx.Err())
	}
}

// close stops the goroutine and drops queued deliveries.
func (w *webhookSender) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	started := w.started
	w.cancel()
	w.mu.Unlock()
	if started {
		<-w.done
	}
	w.mu.Lock()
	w.queue = nil
	if w.pending > 0 {
		w.pending = 0
		close(w.idle)
	}
	w.mu.Unlock()
}
