package stripeapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// stripeMock runs stripe-mock, Stripe's official mock that validates every
// request against the OpenAPI spec embedded in it, for the duration of the
// test, and returns its base URL. The binary comes from the tool pinned in
// go.mod (`go tool -n stripe-mock` builds it into the build cache once and
// prints its path), so no network is needed. It listens on a port the
// kernel picks, read back from its output, so parallel runs never collide.
func stripeMock(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBinary(), "tool", "-n", "stripe-mock").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("build stripe-mock: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("build stripe-mock: %v", err)
	}
	bin := strings.TrimSpace(string(out))

	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	addrRE := regexp.MustCompile(`Listening for HTTP at address: (\S+)`)
	found := make(chan string, 1)
	var early strings.Builder // its output until the address, for a failure message
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				_, _ = io.Copy(io.Discard, stdout) // keep the pipe drained
				return
			}
			early.WriteString(sc.Text() + "\n")
		}
		close(found) // it exited without listening
	}()
	var addr string
	select {
	case a, ok := <-found:
		if !ok {
			t.Fatalf("stripe-mock exited without listening:\n%s", early.String())
		}
		addr = a
	case <-time.After(time.Minute):
		t.Fatal("stripe-mock did not report its HTTP address within a minute")
	}
	base := "http://" + addr

	// Wait until it answers an authenticated request.
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/charges/ch_contract", nil)
		req.SetBasicAuth("sk_test_contract", "")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock at %s did not answer: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goBinary is the go command that runs this test.
func goBinary() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	return "go"
}
