package fulfillment_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// TestSubscriptionsChangedSchedulesWhatEachAloneSchedules: the changes of
// several subscriptions handed on together schedule, per subscription,
// exactly the steps each change handed on alone schedules (emails with
// their times and tags, access, webhooks), and a change that cancels a
// tag and schedules a new step with it keeps the new one.
func TestSubscriptionsChangedSchedulesWhatEachAloneSchedules(t *testing.T) {
	t.Parallel()
	h := newSubscriptionHarness(t)
	now := h.clk.Now()
	trialEnd := now.AddDate(0, 0, 20)
	changes := func() []reconcile.SubscriptionChange {
		return []reconcile.SubscriptionChange{
			{Cause: "sub:1", Access: store.AccessGranted, Webhooks: []string{reconcile.WebhookSubscriptionActivated},
				Emails: []reconcile.SubscriptionEmail{{Template: reconcile.TemplateSubscriptionStarted, Cause: "started", At: now},
					{Template: reconcile.TemplateSubscriptionStarted, Cause: "started:admin", At: now, Admin: true}}},
			{Cause: "sub:2", Webhooks: []string{reconcile.WebhookSubscriptionUpdated},
				Emails: []reconcile.SubscriptionEmail{{Template: reconcile.TemplatePlanChanged, Cause: "plan_changed:2", At: now,
					PreviousPrice: "hosted_yearly"}}},
			{Cause: "sub:3", Cancel: []string{"trial_ending"}, Emails: []reconcile.SubscriptionEmail{{
				Template: reconcile.TemplateTrialEnding, Cause: "trial_ending:1", At: trialEnd.AddDate(0, 0, -7),
				Tag: "trial_ending", TrialEnd: &trialEnd}}},
		}
	}
	products := []string{"cloud", "hosted", "cloud"}
	subscribeAll := func(prefix string) []store.Subscription {
		var ss []store.Subscription
		for i, p := range products {
			ss = append(ss, h.subscribe(p, prefix+p+string(rune('a'+i)), "octocat"))
		}
		// The third had a trial reminder waiting, made moot by its change.
		if _, err := h.eng.Schedule(h.ctx, h.db.Queries, steps.Pipeline{Subject: steps.SubscriptionSubject(ss[2].ID),
			Name: "email:trial_ending:0", Anchor: now.Add(time.Hour), Steps: []steps.Step{{
				Name: fulfillment.StepSubscriptionEmail, Tags: []string{"trial_ending"}}}}); err != nil {
			t.Fatal(err)
		}
		return ss
	}
	together, alone := subscribeAll("together-"), subscribeAll("alone-")
	h.tx(func(q *store.Queries) error {
		cs := changes()
		for i := range cs {
			cs[i].Subscription = together[i]
		}
		return h.ful.SubscriptionsChanged(h.ctx, q, cs)
	})
	for i, c := range changes() {
		h.tx(func(q *store.Queries) error {
			c.Subscription = alone[i]
			return h.ful.SubscriptionsChanged(h.ctx, q, []reconcile.SubscriptionChange{c})
		})
	}
	scheduled := func(s store.Subscription) string {
		ss, err := h.db.SubjectSteps(h.ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			Pipeline, Name, Status string
			Tags                   []string
			Args                   json.RawMessage
			RunAt                  time.Time
		}
		var rows []row
		for _, st := range ss {
			rows = append(rows, row{st.Pipeline, st.Name, string(st.Status), st.Tags, st.Args, st.RunAt})
		}
		b, _ := json.Marshal(rows)
		return string(b)
	}
	for i := range products {
		if got, want := scheduled(together[i]), scheduled(alone[i]); got != want {
			t.Errorf("change %d scheduled together:\n%s\nalone:\n%s", i, got, want)
		}
	}
	ss, _ := h.db.SubjectSteps(h.ctx, together[2].ID)
	status := map[string]store.StepStatus{}
	for _, st := range ss {
		status[st.Pipeline] = st.Status
	}
	if status["email:trial_ending:0"] != store.StepCanceled || status["email:trial_ending:1"] != store.StepPending {
		t.Errorf("trial reminders: %v; want the old canceled, the new pending", status)
	}
	if n := len(scheduled(together[0])); n < 10 {
		t.Errorf("nothing scheduled for the first change")
	}
}
