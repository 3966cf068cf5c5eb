package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/prometheus/client_golang/prometheus"
)

// runReconcile is the operators' one-off pass, also the backfill after an
// outage: it lists what Stripe knows since --since, compares, fixes, and
// prints what differed and what it did.
func runReconcile(ctx context.Context, env *cliEnv, args []string) error {
	fs, path := flags("reconcile", env)
	since := fs.Duration("since", 72*time.Hour, "how far back to list Stripe's sessions, refunds and disputes")
	dry := fs.Bool("dry-run", false, "compute every difference and change nothing anywhere")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "record and grant without any customer email (a first deploy, a backfill)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *since <= 0 {
		return withCode(exitUsage, errors.New("--since must be a positive duration such as 72h"))
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, env.stderr)
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := requireCurrentSchema(ctx, db); err != nil {
		return err
	}
	a, err := newAppWith(cfg, log, db, prometheus.NewRegistry(), appOptions{quiet: *quiet})
	if err != nil {
		return err
	}
	stopProgress := showProgress(env.stderr, a.rec.Progress)
	rep, err := a.rec.RunPass(ctx, "manual", reconcile.PassOptions{
		Events: true, Lists: true, Since: a.clock.Now().Add(-*since), Pending: true, Hints: true, Retries: true,
		Access: true, DryRun: *dry, Wait: true,
	})
	stopProgress()
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSONOut(env.stdout, rep); err != nil {
			return err
		}
	} else {
		printReport(env.stdout, rep)
	}
	if !rep.Converged() {
		return withCode(exitFailure, fmt.Errorf("%d object(s) could not be reconciled; they are retried by the next pass", len(rep.Errors)+rep.ErrorsOmitted))
	}
	return nil
}

func printReport(w io.Writer, rep *reconcile.Report) {
	mode := ""
	if rep.DryRun {
		mode = " (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "reconciled in %s%s: %s\n", rep.Duration.Round(time.Millisecond), mode, rep.Summary())
	if len(rep.Healed) > 0 {
		kinds := make([]string, 0, len(rep.Healed))
		for k := range rep.Healed {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		fmt.Fprint(w, "healed without a webhook:")
		for _, k := range kinds {
			fmt.Fprintf(w, " %s %d", k, rep.Healed[k])
		}
		fmt.Fprintln(w)
	}
	if len(rep.Skipped) > 0 {
		reasons := make([]string, 0, len(rep.Skipped))
		for why := range rep.Skipped {
			reasons = append(reasons, string(why))
		}
		sort.Strings(reasons)
		fmt.Fprint(w, "skipped, not paymentd's:")
		for _, why := range reasons {
			fmt.Fprintf(w, " %s %d", why, rep.Skipped[reconcile.SkipReason(why)])
		}
		fmt.Fprintln(w)
	}
	if len(rep.Changes) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nWHAT\tKIND\tOBJECT\tPURCHASE\tWEBHOOK SEEN")
		for _, c := range rep.Changes {
			seen := "yes"
			if c.Unannounced {
				seen = "no"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.What, c.Kind, c.ObjectID, c.PurchaseID, seen)
		}
		tw.Flush()
		if rep.ChangesOmitted > 0 {
			fmt.Fprintf(w, "... and %d more changes (counted above)\n", rep.ChangesOmitted)
		}
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors:")
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "  %s %s: %s\n", e.Kind, e.ObjectID, e.Error)
		}
		if rep.ErrorsOmitted > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", rep.ErrorsOmitted)
		}
	}
}

// showProgress redraws a progress line on w once a second while a long
// pass runs, when w is a terminal (never into a file or a pipe), and
// returns the function that stops it and clears the line.
func showProgress(w io.Writer, progress func() reconcile.Progress) (stop func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-done:
				if shown {
					fmt.Fprint(f, "\r\033[K")
				}
				return
			case <-t.C:
				if p := progress(); p.Running && p.Elapsed >= 2*time.Second {
					fmt.Fprint(f, "\r\033[K"+progressLine(p))
					shown = true
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// progressLine is one line about a running pass: objects seen, their rate,
// and in a walk of the lists how far it has come and the time left.
func progressLine(p reconcile.Progress) string {
	parts := []string{fmt.Sprintf("reconciling: %d objects seen", p.Seen), fmt.Sprintf("%.0f/s", p.PerSecond)}
	if p.Phase != "" {
		parts = append(parts, fmt.Sprintf("%s %d%%", p.Phase, int(p.Done*100)))
		if p.Remaining > 0 {
			parts = append(parts, "about "+p.Remaining.Round(time.Second).String()+" left")
		}
	}
	if p.InFlight > 0 || p.Backlog > 0 {
		parts = append(parts, fmt.Sprintf("%d in flight, %d queued", p.InFlight, p.Backlog))
	}
	return strings.Join(parts, " · ")
}
