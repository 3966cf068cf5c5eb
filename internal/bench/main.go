// Command bench runs paymentd's benchmarks and writes bench-results.json:
// each result is a measurement beside a baseline measured in the same run
// on the same machine, and their ratio, so a noisy machine moves both.
//
// It needs PAYMENTD_TEST_DATABASE_URL (`make bench` starts a local cluster).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/pprof"
	"time"

	"github.com/paymentd/paymentd/store"
)

// Result is one line of bench-results.json.
type Result struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	// HigherIsBetter says how to read the ratio.
	HigherIsBetter bool `json:"higher_is_better"`
	// Target is the goal for Value (or, with TargetRatio, for Ratio); 0 means none.
	Target      float64 `json:"target,omitempty"`
	TargetRatio float64 `json:"target_ratio,omitempty"`
	Note        string  `json:"note,omitempty"`
}

func (r Result) met() bool {
	ok := true
	if r.Target != 0 {
		if r.HigherIsBetter {
			ok = r.Value >= r.Target
		} else {
			ok = r.Value <= r.Target
		}
	}
	if r.TargetRatio != 0 {
		if r.HigherIsBetter {
			ok = ok && r.Ratio >= r.TargetRatio
		} else {
			ok = ok && r.Ratio <= r.TargetRatio
		}
	}
	return ok
}

// benchmark is one named measurement.
type benchmark struct {
	name string
	run  func(ctx context.Context, env *benchEnv) ([]Result, error)
}

// benchEnv gives a benchmark a fresh migrated database.
type benchEnv struct {
	admin string
	log   *slog.Logger
}

// freshDB creates a migrated database for one benchmark; drop removes it.
func (e *benchEnv) freshDB(ctx context.Context) (db *store.DB, drop func(), err error) {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := "paymentd_bench_" + hex.EncodeToString(b)
	admin, err := store.ConnectAdmin(ctx, e.admin)
	if err != nil {
		return nil, nil, err
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, nil, err
	}
	u, _ := url.Parse(e.admin)
	u.Path = "/" + name
	db, err = store.Open(ctx, u.String(), 40)
	if err != nil {
		return nil, nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		return nil, nil, err
	}
	return db, func() {
		db.Close()
		if c, err := store.ConnectAdmin(context.Background(), e.admin); err == nil {
			_ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close()
		}
	}, nil
}

func benchmarks() []benchmark {
	return []benchmark{
		{"steps", benchSteps},
		{"webhook", benchWebhook},
		{"backfill", benchBackfill},
		{"access", benchAccessDrift},
		{"console", benchConsole},
		{"degraded", benchDegraded},
		{"stock", benchStock},
		{"subscriptions", benchSubscriptions},
		{"credits", benchCredits},
		{"e2e", benchE2E},
	}
}

func main() {
	out := flag.String("out", "bench-results.json", "where to write the results")
	only := flag.String("only", "", "run only the benchmark with this name")
	flag.IntVar(&e2ePurchases, "e2e-purchases", e2ePurchases, "purchases the end-to-end throughput run pays")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to `file`")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	admin := os.Getenv("PAYMENTD_TEST_DATABASE_URL")
	if admin == "" {
		fmt.Fprintln(os.Stderr, "bench: PAYMENTD_TEST_DATABASE_URL is not set; use `make bench`")
		os.Exit(2)
	}
	ctx := context.Background()
	env := &benchEnv{admin: admin, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	var results []Result
	failed := false
	for _, b := range benchmarks() {
		if *only != "" && b.name != *only {
			continue
		}
		start := time.Now()
		rs, err := b.run(ctx, env)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", b.name, err)
			failed = true
			continue
		}
		for _, r := range rs {
			mark := "ok  "
			if !r.met() {
				mark = "MISS"
			}
			fmt.Printf("%s %-40s %12.1f %-10s baseline %12.1f  ratio %.2f  %s\n", mark, r.Name, r.Value, r.Unit, r.Baseline, r.Ratio, r.Note)
		}
		fmt.Printf("     (%s took %s)\n", b.name, time.Since(start).Round(time.Millisecond))
		results = append(results, rs...)
	}
	data, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
