package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/console"
)

func TestOperatorsHashReadsStdinAndPrintsAHashTheConsoleAccepts(t *testing.T) {
	t.Parallel()
	const password = "correct horse battery staple"
	var stdout, stderr bytes.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" },
		stdin: strings.NewReader(password + "\n")}
	if code := run(context.Background(), []string{"operators", "hash"}, env); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	hash := strings.TrimSpace(stdout.String())
	if !config.IsPasswordHash(hash) || strings.Contains(hash, password) {
		t.Fatalf("printed %q", hash)
	}
	if ok, err := console.VerifyPassword(hash, password); !ok || err != nil {
		t.Errorf("the printed hash does not verify the password: %v, %v", ok, err)
	}
	if ok, _ := console.VerifyPassword(hash, password+"\n"); ok {
		t.Error("the end of line became part of the password")
	}

	for _, c := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"operators", "hash"}, "short\n", "at least 12 characters"},
		{[]string{"operators", "hash"}, "", "at least 12 characters"},
		{[]string{"operators"}, password, "usage: paymentd operators hash"},
		{[]string{"operators", "list"}, password, "usage: paymentd operators hash"},
	} {
		stdout.Reset()
		stderr.Reset()
		env.stdin = strings.NewReader(c.stdin)
		if code := run(context.Background(), c.args, env); code != exitUsage || !strings.Contains(stderr.String(), c.want) ||
			stdout.Len() != 0 {
			t.Errorf("%v with %q: exit %d, stderr %q, stdout %q", c.args, c.stdin, code, stderr.String(), stdout.String())
		}
	}
}
