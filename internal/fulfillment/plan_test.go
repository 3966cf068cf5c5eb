package fulfillment

import (
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
)

func TestPlanPurchase(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	fus := []config.FollowUp{{Delay: 7 * day, Template: "d7"}, {Delay: 14 * day, Template: "d14"}, {Delay: 30 * day, Template: "d30"}}
	for _, tc := range []struct {
		name                                    string
		age                                     time.Duration
		quiet, access, walk, webhook            bool
		confirmation, admin, grant, accessEmail bool
		followups                               []string
		stale, hold                             bool
	}{
		{name: "fresh", age: time.Minute, access: true, confirmation: true, admin: true, grant: true, accessEmail: true,
			followups: []string{"d7", "d14", "d30"}},
		{name: "fresh, no access", age: time.Minute, confirmation: true, admin: true, followups: []string{"d7", "d14", "d30"}},
		{name: "at the edge of the window", age: 72 * time.Hour, access: true, confirmation: true, admin: true, grant: true,
			accessEmail: true, followups: []string{"d7", "d14", "d30"}},
		{name: "just past the window", age: 72*time.Hour + time.Second, access: true, grant: true,
			followups: []string{"d7", "d14", "d30"}, stale: true},
		{name: "ten days old", age: 10 * day, access: true, grant: true, followups: []string{"d14", "d30"}, stale: true},
		{name: "a follow-up due now is skipped", age: 14 * day, access: true, grant: true, followups: []string{"d30"}, stale: true},
		{name: "sixty days old", age: 60 * day, access: true, grant: true, stale: true},
		{name: "quiet", age: time.Minute, quiet: true, access: true, admin: true, grant: true},
		{name: "quiet and old", age: 10 * day, quiet: true, access: true, grant: true, stale: true},
		{name: "found by a walk, fresh: granted at once", age: time.Minute, walk: true, access: true, confirmation: true,
			admin: true, grant: true, accessEmail: true, followups: []string{"d7", "d14", "d30"}},
		{name: "found by a walk, at the edge of the window", age: 72 * time.Hour, walk: true, access: true,
			confirmation: true, admin: true, grant: true, accessEmail: true, followups: []string{"d7", "d14", "d30"}},
		{name: "found by a walk, just past the window: held", age: 72*time.Hour + time.Second, walk: true, access: true,
			grant: true, followups: []string{"d7", "d14", "d30"}, stale: true, hold: true},
		{name: "found by a walk, old: held", age: 60 * day, walk: true, access: true, grant: true, stale: true, hold: true},
		{name: "found by a walk, old, no access: nothing to hold", age: 60 * day, walk: true, stale: true},
		{name: "found by a walk, old, a webhook product: granted at once, told before its refund", age: 60 * day,
			walk: true, webhook: true, access: true, grant: true, stale: true},
		{name: "found by a walk, quiet and old: held", age: 10 * day, walk: true, quiet: true, access: true, grant: true,
			stale: true, hold: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planPurchase(purchaseFacts{Now: now, CompletedAt: now.Add(-tc.age), NotifyWindow: 72 * time.Hour,
				Quiet: tc.quiet, Access: tc.access, FollowUps: fus, Walk: tc.walk, Webhook: tc.webhook})
			var got []string
			for _, fu := range p.FollowUps {
				got = append(got, fu.Template)
			}
			if p.Confirmation != tc.confirmation || p.AdminEmail != tc.admin || p.Grant != tc.grant ||
				p.AccessEmail != tc.accessEmail || p.Stale != tc.stale || p.HoldGrant != tc.hold || !slices.Equal(got, tc.followups) {
				t.Errorf("plan = %+v (follow-ups %v), want confirmation %v admin %v grant %v access email %v stale %v hold %v follow-ups %v",
					p, got, tc.confirmation, tc.admin, tc.grant, tc.accessEmail, tc.stale, tc.hold, tc.followups)
			}
		})
	}
}

