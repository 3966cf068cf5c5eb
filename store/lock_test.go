package store_test

import (
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// A held advisory lock notices when its session ends (a failover, a
// restarted server, an operator's pg_terminate_backend): another replica may
// hold the lock then, so whoever works under it must stop. Meanwhile a
// second replica cannot take it, and can once the session is gone.
func TestLockReportsItsLostSession(t *testing.T) {
	store.SetLockCheck(t, 20*time.Millisecond, time.Second)
	url := pgtest.URL(t)
	a, b := pgtest.Open(t, url), pgtest.Open(t, url)
	ctx := t.Context()
	const key = 4242

	lock, ok, err := a.TryLock(ctx, key)
	if err != nil || !ok {
		t.Fatalf("take the lock: %v, %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for store.LockChecks(lock) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	select {
	case <-lock.Lost():
		t.Fatal("a healthy lock reported lost")
	default:
	}
	if store.LockChecks(lock) < 3 {
		t.Fatalf("%d checks of the lock's session in 10 s; want at least 3", store.LockChecks(lock))
	}
	if _, ok, err := b.TryLock(ctx, key); err != nil || ok {
		t.Fatalf("a second replica took a held lock: %v, %v", ok, err)
	}

	// End the lock's session from outside.
	var killed bool
	if err := b.Pool.QueryRow(ctx, `
		SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND objid = $1 AND granted`, key).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the lock's session: %v, %v", killed, err)
	}
	select {
	case <-lock.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lock's session ended, and the lock did not report it lost within 10 s")
	}
	lock.Release() // closes what is left; must not hang

	other, ok, err := b.TryLock(ctx, key)
	if err != nil || !ok {
		t.Fatalf("the lock after its session ended: %v, %v; want it free", ok, err)
	}
	other.Release()
	// Released cleanly, it is free again at once.
	again, ok, err := a.TryLock(ctx, key)
	if err != nil || !ok {
		t.Fatalf("take the lock after a clean release: %v, %v", ok, err)
	}
	again.Release()
}
