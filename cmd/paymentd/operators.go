// The operators command: `paymentd operators hash` turns a password into
// the hash console.operators[].password_hash holds, so a password is never
// written into config.yaml or typed on a command line.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/paymentd/paymentd/internal/console"
	"golang.org/x/term"
)

const operatorsUsage = "usage: paymentd operators hash   (reads the password from a terminal prompt or from stdin)"

// maxPassword bounds a password read from stdin.
const maxPassword = 1024

func runOperators(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 1 || args[0] != "hash" {
		return withCode(exitUsage, errors.New(operatorsUsage))
	}
	password, err := readPassword(env)
	if err != nil {
		return withCode(exitUsage, err)
	}
	hash, err := console.HashPassword(password)
	if err != nil {
		return withCode(exitUsage, err)
	}
	fmt.Fprintln(env.stdout, hash)
	return nil
}

// readPassword prompts twice without echo on a terminal; otherwise it
// reads one line from stdin (its end of line is not part of the password).
func readPassword(env *cliEnv) (string, error) {
	if f, ok := env.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(env.stderr, "Password: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(env.stderr, "Again: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the two passwords differ")
		}
		return checkPassword(string(first))
	}
	line, err := bufio.NewReaderSize(io.LimitReader(env.stdin, maxPassword+2), maxPassword+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

// checkPassword refuses a password too short to protect an admin surface.
func checkPassword(p string) (string, error) {
	switch {
	case len(p) > maxPassword:
		return "", fmt.Errorf("the password is longer than %d bytes", maxPassword)
	case len(p) < 12:
		return "", errors.New("the password must be at least 12 characters")
	}
	return p, nil
}
