package reconcile

import (
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/store"
)

func TestAccessDriftDecision(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	login := "octocat"
	grant := func(id int64, state store.GrantState, preexisting bool) store.Grant {
		return store.Grant{ID: id, Provider: store.ProviderGitHub, GitHubUserID: 100 + id, GitHubLogin: login,
			State: state, Preexisting: preexisting, UpdatedAt: t0.Add(time.Duration(id) * time.Minute)}
	}
	legacy := store.Grant{ID: 9, Provider: store.ProviderGitHub, GitHubLogin: "Old-Login", State: store.GrantGranted}
	// GitHub shows accounts 101 and 103 (one a collaborator, one invited)
	// and the legacy login.
	snap := &access.Snapshot{Collaborators: map[int64]string{101: login, 500: "old-login"},
		Invitations: map[int64]access.Invitation{103: {ID: 7, Login: "someone"}}}
	for _, tc := range []struct {
		name     string
		status   store.PurchaseStatus
		access   store.AccessState
		username bool
		busy     bool
		grants   []store.Grant
		snap     *access.Snapshot
		want     store.AccessState
		onGitHub int
	}{
		{name: "paid, never granted", status: store.PurchaseCompleted, access: store.AccessNone, username: true,
			want: store.AccessGranted},
		{name: "paid, no username yet", status: store.PurchaseCompleted, access: store.AccessNone},
		{name: "paid, grant failed for good", status: store.PurchaseCompleted, access: store.AccessFailed, username: true},
		{name: "work in flight", status: store.PurchaseRefunded, access: store.AccessGranted, username: true, busy: true},
		{name: "refunded, recorded granted", status: store.PurchaseRefunded, access: store.AccessGranted, username: true,
			want: store.AccessRevoked},
		{name: "refunded, an attempted grant never revoked", status: store.PurchaseRefunded, access: store.AccessNone,
			username: true, grants: []store.Grant{grant(2, store.GrantPending, false)}, want: store.AccessRevoked},
		{name: "paid and present", status: store.PurchaseCompleted, access: store.AccessGranted, username: true,
			grants: []store.Grant{grant(1, store.GrantGranted, false)}, snap: snap},
		{name: "paid and invited", status: store.PurchasePartiallyRefunded, access: store.AccessGranted, username: true,
			grants: []store.Grant{grant(3, store.GrantGranted, false)}, snap: snap},
		{name: "paid, removed by hand", status: store.PurchaseCompleted, access: store.AccessGranted, username: true,
			grants: []store.Grant{grant(2, store.GrantGranted, false)}, snap: snap, want: store.AccessGranted},
		{name: "paid, database only", status: store.PurchaseCompleted, access: store.AccessGranted, username: true,
			grants: []store.Grant{grant(2, store.GrantGranted, false)}},
		{name: "paid, the latest of two grants counts", status: store.PurchaseCompleted, access: store.AccessGranted,
			username: true, grants: []store.Grant{grant(2, store.GrantGranted, false), grant(3, store.GrantGranted, false)},
			snap: snap},
		{name: "paid, legacy grant by login", status: store.PurchaseCompleted, access: store.AccessGranted, username: true,
			grants: []store.Grant{legacy}, snap: snap},
		{name: "refunded, still on GitHub", status: store.PurchaseRefunded, access: store.AccessRevoked, username: true,
			grants: []store.Grant{grant(1, store.GrantRevoked, false)}, snap: snap, onGitHub: 1},
		{name: "refunded, gone from GitHub", status: store.PurchaseRefunded, access: store.AccessRevoked, username: true,
			grants: []store.Grant{grant(2, store.GrantRevoked, false)}, snap: snap},
		{name: "refunded, had access before paymentd", status: store.PurchaseRefunded, access: store.AccessRevoked,
			username: true, grants: []store.Grant{grant(1, store.GrantRevoked, true)}, snap: snap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := store.Purchase{ID: "p", Status: tc.status, AccessState: tc.access}
			if tc.username {
				p.GitHubUsername = &login
			}
			want, onGitHub := accessDrift(driftFacts{Purchase: p, Busy: tc.busy, Grants: tc.grants, Snapshot: tc.snap})
			if want != tc.want || len(onGitHub) != tc.onGitHub {
				t.Errorf("accessDrift = %q with %d on GitHub, want %q with %d", want, len(onGitHub), tc.want, tc.onGitHub)
			}
		})
	}
}

// A subscription drifts as a purchase does, with its entitlement for
// "paid"; one with no grant yet waits for its subscriber to name a GitHub
// account, which its access step reads when it runs.
func TestSubscriptionAccessDriftDecision(t *testing.T) {
	t.Parallel()
	grant := func(id int64, state store.GrantState, preexisting bool) store.Grant {
		return store.Grant{ID: id, SubscriptionID: "s", Provider: store.ProviderGitHub, GitHubUserID: 100 + id,
			GitHubLogin: "octocat", State: state, Preexisting: preexisting}
	}
	snap := &access.Snapshot{Collaborators: map[int64]string{101: "octocat"}}
	for _, tc := range []struct {
		name     string
		entitled bool
		access   store.AccessState
		busy     bool
		grants   []store.Grant
		want     store.AccessState
		onGitHub int
	}{
		{name: "entitled, waiting for a username", entitled: true, access: store.AccessNone},
		{name: "entitled, granted and present", entitled: true, access: store.AccessGranted,
			grants: []store.Grant{grant(1, store.GrantGranted, false)}},
		{name: "entitled, removed by hand", entitled: true, access: store.AccessGranted,
			grants: []store.Grant{grant(2, store.GrantGranted, false)}, want: store.AccessGranted},
		{name: "entitled, a grant not recorded on the row", entitled: true, access: store.AccessNone,
			grants: []store.Grant{grant(1, store.GrantGranted, false)}, want: store.AccessGranted},
		{name: "entitled, access step to run", entitled: true, access: store.AccessGranted, busy: true,
			grants: []store.Grant{grant(2, store.GrantGranted, false)}},
		{name: "ended, recorded granted", access: store.AccessGranted, want: store.AccessRevoked},
		{name: "ended, a grant still active", access: store.AccessRevoked,
			grants: []store.Grant{grant(2, store.GrantPending, false)}, want: store.AccessRevoked},
		{name: "ended, account put back on GitHub", access: store.AccessRevoked,
			grants: []store.Grant{grant(1, store.GrantRevoked, false)}, onGitHub: 1},
		{name: "ended, had access before paymentd", access: store.AccessRevoked,
			grants: []store.Grant{grant(1, store.GrantRevoked, true)}},
		{name: "ended and gone", access: store.AccessRevoked, grants: []store.Grant{grant(2, store.GrantRevoked, false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := store.Subscription{ID: "s", Entitled: tc.entitled, AccessState: tc.access}
			want, onGitHub := subscriptionAccessDrift(subscriptionDriftFacts{Subscription: s, Busy: tc.busy,
				Grants: tc.grants, Snapshot: snap})
			if want != tc.want || len(onGitHub) != tc.onGitHub {
				t.Errorf("subscriptionAccessDrift = %q with %d on GitHub, want %q with %d", want, len(onGitHub), tc.want, tc.onGitHub)
			}
		})
	}
}