func TestPlanRefund(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		age      time.Duration
		unknown  bool
		quiet    bool
		full     bool
		provider string
		want     refundPlan
	}{
		{name: "full, GitHub", age: time.Hour, full: true, provider: providerGitHub,
			want: refundPlan{Revoke: true, CustomerEmail: true, AdminEmail: true}},
		{name: "partial, webhook", age: time.Hour, provider: providerWebhook,
			want: refundPlan{AccessWebhook: true, CustomerEmail: true, AdminEmail: true}},
		{name: "partial, GitHub", age: time.Hour, provider: providerGitHub,
			want: refundPlan{CustomerEmail: true, AdminEmail: true}},
		{name: "full, no access", age: time.Hour, full: true, want: refundPlan{CustomerEmail: true, AdminEmail: true}},
		{name: "full, old", age: 5 * 24 * time.Hour, full: true, provider: providerWebhook,
			want: refundPlan{Revoke: true, Stale: true}},
		{name: "time unknown", unknown: true, full: true, provider: providerGitHub,
			want: refundPlan{Revoke: true, CustomerEmail: true, AdminEmail: true}},
		{name: "quiet", age: time.Hour, quiet: true, full: true, provider: providerGitHub,
			want: refundPlan{Revoke: true, AdminEmail: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := now.Add(-tc.age)
			if tc.unknown {
				at = time.Time{}
			}
			got := planRefund(refundFacts{Now: now, RefundedAt: at, NotifyWindow: 72 * time.Hour, Quiet: tc.quiet,
				Full: tc.full, Provider: tc.provider})
			if got != tc.want {
				t.Errorf("plan = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPlanRecovery(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name               string
		expiredAt, expires time.Time
		quiet              bool
		anchor             time.Time
		send               bool
	}{
		{name: "expired early: anchored when it expired", expiredAt: now.Add(-10 * time.Minute), expires: now.Add(20 * time.Hour),
			anchor: now.Add(-10 * time.Minute), send: true},
		{name: "no expired_at: its expires_at", expires: now.Add(-time.Hour), anchor: now.Add(-time.Hour), send: true},
		{name: "neither: now", anchor: now, send: true},
		{name: "a day old", expiredAt: now.Add(-24 * time.Hour), anchor: now.Add(-24 * time.Hour), send: true},
		{name: "older than a day", expiredAt: now.Add(-25 * time.Hour), expires: now.Add(-25 * time.Hour),
			anchor: now.Add(-25 * time.Hour)},
		{name: "quiet", expiredAt: now, anchor: now, quiet: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			anchor, send := planRecovery(recoveryFacts{Now: now, ExpiredAt: tc.expiredAt, SessionExpiresAt: tc.expires, Quiet: tc.quiet})
			if !anchor.Equal(tc.anchor) || send != tc.send {
				t.Errorf("planRecovery = %s %v, want %s %v", anchor, send, tc.anchor, tc.send)
			}
		})
	}
}

// TestFollowupsToRestore: a reversal brings back, per follow-up, the last
// one a refund canceled, when it is still ahead and no other of its name is
// scheduled or sent.
func TestFollowupsToRestore(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	step := func(id int64, name string, st store.StepStatus, runAt time.Time, tags ...string) store.Step {
		if tags == nil {
			tags = []string{TagFollowup}
		}
		return store.Step{ID: id, Name: name, Status: st, RunAt: runAt, Tags: tags, UpdatedAt: now.Add(time.Duration(id) * time.Minute)}
	}
	ahead, past := now.Add(48*time.Hour), now.Add(-time.Hour)
	for _, c := range []struct {
		name     string
		existing []store.Step
		want     []int64
	}{
		{"a canceled follow-up ahead", []store.Step{step(1, "followup_feedback", store.StepCanceled, ahead)}, []int64{1}},
		{"one already due is not sent late", []store.Step{step(1, "followup_feedback", store.StepCanceled, past)}, nil},
		{"one sent before the refund", []store.Step{step(1, "followup_onboarding", store.StepDone, past)}, nil},
		{"restored once already and pending", []store.Step{step(1, "followup_feedback", store.StepCanceled, ahead),
			step(2, "followup_feedback", store.StepPending, ahead)}, nil},
		{"restored, then canceled again: the last", []store.Step{step(1, "followup_feedback", store.StepCanceled, ahead),
			step(2, "followup_feedback", store.StepCanceled, ahead)}, []int64{2}},
		{"not a follow-up", []store.Step{step(1, StepGrantAccess, store.StepCanceled, ahead, TagAccess)}, nil},
		{"two follow-ups", []store.Step{step(1, "followup_feedback", store.StepCanceled, ahead),
			step(2, "followup_testimonial", store.StepCanceled, ahead.Add(24*time.Hour))}, []int64{1, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []int64
			for _, s := range followupsToRestore(c.existing, now) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("restored %v, want %v", got, c.want)
			}
		})
	}
}
