package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestOutboundClientsReuseTheirConnections: eight steps calling one host at
// once, round after round, open about eight connections and reuse them.
// With Go's default transport (2 idle connections per host) every round
// opened six new ones: a TCP (and, to SendGrid or GitHub, a TLS) handshake
// per call.
func TestOutboundClientsReuseTheirConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	client := &http.Client{Transport: outboundTransport()}
	const inFlight, rounds = 8, 20
	for range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, inFlight)
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := client.Post(srv.URL, "application/json", nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// A connection goes back to the idle pool a moment after its answer is
	// read, so a request of the next round may dial one more now and then;
	// the default transport dials about six every round (120 here).
	if n, most := opened.Load(), int64(2*inFlight); n > most {
		t.Fatalf("%d connections opened for %d rounds of %d requests at once; want at most %d", n, rounds, inFlight, most)
	}
}
