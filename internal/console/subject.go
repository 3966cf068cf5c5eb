package console

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
)

// What the detail pages of a purchase, a subscription and an order share:
// the audit of a subject and its steps, the timeline entries of its steps
// and audit, the count of failed steps, the refresh while steps run, and
// the sandboxed preview of an email one of its steps sent.

// subjectAudit reads the operator actions on a subject and on its steps.
func (c *Console) subjectAudit(ctx context.Context, kind, id string, steps []store.Step) ([]store.AuditEntry, error) {
	ids := make([]int64, len(steps))
	for i, st := range steps {
		ids[i] = st.ID
	}
	return c.db.SubjectAudit(ctx, kind, id, ids, 100)
}

// subjectTimeline orders a subject's timeline, oldest first: its own
// moments (own), each step, its other records (more: access changes,
// refunds, invoices...) and each operator action. Entries at the same
// moment keep that order.
func subjectTimeline(own []entry, steps []store.Step, more []entry, audit []store.AuditEntry, now time.Time,
	stuckAfter time.Duration) []entry {
	es := own
	for _, s := range steps {
		v := viewStep(s, now, stuckAfter)
		es = append(es, entry{At: s.CreatedAt, Kind: "step", Step: &v})
	}
	es = append(es, more...)
	for i := range audit {
		es = append(es, entry{At: audit[i].At, Kind: "audit", Audit: &audit[i]})
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].At.Before(es[j].At) })
	return es
}

// failedSteps counts the steps that failed for good.
func failedSteps(steps []store.Step) int {
	n := 0
	for _, st := range steps {
		if st.Status == store.StepFailed {
			n++
		}
	}
	return n
}

// refreshWhileRunning is a detail page's refresh: every 3 seconds while
// one of its steps is under way, else none.
func refreshWhileRunning(steps []store.Step, now time.Time) int {
	if inFlight(steps, now) {
		return 3
	}
	return 0
}

// serveStepEmail answers the preview of the email that the step named in
// the path sent, one of steps (those of a subject, called what), rendered
// again by render. It is served sandboxed: no script, no form, no request
// to anywhere but images.
func (c *Console) serveStepEmail(w http.ResponseWriter, r *http.Request, s *session, what string, steps []store.Step,
	render func(store.Step, sentEmail) (mail.Message, error)) {
	id, err := strconv.ParseInt(r.PathValue("step"), 10, 64)
	var st *store.Step
	for i := range steps {
		if err == nil && steps[i].ID == id {
			st = &steps[i]
		}
	}
	if st == nil {
		c.message(w, r, s, http.StatusNotFound, "No such step", "This "+what+" has no such step.")
		return
	}
	e, ok := emailOf(*st)
	if !ok {
		c.message(w, r, s, http.StatusNotFound, "No email", "This step did not send an email.")
		return
	}
	m, err := render(*st, e)
	if err != nil {
		c.message(w, r, s, http.StatusUnprocessableEntity, "No preview", "The email could not be rendered again: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(m.HTML))
}
