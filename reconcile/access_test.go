package reconcile_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/githubfake"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// githubRepo serves a GitHub fake of the repository acme/pro and returns
// it with a client of it.
func githubRepo(t *testing.T) (*githubfake.Fake, *access.GitHub) {
	t.Helper()
	fake := githubfake.New(githubfake.Options{Owner: "acme", Repo: "pro"})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	gh, err := access.NewGitHub(access.GitHubOptions{Token: "t", BaseURL: srv.URL, Owner: "acme", Repo: "pro",
		HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return fake, gh
}

func TestAccessDriftListsGitHubOnceAndRepairsByAccountID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	fake, gh := githubRepo(t)
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: productsWithGitHub, Access: gh})

	// mk records a purchase of user, and a grant to login's account in
	// grantState (none when "").
	mk := func(user string, status store.PurchaseStatus, accessState store.AccessState, login string,
		grantState store.GrantState, preexisting bool) string {
		t.Helper()
		_, pid := e.checkout(user)
		p := e.purchase(pid)
		name := user + "-gh"
		now := e.clock.Now()
		p.Status, p.AccessState, p.GitHubUsername, p.CompletedAt = status, accessState, &name, &now
		if err := e.db.UpdatePurchase(e.ctx, p, now); err != nil {
			t.Fatal(err)
		}
		if grantState == "" {
			return pid
		}
		g, err := e.db.RecordGrantAttempt(e.ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
			GitHubUserID: fake.AddUser(login), GitHubLogin: login, Preexisting: preexisting}, now)
		if err != nil {
			t.Fatal(err)
		}
		switch grantState {
		case store.GrantGranted:
			err = e.db.MarkGrantGranted(e.ctx, g.ID, 0, now)
		case store.GrantRevoked:
			err = e.db.MarkGrantsRevoked(e.ctx, []int64{g.ID}, now)
		}
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	neverGranted := mk("ivy", store.PurchaseCompleted, store.AccessNone, "", "", false)
	// A grant recorded before account ids were: only its login is known.
	legacy := mk("old", store.PurchaseCompleted, store.AccessGranted, "", "", false)
	if _, err := e.db.Pool.Exec(e.ctx, `INSERT INTO access_grants (purchase_id, provider, github_login, state,
		created_at, updated_at) VALUES ($1, 'github', 'Old-GH', 'granted', now(), now())`, legacy); err != nil {
		t.Fatal(err)
	}
	fake.AddCollaborator("old-gh", "pull")
	removedByHand := mk("jon", store.PurchaseCompleted, store.AccessGranted, "jon-gh", store.GrantGranted, false)
	stillOnGitHub := mk("kim", store.PurchaseRefunded, store.AccessRevoked, "kim-gh", store.GrantRevoked, false)
	fine := mk("lee", store.PurchasePartiallyRefunded, store.AccessGranted, "lee-gh", store.GrantGranted, false)
	renamed := mk("amy", store.PurchaseCompleted, store.AccessGranted, "amy-gh", store.GrantGranted, false)
	hadItBefore := mk("mia", store.PurchaseRefunded, store.AccessRevoked, "mia-gh", store.GrantRevoked, true)
	refundedShared := mk("nia", store.PurchaseRefunded, store.AccessRevoked, "nia-gh", store.GrantRevoked, false)
	paidShared := mk("nia2", store.PurchaseCompleted, store.AccessGranted, "nia-gh", store.GrantGranted, false)

	fake.AddCollaborator("kim-gh", "pull")
	fake.AddInvitation("lee-gh", "pull")
	fake.AddCollaborator("amy-gh", "pull")
	fake.RenameUser("amy-gh", "amy-renamed")
	fake.AddUser("amy-gh") // someone else takes the old login
	fake.AddCollaborator("mia-gh", "admin")
	fake.AddCollaborator("nia-gh", "pull")
	for i := range 150 { // collaborators paymentd knows nothing about: two pages
		fake.AddCollaborator("staff"+string(rune('a'+i%26))+string(rune('a'+i/26)), "push")
	}

	rep, err := rec.RunPass(e.ctx, "access", reconcile.AccessDrift)
	if err != nil || !rep.Converged() {
		t.Fatalf("access pass: %v %+v", err, rep)
	}
	if n := len(fake.Requests()); n != 3 {
		t.Errorf("%d GitHub requests, want 3 (two pages of collaborators, one of invitations): %+v", n, fake.Requests())
	}
	p := e.pipelines()
	for id, want := range map[string]string{neverGranted: "repair:granted", removedByHand: "repair:granted", stillOnGitHub: "repair:revoked"} {
		if p[id][want] != 1 || len(p[id]) != 1 {
			t.Errorf("purchase %s: pipelines %v, want only %s", id, p[id], want)
		}
	}
	for name, id := range map[string]string{"fine": fine, "renamed": renamed, "preexisting": hadItBefore,
		"refunded, account still paid for": refundedShared, "paid, shared account": paidShared} {
		if len(p[id]) != 0 {
			t.Errorf("%s: a purchase whose access is right got %v", name, p[id])
		}
	}
	if gs, err := e.db.PurchaseGrants(e.ctx, legacy); err != nil || len(gs) != 1 || gs[0].GitHubUserID == 0 {
		t.Errorf("legacy grant after the pass = %+v, %v; want the id GitHub lists for its login", gs, err)
	} else if want, _ := fake.UserID("old-gh"); gs[0].GitHubUserID != want {
		t.Errorf("legacy grant learned id %d, want %d", gs[0].GitHubUserID, want)
	}
	if len(p[legacy]) != 0 {
		t.Errorf("a legacy grant still on GitHub got %v", p[legacy])
	}
	if rep.Counts["access_repaired"] != 3 {
		t.Errorf("access_repaired = %d, want 3", rep.Counts["access_repaired"])
	}
}

