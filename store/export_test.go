package store

import "time"

// CancelByTagSQL is the cancel-by-tag statement, for the EXPLAIN in
// TestCancelByTagUsesAnIndex.
const CancelByTagSQL = cancelByTagSQL

// SetLockCheck sets how often held advisory locks check their session, and
// how long a check may take, until the test ends.
func SetLockCheck(t interface{ Cleanup(func()) }, every, timeout time.Duration) {
	e, o := lockCheckEvery, lockCheckTimeout
	lockCheckEvery, lockCheckTimeout = every, timeout
	t.Cleanup(func() { lockCheckEvery, lockCheckTimeout = e, o })
}

// LockChecks is how many checks found l's session alive.
func LockChecks(l *Lock) int64 { return l.checks.Load() }
