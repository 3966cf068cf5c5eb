// Access drift: what access a purchase should have (granted while it is
// completed or partially refunded and a GitHub username is known, none
// otherwise) compared with what is recorded and with GitHub itself; every
// difference is repaired through steps, never inline.
package reconcile

import (
	"context"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/store"
)

// AccessChecker tells what GitHub says about a user's access.
type AccessChecker interface {
	Check(ctx context.Context, username string) (access.Access, error)
}

func (r *Reconciler) accessPass(ctx context.Context, rep *Report) error {
	var keys []string
	for _, p := range r.opts.Products {
		if p.Access == "github" {
			keys = append(keys, p.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	after := "00000000-0000-0000-0000-000000000000"
	for {
		batch, err := r.db.AccessCandidates(ctx, keys, after, 200)
		if err != nil {
			return err
		}
		for _, p := range batch {
			rep.seen(1)
			if err := r.checkAccess(ctx, p, rep); err != nil {
				rep.fail("access", p.ID, err)
			}
		}
		if len(batch) < 200 {
			return nil
		}
		after = batch[len(batch)-1].ID
	}
}

func (r *Reconciler) checkAccess(ctx context.Context, p store.Purchase, rep *Report) error {
	if p.AccessState == store.AccessFailed {
		return nil // a grant failed for good; the operator was alerted and decides
	}
	busy, err := r.db.HasOpenWork(ctx, p.ID)
	if err != nil || busy {
		return err // steps in flight will settle it
	}
	entitled := (p.Status == store.PurchaseCompleted || p.Status == store.PurchasePartiallyRefunded) && p.GitHubUsername != nil
	var want store.AccessState
	switch {
	case entitled && p.AccessState != store.AccessGranted:
		want = store.AccessGranted
	case !entitled && p.AccessState == store.AccessGranted:
		want = store.AccessRevoked
	case r.opts.Access != nil && p.GitHubUsername != nil:
		a, err := r.opts.Access.Check(ctx, *p.GitHubUsername)
		if err != nil {
			return err
		}
		has := a.Collaborator || a.PendingInvitationID != 0
		if entitled && !has {
			want = store.AccessGranted // removed on GitHub by hand: grant again
		} else if !entitled && has {
			others, err := r.db.GrantedToGitHubUser(ctx, *p.GitHubUsername, p.ID)
			if err != nil {
				return err
			}
			if len(others) == 0 {
				want = store.AccessRevoked // still on GitHub after a refund, and nothing else pays for it
			}
		}
	}
	if want == "" {
		return nil
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		if err := r.record(ctx, q, rep, Change{Kind: "access", ObjectID: p.ID, PurchaseID: p.ID, What: "access_repaired"}); err != nil {
			return err
		}
		return r.ful.RepairAccess(ctx, q, p, want)
	})
}
