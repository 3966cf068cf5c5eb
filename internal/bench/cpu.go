package main

import (
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// cpuSample is the CPU time spent so far, in seconds: by the whole machine
// (user, nice, system, irq and softirq; not idle, I/O wait or stolen), by
// one process of ours (the daemon) and by the bench itself (its emulator
// and fakes).
type cpuSample struct {
	machine, process, self float64
}

// sampleCPU reads the machine's and pid's CPU times from /proc (through
// procfs) and the bench's from getrusage.
func sampleCPU(pid int) (cpuSample, error) {
	var s cpuSample
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return s, err
	}
	st, err := fs.Stat()
	if err != nil {
		return s, err
	}
	c := st.CPUTotal
	s.machine = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
	proc, err := fs.Proc(pid)
	if err != nil {
		return s, err
	}
	ps, err := proc.Stat()
	if err != nil {
		return s, err
	}
	s.process = ps.CPUTime()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, err
	}
	s.self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	return s, nil
}

// cpuShare describes the CPU a window of n purchases took, from two
// samples: how busy the machine was, and the milliseconds per purchase of
// the daemon, of the bench (emulator and fakes) and of the rest (PostgreSQL,
// and anything else running).
func cpuShare(from, to cpuSample, wall time.Duration, n int) string {
	machine := to.machine - from.machine
	daemon := to.process - from.process
	self := to.self - from.self
	rest := max(machine-daemon-self, 0)
	offered := wall.Seconds() * float64(runtime.NumCPU())
	per := func(s float64) float64 { return s * 1000 / float64(n) }
	return fmt.Sprintf("CPU meanwhile: %.1f s of the %d cores' %.1f s (%.0f%% busy), %.1f ms a purchase: the daemon %.1f, "+
		"the bench's emulator and fakes %.1f, the rest (PostgreSQL) %.1f",
		machine, runtime.NumCPU(), offered, 100*machine/offered, per(machine), per(daemon), per(self), per(rest))
}
