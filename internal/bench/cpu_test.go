package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCPUShare(t *testing.T) {
	from := cpuSample{machine: 100, process: 10, self: 5}
	to := cpuSample{machine: 100 + 18, process: 10 + 7, self: 5 + 3}
	wall := 10 * time.Second
	got := cpuShare(from, to, wall, 2000)
	cores := runtime.NumCPU()
	for _, want := range []string{
		"CPU meanwhile: 18.0 s of the ",
		"9.0 ms a purchase: the daemon 3.5, the bench's emulator and fakes 1.5, the rest (PostgreSQL) 4.0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("cpuShare = %q, want it to contain %q", got, want)
		}
	}
	if cores == 2 && !strings.Contains(got, "of the 2 cores' 20.0 s (90% busy)") {
		t.Errorf("cpuShare = %q on 2 cores", got)
	}
}

func TestSampleCPUCountsThisProcess(t *testing.T) {
	a, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until getrusage counts 0.2 s (with a deadline); /proc counts in
	// ticks of 10 ms, so it must show at least half of that.
	deadline := time.Now().Add(10 * time.Second)
	var b cpuSample
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			if b, err = sampleCPU(os.Getpid()); err != nil {
				t.Fatal(err)
			}
			if b.self-a.self >= 0.2 || time.Now().After(deadline) {
				break
			}
		}
	}
	if b.self-a.self < 0.2 {
		t.Fatalf("getrusage went from %.2f to %.2f s while this test spun for 10 s", a.self, b.self)
	}
	if b.process-a.process < 0.1 || b.machine-a.machine < 0.1 {
		t.Errorf("samples %+v then %+v: /proc should count the spin in this process and in the machine", a, b)
	}
}
