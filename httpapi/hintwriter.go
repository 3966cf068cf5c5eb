// Group commit of webhook hints. Stripe delivers many events at once (a
// burst of payments, a redelivery storm); each delivery is answered only
// once its hint is committed, but the deliveries in flight together are
// committed together: one statement, one transaction, one fsync. A delivery
// that arrives while a batch is being written waits for the next one, which
// holds everything that arrived meanwhile, so a lone delivery waits for
// nothing and a burst is written in a few statements instead of one each.
package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/paymentd/paymentd/store"
)

const (
	// hintBatchMax bounds a batch: past it the rest wait for the next one.
	hintBatchMax = 500
	// hintWriteTimeout bounds one batch's write. It does not follow any one
	// request's context, since it writes the others' hints too.
	hintWriteTimeout = 10 * time.Second
)

// hintWriter batches the hints of concurrent deliveries.
type hintWriter struct {
	db *store.DB

	mu      sync.Mutex
	queue   []*queuedHint
	writing bool // a goroutine is writing batches until the queue is empty
}

// queuedHint is one delivery's hint and, once done is closed, its outcome.
type queuedHint struct {
	hint     store.NewHint
	done     chan struct{}
	inserted bool
	err      error
}

// insert stores h with whatever other hints are waiting, and reports
// whether it was new (false: the event was already stored). It returns
// once the hint is committed, or with ctx's error if ctx ends first (the
// hint may still be committed; Stripe's redelivery then finds it stored).
func (w *hintWriter) insert(ctx context.Context, h store.NewHint) (bool, error) {
	q := &queuedHint{hint: h, done: make(chan struct{})}
	w.mu.Lock()
	w.queue = append(w.queue, q)
	start := !w.writing
	w.writing = true
	w.mu.Unlock()
	if start {
		go w.drain()
	}
	select {
	case <-q.done:
		return q.inserted, q.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// drain writes batches until the queue is empty.
func (w *hintWriter) drain() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.writing = false
			w.mu.Unlock()
			return
		}
		n := min(len(w.queue), hintBatchMax)
		batch := w.queue[:n:n]
		w.queue = w.queue[n:]
		w.mu.Unlock()
		w.write(batch)
	}
}

// write commits one batch and answers each of its deliveries. When the
// batch's statement fails, its hints are written one at a time, so one
// bad row fails its own delivery only.
func (w *hintWriter) write(batch []*queuedHint) {
	ctx, cancel := context.WithTimeout(context.Background(), hintWriteTimeout)
	defer cancel()
	hints := make([]store.NewHint, len(batch))
	for i, q := range batch {
		hints[i] = q.hint
	}
	inserted, err := w.db.InsertHints(ctx, hints)
	if err != nil && len(batch) > 1 {
		for _, q := range batch {
			q.inserted, q.err = w.db.InsertHint(ctx, q.hint.EventID, q.hint.Type, q.hint.ObjectID, q.hint.ReceivedAt)
			close(q.done)
		}
		return
	}
	for i, q := range batch {
		if err != nil {
			q.err = err
		} else {
			q.inserted = inserted[i]
		}
		close(q.done)
	}
}
