// Command devpgctl starts and stops the throwaway PostgreSQL cluster that
// `make test` uses: `devpgctl start DIR` prints a connection URL for an
// admin role; `devpgctl stop DIR` stops it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/paymentd/paymentd/internal/devpg"
)

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "start" && os.Args[1] != "stop") {
		fmt.Fprintln(os.Stderr, "usage: devpgctl start|stop DIR")
		os.Exit(2)
	}
	c, err := devpg.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "devpgctl:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	if os.Args[1] == "stop" {
		err = c.Stop(ctx)
	} else {
		var url string
		url, _, err = c.Start(ctx, "postgres")
		if err == nil {
			fmt.Println(url)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devpgctl:", err)
		os.Exit(1)
	}
}
