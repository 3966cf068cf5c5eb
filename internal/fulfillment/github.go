// GitHub access by account id: a grant resolves the login it is given to
// the account's numeric id and records it before inviting; a revocation
// finds the account's current login from that id. A buyer who renamed is
// still removed, a stranger who took their old login is never touched, and
// a buyer who had access before paying is never removed.
package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// grantGitHub resolves whom the grant goes to, records the attempt (and
// whether the account had access before paymentd gave any), then invites
// the account unless it already has access. An unknown login or a deleted
// account fails the step at once (the engine then alerts the operator) and
// marks the purchase's access failed, so the buyer can give another
// username.
func (f *Fulfillment) grantGitHub(ctx context.Context, job *steps.Job, p store.Purchase, args grantArgs) (any, error) {
	user, login, err := f.githubTarget(ctx, p, args)
	if err != nil {
		if steps.IsPermanent(err) {
			if merr := f.db.MarkAccessFailed(ctx, p.ID, f.clock.Now()); merr != nil {
				job.Logger.Error("record failed access", "err", merr)
			}
		}
		return nil, err
	}
	if user.ID == 0 {
		return grantResult{Provider: providerGitHub, Skipped: "no GitHub username yet"}, nil
	}
	has, err := f.github.IsCollaborator(ctx, user.Login)
	if err != nil {
		return nil, err
	}
	var decide func(ctx context.Context, q *store.Queries, g *store.Grant) error
	if has {
		// Whether the access was there before paymentd's is read under
		// the purchase's lock; without access there is nothing to read.
		decide = func(ctx context.Context, q *store.Queries, g *store.Grant) error {
			var err error
			g.Preexisting, err = hadAccessBefore(ctx, q, p.ID, user, has)
			return err
		}
	}
	g, err := f.recordAttempt(ctx, p.ID, store.Grant{Provider: store.ProviderGitHub, GitHubUserID: user.ID, GitHubLogin: login},
		decide)
	if err != nil || g == nil {
		return skippedGrant(err)
	}
	if !has {
		// Never for someone with access already: GitHub would set their
		// permission to ours, demoting a maintainer to a reader.
		res, err := f.github.Grant(ctx, user.Login, job.IdempotencyKey)
		if err != nil {
			if steps.IsPermanent(err) {
				if merr := f.db.MarkAccessFailed(ctx, p.ID, f.clock.Now()); merr != nil {
					job.Logger.Error("record failed access", "err", merr)
				}
			}
			return nil, err
		}
		g.InvitationID = res.InvitationID
	}
	var ref *string
	if g.InvitationID != 0 {
		s := strconv.FormatInt(g.InvitationID, 10)
		ref = &s
	}
	settled := *g
	job.OnCommit(func(ctx context.Context, q *store.Queries) error {
		return f.settleGrant(ctx, q, p.ID, settled, ref, login)
	})
	return grantResult{Granted: true, Provider: providerGitHub, GrantID: g.ID, Username: user.Login,
		GitHubUserID: user.ID, InvitationID: g.InvitationID, AlreadyCollaborator: has, Preexisting: g.Preexisting}, nil
}

// githubTarget returns the account a grant goes to, and the login to
// record with it: args.Login when set (a move); else the account of the
// purchase's latest grant, by id, as long as the purchase still names the
// login that grant recorded (a retry, a repair, a restore after a reversed
// refund); else the purchase's or the account's GitHub username. A zero
// User means no username is known yet.
func (f *Fulfillment) githubTarget(ctx context.Context, p store.Purchase, args grantArgs) (access.User, string, error) {
	login := args.Login
	if login == "" {
		var err error
		if login, err = githubUsername(ctx, f.db.Queries, p); err != nil {
			return access.User{}, "", err
		}
		grants, err := f.db.PurchaseGrants(ctx, p.ID)
		if err != nil {
			return access.User{}, "", err
		}
		if g, ok := latestGrant(grants); ok && (login == "" || strings.EqualFold(g.GitHubLogin, login)) {
			u, err := f.github.UserByID(ctx, g.GitHubUserID)
			if errors.Is(err, access.ErrNoSuchUser) {
				return u, "", steps.Permanent(fmt.Errorf("grant to the GitHub account of grant %d: %w", g.ID, err))
			}
			return u, g.GitHubLogin, err
		}
	}
	if login == "" {
		return access.User{}, "", nil
	}
	u, err := f.github.User(ctx, login)
	return u, login, err
}

