// The emails command: operators render every template with sample data
// to check a brand or a template override before customers see it.
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
)

const emailsUsage = "usage: paymentd emails preview --out DIR [--config FILE]"

// runEmails renders every email template with sample data into a directory,
// so a brand or a template override can be checked in a browser before a
// customer sees it.
func runEmails(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "preview" {
		return withCode(exitUsage, errors.New(emailsUsage))
	}
	fs, path := flags("emails preview", env)
	out := fs.String("out", "", "`directory` to write the previews to (created if missing)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return withCode(exitUsage, errors.New(emailsUsage))
	}
	cfg, err := loadConfig(*path, env)
	if err != nil {
		return err
	}
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		return withCode(exitUsage, err) // a brand or template problem is a configuration problem
	}
	written, err := mail.Preview(renderer, *out)
	if err != nil {
		return err
	}
	for _, p := range written {
		fmt.Fprintln(env.stdout, p)
	}
	return nil
}
