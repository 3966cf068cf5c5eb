// Credits: the ledger of an account's credits (append-only entries, each
// unique per kind and cause), the running balance written in the same
// transaction as each entry, and the lots that say what is left of each
// grant. Every write locks the account's row first, so lots and balance
// move together and the balance can never go below zero.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreditKind is the kind of a ledger entry; the values match
// credit_entries' CHECK.
type CreditKind string

// Ledger entry kinds.
const (
	CreditGrant          CreditKind = "grant"           // a pack, or a plan's top-up with rollover
	CreditReset          CreditKind = "reset"           // a plan's period: the delta to its amount
	CreditConsume        CreditKind = "consume"         // spent through the consume endpoint
	CreditExpire         CreditKind = "expire"          // a plan's remainder when its subscription ended
	CreditRefundClawback CreditKind = "refund_clawback" // what was left of a pack refunded in full
	// CreditClawbackReversal gives back what a clawback took once its
	// purchase is paid for again (the refund failed).
	CreditClawbackReversal CreditKind = "clawback_reversal"
)

// CreditKinds lists every CreditKind.
var CreditKinds = []CreditKind{CreditGrant, CreditReset, CreditConsume, CreditExpire, CreditRefundClawback,
	CreditClawbackReversal}

// CauseKind says what caused a ledger entry; the values match
// credit_entries' CHECK.
type CauseKind string

// Causes of ledger entries.
const (
	CausePurchase     CauseKind = "purchase"     // a purchase id
	CauseInvoice      CauseKind = "invoice"      // a Stripe invoice id
	CauseConsumption  CauseKind = "consumption"  // a consume idempotency key
	CauseSubscription CauseKind = "subscription" // a subscription id
	CausePlanChange   CauseKind = "plan_change"  // a subscription id and when its plan left the credits (PlanChangeCause)
	CauseRefund       CauseKind = "refund"       // a purchase id and the refund or lost dispute that ended it (RefundCause)
	CauseClawback     CauseKind = "clawback"     // the id of the clawback entry given back
)

// CauseKinds lists every CauseKind.
var CauseKinds = []CauseKind{CausePurchase, CauseInvoice, CauseConsumption, CauseSubscription, CausePlanChange,
	CauseRefund, CauseClawback}

// RefundCause is the cause id of the clawback of purchase purchaseID's pack
// when objectID, a Stripe refund or lost dispute, ended its payment.
func RefundCause(purchaseID, objectID string) string { return purchaseID + "@" + objectID }

// PlanChangeCause is the cause id of the expiry of subscription
// subscriptionID's plan credits when its plan changed, at at, to a product
// without credits.
func PlanChangeCause(subscriptionID string, at time.Time) string {
	return subscriptionID + "@" + at.UTC().Format(time.RFC3339Nano)
}

// LotSource says where a lot of credits came from; the values match
// credit_lots' CHECK.
type LotSource string

// Lot sources.
const (
	LotPack LotSource = "pack" // a one-time purchase; source id is the purchase id
	LotPlan LotSource = "plan" // a subscription's period; source id is the subscription id
)

// LotSources lists every LotSource.
var LotSources = []LotSource{LotPack, LotPlan}

// ConsumeOutcome is the first answer to a consume idempotency key; the
// values match credit_consumptions' CHECK.
type ConsumeOutcome string

// Consume outcomes.
const (
	ConsumeConsumed     ConsumeOutcome = "consumed"
	ConsumeInsufficient ConsumeOutcome = "insufficient"
)

// ConsumeOutcomes lists every ConsumeOutcome.
var ConsumeOutcomes = []ConsumeOutcome{ConsumeConsumed, ConsumeInsufficient}

// CreditHolder names an account: a user, and an organization or "".
type CreditHolder struct {
	UserID         string `json:"user_id"`
	OrganizationID string `json:"organization_id,omitempty"`
}

// CreditAccount is one row of credit_accounts.
type CreditAccount struct {
	ID int64
	CreditHolder
	Balance int64
	// LowThreshold is the low-balance threshold of the current period,
	// nil for none; PeriodCause names the grant or reset that began it,
	// LowNoticedCause the period whose notice was sent.
	LowThreshold    *int64
	PeriodCause     string
	LowNoticedCause string
}

