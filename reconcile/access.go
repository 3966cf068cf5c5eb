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
	after := "00000000-0000-0000-0000-000000000000"
	for {
		batch, err := r.db.AccessCandidates(ctx, keys, after, accessBatch)
		if err != nil {
			return err
		}
		ids := make([]string, len(batch))
		for i, p := range batch {
			ids[i] = p.ID
		}
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
		if len(batch) < accessBatch {
			return nil
		}
		after = batch[len(batch)-1].ID
	}
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
	want, onGitHub := accessDrift(facts)
	if want == "" && len(onGitHub) > 0 {
		for _, g := range onGitHub {
			others, err := r.db.GrantsToGitHubUser(ctx, g.GitHubUserID, g.GitHubLogin, g.PurchaseID)
			if err != nil {
				return err
			}
			if len(others) == 0 {
				want = store.AccessRevoked // still on GitHub after a refund, and nothing else pays for it
				break
			}
		}
	}
	if want == "" {
		return nil
	}
	p := facts.Purchase
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		if err := r.record(ctx, q, rep, Change{Kind: "access", ObjectID: p.ID, PurchaseID: p.ID, What: "access_repaired"}); err != nil {
			return err
		}
		return r.ful.RepairAccess(ctx, q, p, want)
	})
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
	if p.AccessState == store.AccessFailed || f.Busy {
		return "", nil // a grant failed for good (the operator decides), or work in flight
	}
	var active []store.Grant
	for _, g := range f.Grants {
		if g.Provider == store.ProviderGitHub && g.State.Active() {
			active = append(active, g)
		}
	}
	entitled := p.Status.Entitled() && (p.GitHubUsername != nil || len(active) > 0)
	switch {
	case entitled && p.AccessState != store.AccessGranted:
		return store.AccessGranted, nil
	case !entitled && (p.AccessState == store.AccessGranted || len(active) > 0):
		return store.AccessRevoked, nil
	case f.Snapshot == nil:
		return "", nil
	case entitled:
		if len(active) > 0 && !present(f.Snapshot, latest(active)) {
			return store.AccessGranted, nil // removed on GitHub by hand: grant again, to the same account
		}
		return "", nil
	}
	for _, g := range f.Grants {
		if g.Provider == store.ProviderGitHub && !g.Preexisting && present(f.Snapshot, g) {
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
