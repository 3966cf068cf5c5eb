package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runHealthcheck probes a URL and exits 0 on a 2xx: the container
// HEALTHCHECK, for images with no shell or curl.
func runHealthcheck(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := flags("healthcheck", env)
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "`URL` to probe")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return withCode(exitUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", *url, resp.Status)
	}
	return nil
}
