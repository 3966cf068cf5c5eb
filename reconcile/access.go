// Access drift: what access a purchase should have (granted while it is
// completed or partially refunded and a GitHub username is known, none
// otherwise) compared with what is recorded and with GitHub itself; every
// difference is repaired through steps, never inline.
//
// GitHub is read once per pass: one listing of the repository's
// collaborators and one of its pending invitations, 100 to a page, compared
// in memory with every purchase's grants by account id. The cost is the
// number of pages, not the number of purchases, so the pass leaves GitHub's
// hourly budget to the grant steps.
package reconcile

import (
	"cmp"
	"context"
	"slices"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/store"
)

// AccessChecker lists who has access to the repository.
type AccessChecker interface {
	Snapshot(ctx context.Context) (access.Snapshot, error)
}

// accessBatch is how many purchases the drift pass reads at a time.
const accessBatch = 200

func (r *Reconciler) accessPass(ctx context.Context, rep *Report) error {
	var keys []string
	for _, p := range r.opts.Products {
		if p.Access == string(store.ProviderGitHub) {
			keys = append(keys, p.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	var snap *access.Snapshot
	if r.opts.Access != nil {
		s, err := r.opts.Access.Snapshot(ctx)
		if err != nil {
			return err
		}
		snap = &s
	}
	err := accessPages(ctx, func(after string) ([]store.Purchase, error) {
		return r.db.AccessCandidates(ctx, keys, after, accessBatch)
	}, func(p store.Purchase) string { return p.ID }, func(batch []store.Purchase, ids []string) error {
		busy, err := r.db.PurchasesWithOpenWork(ctx, ids)
		if err != nil {
			return err
		}
		grants, err := r.db.GrantsOf(ctx, ids)
		if err != nil {
			return err
		}
		if err := r.learnAccountIDs(ctx, rep, grants, snap); err != nil {
			return err
		}
		for _, p := range batch {
			rep.seen(1)
			facts := driftFacts{Purchase: p, Busy: busy[p.ID], Grants: grants[p.ID], Snapshot: snap}
			if err := r.checkAccess(ctx, facts, rep); err != nil {
				rep.fail("access", p.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.subscriptionAccessPass(ctx, rep, keys, snap); err != nil {
		return err
	}
	return r.orderAccessPass(ctx, rep, snap)
}

// orderAccessSteps are the steps that settle an order's GitHub access:
// while one is to run, the drift pass leaves it alone.
var orderAccessSteps = []string{"order_grant_github", "order_revoke_access", "order_revoke_superseded"}

// orderAccessPass compares the orders that have GitHub grants with GitHub
// (snap; nil compares only the database), by the rule of purchases.
func (r *Reconciler) orderAccessPass(ctx context.Context, rep *Report, snap *access.Snapshot) error {
	ful := r.opts.Orders
	if ful == nil {
		return nil
	}
	return accessPages(ctx, func(after string) ([]store.Order, error) {
		return r.db.OrdersWithGitHubGrants(ctx, after, accessBatch)
	}, func(o store.Order) string { return o.ID }, func(batch []store.Order, ids []string) error {
		busy, err := r.db.SubjectsWithOpenSteps(ctx, ids, orderAccessSteps)
		if err != nil {
			return err
		}
		grants, err := r.db.OrderGrantsOf(ctx, ids)
		if err != nil {
			return err
		}
		for _, o := range batch {
			rep.seen(1)
			var gs []store.Grant
			for _, g := range grants[o.ID] {
				gs = append(gs, g.Grant())
			}
			// An order's access is its grants: recorded granted when one is active.
			state := store.AccessNone
			if slices.ContainsFunc(gs, func(g store.Grant) bool { return g.Provider == store.ProviderGitHub && g.State.Active() }) {
				state = store.AccessGranted
			}
			want, onGitHub := grantDrift(o.Status.Entitled(), false, state, busy[o.ID], gs, snap)
			c := Change{Kind: "access", ObjectID: o.ID, What: "access_repaired"}
			if err := r.repairDrift(ctx, rep, o.ID, c, want, onGitHub, func(q *store.Queries, want store.AccessState) error {
				return ful.RepairOrderAccess(ctx, q, o, want)
			}); err != nil {
				rep.fail("access", o.ID, err)
			}
		}
		return nil
	})
}

// subscriptionAccessSteps are the steps that settle a subscription's
// access: while one is to run, the drift pass leaves it alone.
var subscriptionAccessSteps = []string{"subscription_access", "subscription_access_superseded"}

// subscriptionAccessPass compares the subscriptions of keys with GitHub
// (snap; nil compares only the database), as accessPass does purchases.
func (r *Reconciler) subscriptionAccessPass(ctx context.Context, rep *Report, keys []string, snap *access.Snapshot) error {
	ful := r.opts.Subscriptions.Fulfillment
	if ful == nil {
		return nil
	}
	return accessPages(ctx, func(after string) ([]store.Subscription, error) {
		return r.db.SubscriptionAccessCandidates(ctx, keys, after, accessBatch)
	}, func(s store.Subscription) string { return s.ID }, func(batch []store.Subscription, ids []string) error {
		busy, err := r.db.SubjectsWithOpenSteps(ctx, ids, subscriptionAccessSteps)
		if err != nil {
			return err
		}
		grants, err := r.db.SubscriptionGrantsOf(ctx, ids)
		if err != nil {
			return err
		}
		if err := r.learnAccountIDs(ctx, rep, grants, snap); err != nil {
			return err
		}
		for _, s := range batch {
			rep.seen(1)
			facts := subscriptionDriftFacts{Subscription: s, Busy: busy[s.ID], Grants: grants[s.ID], Snapshot: snap}
			if err := r.checkSubscriptionAccess(ctx, ful, facts, rep); err != nil {
				rep.fail("access", s.ID, err)
			}
		}
		return nil
	})
}

// accessPages reads the drift pass's candidates of one kind accessBatch at
// a time, in order of id (list returns those after an id), and hands each
// page and its ids to check.
func accessPages[T any](ctx context.Context, list func(after string) ([]T, error), id func(T) string,
	check func(batch []T, ids []string) error) error {
	after := "00000000-0000-0000-0000-000000000000"
	for ctx.Err() == nil {
		batch, err := list(after)
		if err != nil {
			return err
		}
		ids := make([]string, len(batch))
		for i, v := range batch {
			ids[i] = id(v)
		}
		if err := check(batch, ids); err != nil {
			return err
		}
		if len(batch) < accessBatch {
			return nil
		}
		after = ids[len(ids)-1]
	}
	return ctx.Err()
}

// checkSubscriptionAccess schedules the repair subscriptionAccessDrift asks
// for; an ended subscription whose account is still on GitHub is repaired
// only when nothing else entitled grants that account.
func (r *Reconciler) checkSubscriptionAccess(ctx context.Context, ful SubscriptionFulfillment, facts subscriptionDriftFacts,
	rep *Report) error {
	s := facts.Subscription
	want, onGitHub := subscriptionAccessDrift(facts)
	return r.repairDrift(ctx, rep, s.ID, Change{Kind: "access", ObjectID: s.StripeSubscriptionID, What: "access_repaired"},
		want, onGitHub, func(q *store.Queries, want store.AccessState) error {
			return ful.RepairSubscriptionAccess(ctx, q, s, want)
		})
}

// subscriptionDriftFacts is what the drift check knows about one
// subscription.
type subscriptionDriftFacts struct {
	Subscription store.Subscription
	// Busy is set while an access step of it is still to run.
	Busy bool
	// Grants are its grants, in any state.
	Grants []store.Grant
	// Snapshot is GitHub's side; nil compares only the database.
	Snapshot *access.Snapshot
}

// subscriptionAccessDrift decides a subscription's repair by grantDrift.
// Its GitHub username is its account's, which the access step reads when
// it runs: an entitled subscription with no grant yet is waiting for one
// to be named, not drifting.
func subscriptionAccessDrift(f subscriptionDriftFacts) (want store.AccessState, onGitHub []store.Grant) {
	s := f.Subscription
	return grantDrift(s.Entitled, false, s.AccessState, f.Busy, f.Grants, f.Snapshot)
}

// learnAccountIDs records, for active grants made before account ids were
// recorded, the id GitHub lists for their login: from then on a rename
// cannot lose them, nor a new owner of the login gain their access.
func (r *Reconciler) learnAccountIDs(ctx context.Context, rep *Report, grants map[string][]store.Grant,
	snap *access.Snapshot) error {
	if snap == nil {
		return nil
	}
	learned := map[int64]int64{}
	for _, gs := range grants {
		for _, g := range gs {
			if g.Provider != store.ProviderGitHub || g.GitHubUserID != 0 || !g.State.Active() {
				continue
			}
			if id, ok := snap.IDOf(g.GitHubLogin); ok {
				learned[g.ID] = id
			}
		}
	}
	if len(learned) == 0 {
		return nil
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		for grantID, id := range learned {
			if err := q.SetGrantUserID(ctx, grantID, id, r.clock.Now()); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkAccess schedules the repair accessDrift asks for. A refunded
// purchase whose account is still on GitHub is repaired only when no other
// paid purchase grants that account.
func (r *Reconciler) checkAccess(ctx context.Context, facts driftFacts, rep *Report) error {
	p := facts.Purchase
	want, onGitHub := accessDrift(facts)
	return r.repairDrift(ctx, rep, p.ID, Change{Kind: "access", ObjectID: p.ID, PurchaseID: p.ID, What: "access_repaired"},
		want, onGitHub, func(q *store.Queries, want store.AccessState) error {
			return r.ful.RepairAccess(ctx, q, p, want)
		})
}

// repairDrift runs repair towards want, in a transaction that reports c;
// when the drift rule asked for nothing but found accounts still on
// GitHub that the subject (subjectID) no longer entitles, towards a
// revocation unless something else entitled grants them.
func (r *Reconciler) repairDrift(ctx context.Context, rep *Report, subjectID string, c Change, want store.AccessState,
	onGitHub []store.Grant, repair func(q *store.Queries, want store.AccessState) error) error {
	if want == "" {
		var err error
		if want, err = r.unshared(ctx, onGitHub, subjectID); err != nil {
			return err
		}
	}
	if want == "" {
		return nil
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		if err := r.record(ctx, q, rep, c); err != nil {
			return err
		}
		return repair(q, want)
	})
}

// unshared asks for a revocation (store.AccessRevoked) when an account of
// onGitHub, still on GitHub though its subject (subjectID) no longer
// entitles it, is granted by nothing else entitled; "" otherwise.
func (r *Reconciler) unshared(ctx context.Context, onGitHub []store.Grant, subjectID string) (store.AccessState, error) {
	for _, g := range onGitHub {
		others, err := r.db.GrantsToGitHubUser(ctx, g.GitHubUserID, g.GitHubLogin, subjectID)
		if err != nil {
			return "", err
		}
		if len(others) == 0 {
			return store.AccessRevoked, nil
		}
	}
	return "", nil
}

// driftFacts is what the drift check knows about one purchase.
type driftFacts struct {
	Purchase store.Purchase
	// Busy is set while steps other than follow-ups are still to run:
	// they will settle it.
	Busy bool
	// Grants are the purchase's grants, in any state.
	Grants []store.Grant
	// Snapshot is GitHub's side; nil compares only the database.
	Snapshot *access.Snapshot
}

// accessDrift decides a purchase's repair: store.AccessGranted for a paid
// purchase whose access is not recorded, or whose account (by id) is
// neither a collaborator nor invited; store.AccessRevoked for one no longer
// paid for whose access is recorded or whose grant may be active. For one
// no longer paid for whose account is still on GitHub, it returns no
// repair but the grants concerned: the caller repairs unless another paid
// purchase grants the same account. An account that had access before
// paymentd granted any is never revoked.
func accessDrift(f driftFacts) (want store.AccessState, onGitHub []store.Grant) {
	p := f.Purchase
	return grantDrift(p.Status.Entitled(), p.GitHubUsername != nil, p.AccessState, f.Busy, f.Grants, f.Snapshot)
}

// grantDrift is the drift rule of a subject (a purchase, a subscription)
// with GitHub access: paid for (entitled), with a GitHub username named or
// an active grant, its access is recorded and its latest account is on
// GitHub; otherwise its access is not recorded, no grant is active, and
// its accounts are not on GitHub (the grants returned, for the caller to
// check that nothing else entitled grants them). A grant that failed for
// good (the operator decides) and a subject with access work in flight
// (busy) are left alone, and an account that had access before paymentd
// granted any is never revoked.
func grantDrift(paid, named bool, state store.AccessState, busy bool, grants []store.Grant, snap *access.Snapshot) (
	want store.AccessState, onGitHub []store.Grant) {
	if state == store.AccessFailed || busy {
		return "", nil
	}
	var active []store.Grant
	for _, g := range grants {
		if g.Provider == store.ProviderGitHub && g.State.Active() {
			active = append(active, g)
		}
	}
	entitled := paid && (named || len(active) > 0)
	switch {
	case entitled && state != store.AccessGranted:
		return store.AccessGranted, nil
	case !entitled && (state == store.AccessGranted || len(active) > 0):
		return store.AccessRevoked, nil
	case snap == nil:
		return "", nil
	case entitled:
		if len(active) > 0 && !present(snap, latest(active)) {
			return store.AccessGranted, nil // removed on GitHub by hand: grant again, to the same account
		}
		return "", nil
	}
	for _, g := range grants {
		if g.Provider == store.ProviderGitHub && !g.Preexisting && present(snap, g) {
			onGitHub = append(onGitHub, g)
		}
	}
	return "", onGitHub
}

// present reports whether a grant's account is a collaborator or invited:
// by id, or by login for a grant recorded before ids were.
func present(s *access.Snapshot, g store.Grant) bool {
	if g.GitHubUserID != 0 {
		return s.Has(g.GitHubUserID)
	}
	id, ok := s.IDOf(g.GitHubLogin)
	return ok && s.Has(id)
}

// latest returns the most recently changed of grants (not empty).
func latest(grants []store.Grant) store.Grant {
	return slices.MaxFunc(grants, func(a, b store.Grant) int {
		if c := a.UpdatedAt.Compare(b.UpdatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
