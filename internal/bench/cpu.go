package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc (USER_HZ), 100 on every
// Linux architecture Go supports.
const userHZ = 100

// cpuSample is the CPU time spent so far, in seconds: by the whole machine
// (user, nice, system, irq and softirq; not idle, I/O wait or stolen), by
// one process of ours (the daemon) and by the bench itself (its emulator
// and fakes).
type cpuSample struct {
	machine, process, self float64
}

// sampleCPU reads the machine's and pid's CPU times from /proc and the
// bench's from getrusage.
func sampleCPU(pid int) (cpuSample, error) {
	var s cpuSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system (idle iowait) irq softirq
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
		s.machine += v / userHZ
	}
	if s.process, err = processCPU(pid); err != nil {
		return s, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, err
	}
	s.self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	return s, nil
}

// processCPU is pid's user and system time, in seconds, from
// /proc/<pid>/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (state is the first, utime the 12th).
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(st[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var total float64
	for _, v := range f[11:13] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += n / userHZ
	}
	return total, nil
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