// CreditEntry is one ledger entry.
type CreditEntry struct {
	ID           int64      `json:"id"`
	AccountID    int64      `json:"-"`
	Kind         CreditKind `json:"kind"`
	Amount       int64      `json:"amount"`
	BalanceAfter int64      `json:"balance_after"`
	CauseKind    CauseKind  `json:"cause_kind"`
	CauseID      string     `json:"cause_id"`
	Reason       string     `json:"reason,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

// ErrCreditAccountNotFound is returned for a holder without any entry.
var ErrCreditAccountNotFound = fmt.Errorf("credit account: %w", ErrNotFound)

const creditAccountColumns = `id, user_id, organization_id, balance, low_threshold, coalesce(period_cause, ''),
	coalesce(low_noticed_cause, '')`

func scanCreditAccount(row pgx.Row) (CreditAccount, error) {
	var a CreditAccount
	err := row.Scan(&a.ID, &a.UserID, &a.OrganizationID, &a.Balance, &a.LowThreshold, &a.PeriodCause, &a.LowNoticedCause)
	return a, err
}

const creditEntryColumns = `id, account_id, kind, amount, balance_after, cause_kind, cause_id, reason, created_at`

func scanCreditEntry(row pgx.Row) (CreditEntry, error) {
	var e CreditEntry
	err := row.Scan(&e.ID, &e.AccountID, &e.Kind, &e.Amount, &e.BalanceAfter, &e.CauseKind, &e.CauseID, &e.Reason, &e.CreatedAt)
	return e, err
}

// LockCreditAccount returns h's account, created with a zero balance when
// it has none, locked (FOR UPDATE) until q's transaction ends. Every write
// to an account's entries, lots or balance happens under this lock.
func (q *Queries) LockCreditAccount(ctx context.Context, h CreditHolder, now time.Time) (CreditAccount, error) {
	if h.UserID == "" {
		return CreditAccount{}, errors.New("lock credit account: user id is required")
	}
	// ON CONFLICT DO UPDATE locks the existing row as an UPDATE would; a
	// no-op SET keeps the statement one round trip either way.
	a, err := scanCreditAccount(q.db.QueryRow(ctx, `
		INSERT INTO credit_accounts (user_id, organization_id, created_at, updated_at) VALUES ($1, $2, $3, $3)
		ON CONFLICT (user_id, organization_id) DO UPDATE SET user_id = EXCLUDED.user_id
		RETURNING `+creditAccountColumns, h.UserID, h.OrganizationID, now.UTC()))
	if err != nil {
		return a, fmt.Errorf("lock credit account of %s: %w", h.UserID, err)
	}
	return a, nil
}

// GetCreditAccount returns h's account, or ErrCreditAccountNotFound.
func (q *Queries) GetCreditAccount(ctx context.Context, h CreditHolder) (CreditAccount, error) {
	a, err := scanCreditAccount(q.db.QueryRow(ctx, `SELECT `+creditAccountColumns+`
		FROM credit_accounts WHERE user_id = $1 AND organization_id = $2`, h.UserID, h.OrganizationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, ErrCreditAccountNotFound
	}
	if err != nil {
		return a, fmt.Errorf("get credit account of %s: %w", h.UserID, err)
	}
	return a, nil
}

// CreditEntryByCause returns the account's entry of kind for a cause, or
// ErrNotFound.
func (q *Queries) CreditEntryByCause(ctx context.Context, accountID int64, kind CreditKind, cause CauseKind, causeID string) (CreditEntry, error) {
	e, err := scanCreditEntry(q.db.QueryRow(ctx, `SELECT `+creditEntryColumns+` FROM credit_entries
		WHERE account_id = $1 AND kind = $2 AND cause_kind = $3 AND cause_id = $4`, accountID, kind, cause, causeID))
	return e, notFound(err)
}

// GetCreditEntry returns the entry with id, or ErrNotFound.
func (q *Queries) GetCreditEntry(ctx context.Context, id int64) (CreditEntry, error) {
	e, err := scanCreditEntry(q.db.QueryRow(ctx, `SELECT `+creditEntryColumns+` FROM credit_entries WHERE id = $1`, id))
	return e, notFound(err)
}

// CreditEntries returns up to limit of the account's entries, newest first,
// those older than entry startingAfter when it is positive.
func (q *Queries) CreditEntries(ctx context.Context, accountID int64, limit int, startingAfter int64) ([]CreditEntry, error) {
	rows, err := q.db.Query(ctx, `SELECT `+creditEntryColumns+` FROM credit_entries
		WHERE account_id = $1 AND ($2 <= 0 OR id < $2) ORDER BY id DESC LIMIT $3`, accountID, startingAfter, limit)
	if err != nil {
		return nil, fmt.Errorf("list credit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CreditEntry, error) { return scanCreditEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("list credit entries: %w", err)
	}
	return out, nil
}

// CreditLedgerSum returns the sum of the account's entries and of its lots'
// remaining credits: both equal its balance.
func (q *Queries) CreditLedgerSum(ctx context.Context, accountID int64) (entries, lots int64, err error) {
	err = q.db.QueryRow(ctx, `SELECT
			(SELECT coalesce(sum(amount), 0) FROM credit_entries WHERE account_id = $1)::bigint,
			(SELECT coalesce(sum(remaining), 0) FROM credit_lots WHERE account_id = $1)::bigint`,
		accountID).Scan(&entries, &lots)
	if err != nil {
		return 0, 0, fmt.Errorf("sum credit ledger: %w", err)
	}
	return entries, lots, nil
}

// NewLot is the lot a grant or reset opens.
type NewLot struct {
	Source   LotSource
	SourceID string
	Amount   int64
	// PeriodStart is a plan period's start, ExpiresAt its end; zero for a pack.
	PeriodStart, ExpiresAt time.Time
}

// CreditChange is one entry other than a consumption, applied to a locked
// account: the open lots of Close (if set) go to zero, Lot (if set) opens,
// and the entry's amount is the difference, so lots and balance agree.
type CreditChange struct {
	AccountID int64
	Kind      CreditKind
	CauseKind CauseKind
	CauseID   string
	// Close names the lots whose remainder goes: a pack clawed back (the
	// lots then remember this entry as their clawback until it is given
	// back), a plan's lots at a reset or an expiry.
	Close *LotRef
	Lot   *NewLot
	// GiveBack names the pack whose clawback this entry gives back: what
	// the clawback took returns to the lot.
	GiveBack *Clawback
	// Period, when set, makes this entry the start of the account's period
	// for the low-balance notice, with the given threshold (nil for none).
	Period       bool
	LowThreshold *int64
	Reason       string
}

// LotRef names the lots of one source.
type LotRef struct {
	Source   LotSource
	SourceID string
}

// Clawback is the clawback in effect on a pack: the entry that closed its
// lot and what it took.
type Clawback struct {
	Pack    LotRef
	EntryID int64
	Taken   int64 // > 0 unless the pack was all spent
}

// PackClawback returns the clawback in effect on the pack of purchase
// purchaseID in the account, if its lot was clawed back and not given back
// since. Read it under the account's lock.
func (q *Queries) PackClawback(ctx context.Context, accountID int64, purchaseID string) (Clawback, bool, error) {
	c := Clawback{Pack: LotRef{Source: LotPack, SourceID: purchaseID}}
	err := q.db.QueryRow(ctx, `SELECT e.id, -e.amount FROM credit_lots l JOIN credit_entries e ON e.id = l.clawed_by
		WHERE l.account_id = $1 AND l.source_kind = 'pack' AND l.source_id = $2
		ORDER BY l.entry_id LIMIT 1`, accountID, purchaseID).Scan(&c.EntryID, &c.Taken)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read the clawback of pack %s: %w", purchaseID, err)
	}
	return c, true, nil
}

// ClearClawback forgets clawback c of a pack all spent (it took nothing),
// without an entry: the pack may be clawed back again.
func (q *Queries) ClearClawback(ctx context.Context, accountID int64, c Clawback) error {
	_, err := q.db.Exec(ctx, `UPDATE credit_lots SET clawed_by = NULL
		WHERE account_id = $1 AND source_kind = $2 AND source_id = $3 AND clawed_by = $4`,
		accountID, c.Pack.Source, c.Pack.SourceID, c.EntryID)
	if err != nil {
		return fmt.Errorf("clear the clawback of pack %s: %w", c.Pack.SourceID, err)
	}
	return nil
}

// ApplyCreditChange writes c to the account locked by LockCreditAccount in
// q's transaction. It returns the entry and whether it is new: an entry of
// the same kind and cause already recorded is returned unchanged, and
// nothing is written.
func (q *Queries) ApplyCreditChange(ctx context.Context, c CreditChange, now time.Time) (CreditEntry, bool, error) {
	what := fmt.Sprintf("apply credit %s for %s %s", c.Kind, c.CauseKind, c.CauseID)
	existing, err := q.CreditEntryByCause(ctx, c.AccountID, c.Kind, c.CauseKind, c.CauseID)
	if err == nil {
		return existing, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return CreditEntry{}, false, fmt.Errorf("%s: %w", what, err)
	}
	var closed int64
	if c.Close != nil {
		err := q.db.QueryRow(ctx, `WITH closed AS (
				UPDATE credit_lots l SET remaining = 0
				FROM (SELECT entry_id, remaining FROM credit_lots
					WHERE account_id = $1 AND source_kind = $2 AND source_id = $3 AND remaining > 0) old
				WHERE l.entry_id = old.entry_id
				RETURNING old.remaining)
			SELECT coalesce(sum(remaining), 0)::bigint FROM closed`,
			c.AccountID, c.Close.Source, c.Close.SourceID).Scan(&closed)
		if err != nil {
			return CreditEntry{}, false, fmt.Errorf("%s: close lots: %w", what, err)
		}
	}
	delta := -closed
	if c.Lot != nil {
		delta += c.Lot.Amount
	}
	if g := c.GiveBack; g != nil {
		tag, err := q.db.Exec(ctx, `UPDATE credit_lots SET remaining = remaining + $5, clawed_by = NULL
			WHERE account_id = $1 AND source_kind = $2 AND source_id = $3 AND clawed_by = $4
				AND remaining + $5 <= amount`,
			c.AccountID, g.Pack.Source, g.Pack.SourceID, g.EntryID, g.Taken)
		if err != nil {
			return CreditEntry{}, false, fmt.Errorf("%s: reopen lot: %w", what, err)
		}
		if tag.RowsAffected() != 1 {
			return CreditEntry{}, false, fmt.Errorf("%s: no lot of %s %s closed by entry %d", what, g.Pack.Source,
				g.Pack.SourceID, g.EntryID)
		}
		delta += g.Taken
	}
	ts := now.UTC()
	e, err := scanCreditEntry(q.db.QueryRow(ctx, `WITH acct AS (
			UPDATE credit_accounts SET balance = balance + $2, updated_at = $7,
				low_threshold = CASE WHEN $8 THEN $9 ELSE low_threshold END,
				period_cause = CASE WHEN $8 THEN $4 || ':' || $5 ELSE period_cause END
			WHERE id = $1 RETURNING balance)
		INSERT INTO credit_entries (account_id, kind, amount, balance_after, cause_kind, cause_id, reason, created_at)
		SELECT $1, $3, $2, acct.balance, $4, $5, $6, $7 FROM acct
		RETURNING `+creditEntryColumns,
		c.AccountID, delta, c.Kind, c.CauseKind, c.CauseID, c.Reason, ts, c.Period, c.LowThreshold))
	if err != nil {
		return CreditEntry{}, false, fmt.Errorf("%s: %w", what, notFound(err))
	}
	if c.Kind == CreditRefundClawback && c.Close != nil {
		_, err := q.db.Exec(ctx, `UPDATE credit_lots SET clawed_by = $4
			WHERE account_id = $1 AND source_kind = $2 AND source_id = $3 AND clawed_by IS NULL`,
			c.AccountID, c.Close.Source, c.Close.SourceID, e.ID)
		if err != nil {
			return CreditEntry{}, false, fmt.Errorf("%s: mark lots clawed back: %w", what, err)
		}
	}
	if c.Lot != nil {
		_, err := q.db.Exec(ctx, `INSERT INTO credit_lots (entry_id, account_id, source_kind, source_id, amount, remaining,
				period_start, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)`,
			e.ID, c.AccountID, c.Lot.Source, c.Lot.SourceID, c.Lot.Amount, nullTime(c.Lot.PeriodStart), nullTime(c.Lot.ExpiresAt), ts)
		if err != nil {
			return CreditEntry{}, false, fmt.Errorf("%s: open lot: %w", what, err)
		}
	}
	return e, true, nil
}

// nullTime is nil for the zero time, else t in UTC.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// PlanCredits is what a subscription's plan holds in an account.
type PlanCredits struct {
	// Remaining is what is left of the plan's open lots.
	Remaining int64
	// LatestPeriodStart is the start of the latest period applied, zero
	// when none was.
	LatestPeriodStart time.Time
	// Ended is set once the plan's credits expired (the subscription ended).
	Ended bool
}

// PlanCredits returns what subscription subscriptionID's plan holds in the
// account. Read it under the account's lock.
func (q *Queries) PlanCredits(ctx context.Context, accountID int64, subscriptionID string) (PlanCredits, error) {
	var p PlanCredits
	var latest *time.Time
	err := q.db.QueryRow(ctx, `SELECT
			(SELECT coalesce(sum(remaining), 0) FROM credit_lots
				WHERE account_id = $1 AND source_kind = 'plan' AND source_id = $2)::bigint,
			(SELECT max(period_start) FROM credit_lots WHERE account_id = $1 AND source_kind = 'plan' AND source_id = $2),
			EXISTS (SELECT 1 FROM credit_entries WHERE account_id = $1 AND kind = 'expire'
				AND cause_kind = 'subscription' AND cause_id = $2)`,
		accountID, subscriptionID).Scan(&p.Remaining, &latest, &p.Ended)
	if err != nil {
		return p, fmt.Errorf("read plan credits of %s: %w", subscriptionID, err)
	}
	if latest != nil {
		p.LatestPeriodStart = *latest
	}
	return p, nil
}

// Consume is one request to spend credits.
type Consume struct {
	Holder CreditHolder
	Amount int64
	// Key is the caller's idempotency key: one consumption per key.
	Key    string
	Reason string
}

// Consumption is the answer to a Consume: the first one given for its key.
type Consumption struct {
	Key     string
	Holder  CreditHolder
	Amount  int64
	Outcome ConsumeOutcome
	// Balance is the balance after the consumption, or the balance that
	// was short of Amount.
	Balance int64
	// EntryID is the consume entry, 0 when nothing was consumed.
	EntryID   int64
	CreatedAt time.Time
	// Replayed is set when the key had been answered before: this is that
	// answer, and nothing was written.
	Replayed bool
	// Low is set when this consumption left the balance below the
	// period's threshold and the period's notice was not marked sent: the
	// notice may be owed (NoteLowBalance decides under the lock).
	Low *LowNotice
}

// LowNotice is a balance that fell below its period's threshold.
type LowNotice struct {
	AccountID   int64
	PeriodCause string
	Threshold   int64
	Balance     int64
}

// ErrIdempotencyKeyReused is returned when a consume key comes back with
// another holder or amount than it was first used with.
var ErrIdempotencyKeyReused = errors.New("idempotency key reused with another request")

// ConsumeCredits spends c.Amount from c.Holder's balance, or answers what
// it answered the first time for c.Key. It is its own transaction: two
// statements pipelined in one round trip, which Postgres runs as one
// implicit transaction, so the balance's row lock is held only while the
// server runs them and commits, never across a network round trip (every
// consumer of the balance waits on that lock: its length is the
// throughput).
//
// The first statement takes the balance down with one conditional UPDATE
// (balance >= amount), which locks the row so concurrent consumers never
// overdraw, and records the key with its answer: consumed with the balance
// after, or insufficient with the balance that was short (then nothing
// else is written). A key already recorded is a unique violation: the
// transaction rolls back and the first answer is read and returned
// (Replayed); a concurrent request with the same key waits for the first
// to commit, then does the same. The second statement, for a consumed
// key, writes the consume entry, takes the credits off the open lots (the
// first to expire first, then the oldest) and links the entry to the
// answer. It reads the lots after the first statement took the lock: READ
// COMMITTED takes a snapshot per statement, so it sees every earlier
// holder's allocation. In each lot, before is what the lots ahead of it
// hold; the lot gives what the amount still needs after them, up to its
// remainder.
//
// When the consumption leaves the balance below its period's threshold
// and the period's notice is not marked sent, Low is set: the caller
// confirms and marks it with NoteLowBalance in a transaction of its own.
func (db *DB) ConsumeCredits(ctx context.Context, c Consume, now time.Time) (Consumption, error) {
	if c.Amount <= 0 || c.Key == "" || c.Holder.UserID == "" {
		return Consumption{}, errors.New("consume credits: amount > 0, key and user id are required")
	}
	ts := now.UTC()
	res := Consumption{Key: c.Key, Holder: c.Holder, Amount: c.Amount, CreatedAt: ts}
	b := &pgx.Batch{}
	b.Queue(`WITH acct AS (
			UPDATE credit_accounts SET balance = balance - $4, updated_at = $5
			WHERE user_id = $2 AND organization_id = $3 AND balance >= $4
			RETURNING id, balance, low_threshold, period_cause, low_noticed_cause),
		answer AS (
			INSERT INTO credit_consumptions (idempotency_key, user_id, organization_id, amount, outcome, balance, created_at)
			SELECT $1, $2, $3, $4,
				CASE WHEN EXISTS (SELECT 1 FROM acct) THEN 'consumed' ELSE 'insufficient' END,
				coalesce((SELECT balance FROM acct),
					(SELECT balance FROM credit_accounts WHERE user_id = $2 AND organization_id = $3), 0),
				$5
			RETURNING outcome, balance)
		SELECT answer.outcome, answer.balance, acct.id, acct.low_threshold, coalesce(acct.period_cause, ''),
			coalesce(acct.low_noticed_cause, '')
		FROM answer LEFT JOIN acct ON true`,
		c.Key, c.Holder.UserID, c.Holder.OrganizationID, c.Amount, ts)
	b.Queue(`WITH taken AS (
			SELECT a.id AS account_id, cs.balance FROM credit_consumptions cs
			JOIN credit_accounts a ON a.user_id = cs.user_id AND a.organization_id = cs.organization_id
			WHERE cs.idempotency_key = $1 AND cs.outcome = 'consumed' AND cs.entry_id IS NULL),
		entry AS (
			INSERT INTO credit_entries (account_id, kind, amount, balance_after, cause_kind, cause_id, reason, created_at)
			SELECT account_id, 'consume', -$2::bigint, balance, 'consumption', $1, $3, $4 FROM taken RETURNING id),
		ordered AS (
			SELECT entry_id, remaining,
				sum(remaining) OVER (ORDER BY expires_at ASC NULLS LAST, entry_id) - remaining AS before
			FROM credit_lots WHERE account_id = (SELECT account_id FROM taken) AND remaining > 0),
		allocated AS (
			UPDATE credit_lots l SET remaining = l.remaining - least(o.remaining, $2 - o.before)
			FROM ordered o WHERE l.entry_id = o.entry_id AND o.before < $2
			RETURNING least(o.remaining, $2 - o.before) AS taken),
		linked AS (
			UPDATE credit_consumptions SET entry_id = (SELECT id FROM entry)
			WHERE idempotency_key = $1 AND EXISTS (SELECT 1 FROM entry))
		SELECT (SELECT id FROM entry), (SELECT coalesce(sum(taken), 0) FROM allocated)::bigint`,
		c.Key, c.Amount, c.Reason, ts)

	var acctID *int64
	var threshold *int64
	var period, noticed string
	var entryID *int64
	var allocated int64
	br := db.Pool.SendBatch(ctx, b)
	err := br.QueryRow().Scan(&res.Outcome, &res.Balance, &acctID, &threshold, &period, &noticed)
	if err == nil {
		err = br.QueryRow().Scan(&entryID, &allocated)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "credit_consumptions_pkey" {
		return db.replayConsumption(ctx, c)
	}
	if err != nil {
		return res, fmt.Errorf("consume credits: %w", err)
	}
	if res.Outcome == ConsumeInsufficient {
		return res, nil
	}
	switch {
	case entryID == nil || acctID == nil:
		return res, fmt.Errorf("consume credits: key %q was consumed without an entry", c.Key)
	case allocated != c.Amount:
		return res, fmt.Errorf("consume credits: account %d's lots gave %d of %d", *acctID, allocated, c.Amount)
	}
	res.EntryID = *entryID
	if DecideLowNotice(res.Balance, threshold, period, noticed) {
		res.Low = &LowNotice{AccountID: *acctID, PeriodCause: period, Threshold: *threshold, Balance: res.Balance}
	}
	return res, nil
}

// NoteLowBalance decides again, under the account's row lock in q's
// transaction, whether the account owes its period's low-balance notice
// (DecideLowNotice on its balance now), and if so marks it sent and
// returns it; the caller schedules the notice in the same transaction.
// It returns nil when nothing is owed (a top-up came, or another
// consumption noted it first).
func (q *Queries) NoteLowBalance(ctx context.Context, accountID int64) (*LowNotice, error) {
	a, err := scanCreditAccount(q.db.QueryRow(ctx, `SELECT `+creditAccountColumns+` FROM credit_accounts
		WHERE id = $1 FOR UPDATE`, accountID))
	if err != nil {
		return nil, fmt.Errorf("note low balance of account %d: %w", accountID, notFound(err))
	}
	if !DecideLowNotice(a.Balance, a.LowThreshold, a.PeriodCause, a.LowNoticedCause) {
		return nil, nil
	}
	if _, err := q.db.Exec(ctx, `UPDATE credit_accounts SET low_noticed_cause = period_cause WHERE id = $1`, a.ID); err != nil {
		return nil, fmt.Errorf("note low balance of account %d: %w", accountID, err)
	}
	return &LowNotice{AccountID: a.ID, PeriodCause: a.PeriodCause, Threshold: *a.LowThreshold, Balance: a.Balance}, nil
}

// replayConsumption returns the answer first given for c.Key, or
// ErrIdempotencyKeyReused when c is not the request it answered.
func (db *DB) replayConsumption(ctx context.Context, c Consume) (Consumption, error) {
	res := Consumption{Replayed: true}
	var entryID *int64
	err := db.Pool.QueryRow(ctx, `SELECT idempotency_key, user_id, organization_id, amount, outcome, balance, entry_id, created_at
		FROM credit_consumptions WHERE idempotency_key = $1`, c.Key).Scan(&res.Key, &res.Holder.UserID,
		&res.Holder.OrganizationID, &res.Amount, &res.Outcome, &res.Balance, &entryID, &res.CreatedAt)
	if err != nil {
		return res, fmt.Errorf("consume credits: replay key: %w", err)
	}
	if entryID != nil {
		res.EntryID = *entryID
	}
	if res.Holder != c.Holder || res.Amount != c.Amount {
		return res, ErrIdempotencyKeyReused
	}
	return res, nil
}

// DecideLowNotice reports whether a consumption that left the balance at
// after owes the low-balance notice: the period has a threshold, the
// balance is below it, and the period's notice is not sent yet. A period
// that began below its threshold is noticed at its first consumption.
func DecideLowNotice(after int64, threshold *int64, periodCause, noticedCause string) bool {
	if threshold == nil || periodCause == "" || periodCause == noticedCause {
		return false
	}
	return after < *threshold
}

// nullID is nil for 0, else id.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// GetCreditAccountByID returns the account with id, or ErrNotFound.
func (q *Queries) GetCreditAccountByID(ctx context.Context, id int64) (CreditAccount, error) {
	a, err := scanCreditAccount(q.db.QueryRow(ctx, `SELECT `+creditAccountColumns+` FROM credit_accounts WHERE id = $1`, id))
	return a, notFound(err)
}