// The drift pass compares subscriptions too, from the same listing of
// GitHub: an entitled one whose account was removed by hand is granted
// again; an ended one whose account was put back is revoked again, unless
// an entitled purchase grants that account; the rest are left alone.
func TestAccessDriftCoversSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	fake, gh := githubRepo(t)
	subs := newSubRecorder()
	products := []config.Product{{Key: product, Access: "github"},
		{Key: "cloud", Mode: config.ModeSubscription, Access: "github"}}
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: products, Access: gh, Subscriptions: reconcile.SubscriptionOptions{Fulfillment: subs}})
	now := e.clock.Now()
	// mk records a subscription and a grant to login's account.
	mk := func(name string, entitled bool, accessState store.AccessState, login string, grantState store.GrantState) string {
		t.Helper()
		user := "user-" + name
		s := store.Subscription{ID: uuid.NewString(), StripeSubscriptionID: "sub_" + name, UserID: &user,
			StripeCustomerID: "cus_" + name, ProductKey: "cloud", PriceKey: "cloud_monthly", StripePriceID: "price_m",
			Status: store.SubscriptionActive, Quantity: 1, Amount: 2900, Currency: "usd", Interval: "month",
			IntervalCount: 1, CurrentPeriodStart: now, CurrentPeriodEnd: now.AddDate(0, 1, 0), Entitled: entitled,
			AccessState: accessState, CreatedAt: now, UpdatedAt: now}
		if !entitled {
			s.Status = store.SubscriptionCanceled
		}
		if _, err := e.db.InsertSubscription(e.ctx, s); err != nil {
			t.Fatal(err)
		}
		g, err := e.db.RecordSubscriptionGrantAttempt(e.ctx, store.Grant{SubscriptionID: s.ID, Provider: store.ProviderGitHub,
			GitHubUserID: fake.AddUser(login), GitHubLogin: login}, now)
		if err != nil {
			t.Fatal(err)
		}
		if grantState == store.GrantRevoked {
			err = e.db.MarkGrantsRevoked(e.ctx, []int64{g.ID}, now)
		} else {
			err = e.db.MarkGrantGranted(e.ctx, g.ID, 0, now)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	fine := mk("fine", true, store.AccessGranted, "fine-gh", store.GrantGranted)
	removedByHand := mk("gone", true, store.AccessGranted, "gone-gh", store.GrantGranted)
	putBack := mk("back", false, store.AccessRevoked, "back-gh", store.GrantRevoked)
	sharedEnded := mk("shared", false, store.AccessRevoked, "shared-gh", store.GrantRevoked)
	neverRevoked := mk("ended", false, store.AccessGranted, "ended-gh", store.GrantGranted)
	// An entitled purchase grants shared-gh too.
	_, pid := e.checkout("buyer")
	p := e.purchase(pid)
	login := "shared-gh"
	p.Status, p.AccessState, p.GitHubUsername, p.CompletedAt = store.PurchaseCompleted, store.AccessGranted, &login, &now
	if err := e.db.UpdatePurchase(e.ctx, p, now); err != nil {
		t.Fatal(err)
	}
	g, err := e.db.RecordGrantAttempt(e.ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub,
		GitHubUserID: fake.AddUser(login), GitHubLogin: login}, now)
	if err == nil {
		err = e.db.MarkGrantGranted(e.ctx, g.ID, 0, now)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"fine-gh", "back-gh", "shared-gh", "ended-gh"} {
		fake.AddCollaborator(l, "pull")
	}

	rep, err := rec.RunPass(e.ctx, "access", reconcile.AccessDrift)
	if err != nil || !rep.Converged() {
		t.Fatalf("access pass: %v %+v", err, rep)
	}
	if n := len(fake.Requests()); n != 2 {
		t.Errorf("%d GitHub requests, want 2 (collaborators and invitations, once for purchases and subscriptions)", n)
	}
	want := map[string]store.AccessState{removedByHand: store.AccessGranted, putBack: store.AccessRevoked,
		neverRevoked: store.AccessRevoked}
	if len(subs.repairs) != len(want) {
		t.Errorf("repairs = %v, want %v", subs.repairs, want)
	}
	for id, w := range want {
		if subs.repairs[id] != w {
			t.Errorf("subscription %s: repair %q, want %q", id, subs.repairs[id], w)
		}
	}
	for name, id := range map[string]string{"fine": fine, "ended, account shared with a paid purchase": sharedEnded} {
		if r, ok := subs.repairs[id]; ok {
			t.Errorf("%s: repaired towards %q", name, r)
		}
	}
	if len(e.pipelines()[pid]) != 0 {
		t.Errorf("the purchase whose access is right got %v", e.pipelines()[pid])
	}
}

