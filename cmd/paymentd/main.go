// Command paymentd runs everything after the "Pay" button: the HTTP API,
// the durable step workers and the Stripe reconciler, plus the operators'
// one-off commands. main only parses the command line and maps outcomes to
// exit codes; each command builds its dependencies explicitly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/paymentd/paymentd/internal/config"
)

// Exit codes, documented in README.md.
const (
	exitOK       = 0 // success; for reconcile: converged
	exitFailure  = 1 // a run-time failure; for reconcile: errors remain
	exitUsage    = 2 // bad command line or invalid configuration
	exitSchema   = 3 // the database is behind: run `paymentd migrate`
	exitNotFound = 4 // the named purchase or step does not exist
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what every command receives: its output streams and environment.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stdin is read by commands that take a secret (operators hash).
	stdin io.Reader
}

func commands() []command {
	return []command{
		{"serve", "run the HTTP API, step workers and reconciler", runServe},
		{"dev", "run the whole dev stack on a throwaway local Postgres (make run)", runDev},
		{"migrate", "apply pending database migrations", runMigrate},
		{"reconcile", "one-off reconcile pass: reconcile [--since 72h] [--dry-run] [--json]", runReconcile},
		{"purchases", "show a purchase and its steps: purchases show <id | session id | email>", runPurchases},
		{"steps", "list or retry steps: steps list --failed, steps retry <id | --all-failed>", runSteps},
		{"orders", "show an order (a cart's checkout): orders show <order id | session id | payment intent id>", runOrders},
		{"stock", "limited products' stock: stock set <product> <units>, stock list", runStock},
		{"emails", "render every email template to HTML: emails preview --out DIR", runEmails},
		{"catalog", "make Stripe's products and prices match config.yaml: catalog sync [--dry-run]", runCatalog},
		{"operators", "print a console operator's password hash: operators hash (password from a prompt or stdin)", runOperators},
		{"version", "print the version", runVersion},
		{"healthcheck", "probe /healthz (the container HEALTHCHECK)", runHealthcheck},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: paymentd <command> [--config FILE] [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stdin: os.Stdin})
	stop()
	os.Exit(code)
}

// run executes one command line and returns its exit code.
func run(ctx context.Context, args []string, env *cliEnv) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		if err == nil {
			return exitOK
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintf(env.stderr, "paymentd %s: %v\n", c.name, ee.err)
			}
			return ee.code
		}
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(env.stderr, "paymentd %s: %v\n", c.name, err)
		return exitFailure
	}
	fmt.Fprintf(env.stderr, "paymentd: unknown command %q\n\n", args[0])
	usage(env.stderr)
	return exitUsage
}

// flags returns a flag set for a command with the common --config flag.
func flags(name string, env *cliEnv) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("paymentd "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	path := fs.String("config", "config.yaml", "configuration `file`")
	return fs, path
}

// parse parses a command's flags, which may come before, between or after
// its positional arguments; a bad flag is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return withCode(exitUsage, errors.New(""))
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// Leave the positional arguments as fs.Args().
	return fs.Parse(append([]string{"--"}, positional...))
}

// loadConfig loads the configuration; an invalid one is a usage error
// that lists every problem.
func loadConfig(path string, env *cliEnv) (*config.Config, error) {
	cfg, err := config.Load(path, env.getenv)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	return cfg, nil
}
