package fulfillment_test

import (
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

func TestAlertIsSentOncePerKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	stalled := steps.AlertArgs{Pipeline: "reconciler", Step: "reconcile_stalled", Attempts: 5,
		LastError: "no reconcile pass succeeded since 2026-03-02T09:00:00Z"}
	for range 3 {
		h.tx(func(q *store.Queries) error { return h.ful.Alert(h.ctx, q, "reconcile_stalled:1772442000", stalled) })
	}
	h.tx(func(q *store.Queries) error {
		return h.ful.Alert(h.ctx, q, "reconcile_object:cs_test_1:1772442000", steps.AlertArgs{Pipeline: "reconciler",
			Step: "reconcile_object", Attempts: 5, LastError: "reconcile cs_test_1: stripe 500"})
	})
	h.run()
	sent := h.mails(mail.OperatorAlert)
	if len(sent) != 2 {
		t.Fatalf("%d alerts sent, want 2 (one per key): %v", len(sent), h.categories())
	}
	var texts []string
	for _, m := range sent {
		if m.To != adminEmail {
			t.Errorf("alert went to %s", m.To)
		}
		texts = append(texts, m.Text)
	}
	all := strings.Join(texts, "\n")
	wantContains(t, "alerts", all, "no reconcile pass succeeded since", "reconcile cs_test_1: stripe 500", "reconcile_stalled")
	// The same key later, after the alert was sent, is still that alert.
	h.tx(func(q *store.Queries) error { return h.ful.Alert(h.ctx, q, "reconcile_stalled:1772442000", stalled) })
	h.run()
	if n := len(h.mails(mail.OperatorAlert)); n != 2 {
		t.Errorf("%d alerts after raising a sent one again, want 2", n)
	}
}