// Orders with GitHub grants drift by the same rule: a paid one whose
// account was removed by hand is granted again, a refunded one whose
// account is back is revoked again, unless something else paid for grants
// that account; an order whose buyer named no account yet is not listed.
func TestAccessDriftCoversOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	fake, gh := githubRepo(t)
	orders := &orderRecorder{}
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: productsWithGitHub, Access: gh, Orders: orders})
	now := e.clock.Now()
	mk := func(name string, status store.OrderStatus, login string, grantState store.GrantState) string {
		t.Helper()
		o := store.Order{ID: uuid.NewString(), UserID: "user-" + name, UIMode: store.UIModeHosted, Status: status,
			Currency: "usd", AmountSubtotal: 19900, AmountTotal: 19900, ExpiresAt: now.Add(time.Hour), CreatedAt: now,
			UpdatedAt: now, PaidAt: &now}
		if err := e.db.InsertOrder(e.ctx, o, []store.OrderLine{{Line: 0, ProductKey: product, Quantity: 1,
			UnitAmount: 19900, AmountSubtotal: 19900, AmountTotal: 19900}}); err != nil {
			t.Fatal(err)
		}
		if login == "" {
			return o.ID
		}
		g, err := e.db.RecordOrderGrantAttempt(e.ctx, store.OrderGrant{OrderID: o.ID, Provider: store.ProviderGitHub,
			GitHubUserID: fake.AddUser(login), GitHubLogin: login}, now)
		if err == nil && grantState == store.GrantRevoked {
			err = e.db.MarkOrderGrantsRevoked(e.ctx, []int64{g.ID}, now)
		} else if err == nil {
			err = e.db.MarkOrderGrantGranted(e.ctx, g.ID, 0, now)
		}
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	fine := mk("fine", store.OrderPaid, "fine-gh", store.GrantGranted)
	removedByHand := mk("gone", store.OrderPaid, "gone-gh", store.GrantGranted)
	putBack := mk("back", store.OrderRefunded, "back-gh", store.GrantRevoked)
	shared := mk("shared", store.OrderRefunded, "shared-gh", store.GrantRevoked)
	alsoPaid := mk("shared2", store.OrderPartiallyRefunded, "shared-gh", store.GrantGranted)
	noAccount := mk("none", store.OrderPaid, "", "")
	for _, l := range []string{"fine-gh", "back-gh", "shared-gh"} {
		fake.AddCollaborator(l, "pull")
	}

	rep, err := rec.RunPass(e.ctx, "access", reconcile.AccessDrift)
	if err != nil || !rep.Converged() {
		t.Fatalf("access pass: %v %+v", err, rep)
	}
	want := map[string]store.AccessState{removedByHand: store.AccessGranted, putBack: store.AccessRevoked}
	if len(orders.repairs) != len(want) {
		t.Errorf("repairs = %v, want %v", orders.repairs, want)
	}
	for id, w := range want {
		if orders.repairs[id] != w {
			t.Errorf("order %s: repair %q, want %q", id, orders.repairs[id], w)
		}
	}
	for name, id := range map[string]string{"fine": fine, "refunded, account another paid order grants": shared,
		"paid, sharing the account": alsoPaid, "no account named": noAccount} {
		if r, ok := orders.repairs[id]; ok {
			t.Errorf("%s: repaired towards %q", name, r)
		}
	}
}
