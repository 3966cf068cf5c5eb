package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

// opsDB loads the configuration and opens a database whose schema is current.
func opsDB(ctx context.Context, env *cliEnv, path string) (*store.DB, error) {
	cfg, err := loadConfig(path, env)
	if err != nil {
		return nil, err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := requireCurrentSchema(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// purchaseView is a purchase with its steps and refunds, as `purchases show` prints it.
type purchaseView struct {
	Purchase store.Purchase `json:"purchase"`
	Refunds  []store.Refund `json:"refunds"`
	Steps    []store.Step   `json:"steps"`
}

func runPurchases(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "show" {
		return withCode(exitUsage, errors.New("usage: paymentd purchases show <purchase id | session id | email> [--json]"))
	}
	fs, path := flags("purchases show", env)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return withCode(exitUsage, errors.New("usage: paymentd purchases show <purchase id | session id | email> [--json]"))
	}
	db, err := opsDB(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	views, err := lookupPurchases(ctx, db, fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(env.stdout, views)
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		printPurchase(env.stdout, v)
	}
	return nil
}

func lookupPurchases(ctx context.Context, db *store.DB, key string) ([]purchaseView, error) {
	var ps []store.Purchase
	switch {
	case strings.Contains(key, "@"):
		found, err := db.PurchasesByEmail(ctx, key)
		if err != nil {
			return nil, err
		}
		ps = found
	case strings.HasPrefix(key, "cs_"):
		p, err := db.PurchaseBySession(ctx, key)
		if err == nil {
			ps = append(ps, p)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	default:
		if _, err := uuid.Parse(key); err != nil {
			return nil, withCode(exitUsage, fmt.Errorf("%q is neither a purchase id, a Stripe checkout session id (cs_...) nor an email", key))
		}
		p, err := db.GetPurchase(ctx, key)
		if err == nil {
			ps = append(ps, p)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if len(ps) == 0 {
		return nil, withCode(exitNotFound, fmt.Errorf("no purchase matches %q", key))
	}
	views := make([]purchaseView, 0, len(ps))
	for _, p := range ps {
		refunds, err := db.PurchaseRefunds(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		steps, err := db.PurchaseSteps(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		views = append(views, purchaseView{Purchase: p, Refunds: refunds, Steps: steps})
	}
	return views, nil
}

func printPurchase(w io.Writer, v purchaseView) {
	p := v.Purchase
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, val string) { fmt.Fprintf(tw, "%s\t%s\n", k, val) }
	row("purchase", p.ID)
	row("status", string(p.Status))
	row("product", fmt.Sprintf("%s × %d", p.ProductKey, p.Quantity))
	row("amount", fmt.Sprintf("%d %s (refunded %d)", p.AmountTotal, strings.ToUpper(p.Currency), p.AmountRefunded))
	row("user", deref(p.UserID))
	row("email", deref(p.Email))
	row("access", string(p.AccessState)+refSuffix(p.AccessRef))
	row("stripe session", p.StripeSessionID)
	row("payment intent", deref(p.StripePaymentIntentID))
	row("created", stamp(&p.CreatedAt))
	row("completed", stamp(p.CompletedAt))
	tw.Flush()
	if len(v.Refunds) > 0 {
		fmt.Fprintln(w, "\nrefunds:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tAMOUNT\tSTATUS\tCREATED")
		for _, r := range v.Refunds {
			fmt.Fprintf(tw, "  %s\t%d %s\t%s\t%s\n", r.ID, r.Amount, strings.ToUpper(r.Currency), r.Status, stamp(&r.CreatedAt))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nsteps:")
	printSteps(w, v.Steps, false)
}

func printSteps(w io.Writer, steps []store.Step, withSubject bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "  ID\tPIPELINE\tSTEP\tSTATUS\tATTEMPTS\tNEXT RUN / FINISHED\tLAST ERROR"
	if withSubject {
		header = "  ID\tSUBJECT\tPIPELINE\tSTEP\tSTATUS\tATTEMPTS\tNEXT RUN / FINISHED\tLAST ERROR"
	}
	fmt.Fprintln(tw, header)
	for _, s := range steps {
		when := stamp(&s.RunAt)
		if s.FinishedAt != nil {
			when = stamp(s.FinishedAt)
		}
		errText := strings.ReplaceAll(deref(s.LastError), "\n", " ")
		if len(errText) > 80 {
			errText = errText[:77] + "..."
		}
		cols := []string{strconv.FormatInt(s.ID, 10)}
		if withSubject {
			cols = append(cols, subject(s))
		}
		cols = append(cols, s.Pipeline, s.Name, string(s.Status), fmt.Sprintf("%d/%d", s.Attempts, s.MaxAttempts), when, errText)
		fmt.Fprintln(tw, "  "+strings.Join(cols, "\t"))
	}
	tw.Flush()
}

// stepsUsage is the steps command's usage line.
const stepsUsage = "usage: paymentd steps list [--failed | --status S] [--limit N] [--json] | paymentd steps retry <step id> | --all-failed"

func runSteps(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return withCode(exitUsage, errors.New(stepsUsage))
	}
	switch args[0] {
	case "list":
		return runStepsList(ctx, env, args[1:])
	case "retry":
		return runStepsRetry(ctx, env, args[1:])
	}
	return withCode(exitUsage, errors.New(stepsUsage))
}

// runStepsList prints the steps in one status.
func runStepsList(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("steps list", env)
	failed := fs.Bool("failed", false, "list failed steps (same as --status failed)")
	status := fs.String("status", "", "list steps in this `status` (waiting, pending, running, done, failed, canceled)")
	limit := fs.Int("limit", 100, "at most this many steps")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *failed {
		*status = string(store.StepFailed)
	}
	if *status == "" {
		return withCode(exitUsage, errors.New("say which steps: --failed or --status S"))
	}
	if !slices.Contains(store.StepStatuses, store.StepStatus(*status)) {
		return withCode(exitUsage, fmt.Errorf("unknown step status %q (one of %v)", *status, store.StepStatuses))
	}
	db, err := opsDB(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	steps, err := db.StepsByStatus(ctx, store.StepStatus(*status), *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(env.stdout, steps)
	}
	if len(steps) == 0 {
		fmt.Fprintf(env.stdout, "no %s steps\n", *status)
		return nil
	}
	printSteps(env.stdout, steps, true)
	return nil
}

// runStepsRetry makes one failed step, or every failed step, pending again.
func runStepsRetry(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("steps retry", env)
	all := fs.Bool("all-failed", false, "retry every failed step")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *all == (fs.NArg() == 1) || fs.NArg() > 1 {
		return withCode(exitUsage, errors.New(stepsUsage))
	}
	db, err := opsDB(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	now := clock.Real{}.Now()
	var ids []int64
	if *all {
		if ids, err = db.RetryAllFailedSteps(ctx, now); err != nil {
			return err
		}
	} else {
		s, err := retryOneStep(ctx, db, fs.Arg(0), now)
		if err != nil {
			return err
		}
		ids = []int64{s.ID}
		if !*asJSON {
			fmt.Fprintf(env.stdout, "step %d: %s %s of %s\n", s.ID, s.Pipeline, s.Name, subject(s))
		}
	}
	if *asJSON {
		return writeJSONOut(env.stdout, map[string][]int64{"retried": ids})
	}
	fmt.Fprintf(env.stdout, "retrying %d step(s): a worker picks them up now\n", len(ids))
	return nil
}

// retryOneStep makes the failed step arg names pending again.
func retryOneStep(ctx context.Context, db *store.DB, arg string, now time.Time) (store.Step, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return store.Step{}, withCode(exitUsage, fmt.Errorf("step id %q is not a number", arg))
	}
	s, err := db.GetStep(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return s, withCode(exitNotFound, fmt.Errorf("no step %d", id))
	} else if err != nil {
		return s, err
	}
	ok, err := db.RetryFailedStep(ctx, id, now)
	if err != nil {
		return s, err
	}
	if !ok {
		return s, withCode(exitUsage, fmt.Errorf("step %d is %s; only failed steps can be retried", id, s.Status))
	}
	return s, nil
}

// subject names what a step belongs to: "purchase <id>", "subscription
// <id>", "order <id>", or "global".
func subject(s store.Step) string {
	if s.SubjectID == nil {
		return string(store.SubjectGlobal)
	}
	return string(s.SubjectKind) + " " + *s.SubjectID
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func refSuffix(s *string) string {
	if s == nil {
		return ""
	}
	return " (" + *s + ")"
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