// latestGrant returns the most recently changed GitHub grant that has an
// account id.
func latestGrant(grants []store.Grant) (store.Grant, bool) {
	var best store.Grant
	found := false
	for _, g := range grants {
		if g.Provider != store.ProviderGitHub || g.GitHubUserID == 0 {
			continue
		}
		if !found || g.UpdatedAt.After(best.UpdatedAt) || (g.UpdatedAt.Equal(best.UpdatedAt) && g.ID > best.ID) {
			best, found = g, true
		}
	}
	return best, found
}

// hadAccessBefore decides whether user, who has access to the repository
// now (has), had it before paymentd granted any: true unless a grant that
// paymentd made (to this purchase under a login recorded before ids were,
// or to another paid purchase) accounts for it.
func hadAccessBefore(ctx context.Context, q *store.Queries, purchaseID string, user access.User, has bool) (bool, error) {
	if !has {
		return false, nil
	}
	mine, err := q.PurchaseGrants(ctx, purchaseID)
	if err != nil {
		return false, err
	}
	others, err := q.GrantsToGitHubUser(ctx, user.ID, user.Login, purchaseID)
	if err != nil {
		return false, err
	}
	return !grantedByUs(append(mine, others...), user), nil
}

// grantedByUs reports whether one of grants is an active grant paymentd
// made (not one recorded as access from before) to user's account: by id,
// or by login for a grant recorded before ids were.
func grantedByUs(grants []store.Grant, user access.User) bool {
	for _, g := range grants {
		ours := g.State.Active() && !g.Preexisting && g.Provider == store.ProviderGitHub
		if ours && (g.GitHubUserID == user.ID || (g.GitHubUserID == 0 && strings.EqualFold(g.GitHubLogin, user.Login))) {
			return true
		}
	}
	return false
}

// revokeGitHub takes back each grant in targets: it finds the account's
// current login from the recorded id (from the recorded login for a grant
// recorded before ids were, returned in resolved to be remembered) and
// removes it and its invitations, unless the account had access before
// paymentd or another paid purchase still grants it.
func (f *Fulfillment) revokeGitHub(ctx context.Context, p store.Purchase, targets []store.Grant) (
	outcomes []revokeOutcome, resolved map[int64]int64, err error) {
	resolved = map[int64]int64{}
	for _, g := range targets {
		out := revokeOutcome{GrantID: g.ID, GitHubUserID: g.GitHubUserID, Username: g.GitHubLogin}
		if g.Preexisting {
			out.Outcome = "preexisting"
			outcomes = append(outcomes, out)
			continue
		}
		others, err := f.db.GrantsToGitHubUser(ctx, g.GitHubUserID, g.GitHubLogin, p.ID)
		if err != nil {
			return nil, nil, err
		}
		if len(others) > 0 {
			out.Outcome, out.KeptFor = "kept_for", others[0].PurchaseID
			outcomes = append(outcomes, out)
			continue
		}
		user, err := f.currentAccount(ctx, g)
		switch {
		case errors.Is(err, access.ErrNoSuchUser) || errors.Is(err, access.ErrUnknownUser):
			// The account is gone, and its access with it: only an
			// invitation can be left.
			out.Outcome = "account_deleted"
			if err := f.github.DeleteInvitation(ctx, g.InvitationID); err != nil {
				return nil, nil, err
			}
		case err != nil:
			return nil, nil, err
		default:
			out.Outcome, out.Username = "removed", user.Login
			if g.GitHubUserID == 0 {
				resolved[g.ID] = user.ID
			}
			if err := f.github.Revoke(ctx, user, g.InvitationID); err != nil {
				return nil, nil, err
			}
		}
		outcomes = append(outcomes, out)
	}
	return outcomes, resolved, nil
}

// currentAccount is the account a grant went to, as it is now: by id, or
// by the recorded login for a grant recorded before ids were.
func (f *Fulfillment) currentAccount(ctx context.Context, g store.Grant) (access.User, error) {
	if g.GitHubUserID != 0 {
		return f.github.UserByID(ctx, g.GitHubUserID)
	}
	return f.github.User(ctx, g.GitHubLogin)
}
