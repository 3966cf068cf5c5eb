// The emulator's own clock: the injected clock plus an offset a developer
// can advance (like a Stripe test clock), and a pin that holds time still at
// the moment a scheduled billing transition is due while it is applied, so a
// renewal found late still carries its own timestamps.

package stripeemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
)

// virtualClock is the emulator's source of time. Webhook signatures keep
// using the injected clock: a receiver checks them against its own wall
// clock, as Stripe's test clocks leave signatures on real time.
type virtualClock struct {
	base clock.Clock

	mu     sync.Mutex
	offset time.Duration
	pinned time.Time
}

// Now returns the pinned time while a scheduled transition is applied, and
// otherwise the injected clock's time plus the offset.
func (v *virtualClock) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.pinned.IsZero() {
		return v.pinned
	}
	return v.base.Now().Add(v.offset).UTC()
}

// unpinnedNow is the current time ignoring any pin.
func (v *virtualClock) unpinnedNow() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.base.Now().Add(v.offset).UTC()
}

// pin holds the clock at t (Unix seconds); unpin releases it.
func (v *virtualClock) pin(t int64) {
	v.mu.Lock()
	v.pinned = time.Unix(t, 0).UTC()
	v.mu.Unlock()
}

func (v *virtualClock) unpin() {
	v.mu.Lock()
	v.pinned = time.Time{}
	v.mu.Unlock()
}

// advance moves the offset forward by d.
func (v *virtualClock) advance(d time.Duration) {
	v.mu.Lock()
	v.offset += d
	v.mu.Unlock()
}

// Now returns the emulator's current time: the injected clock plus every
// Advance so far.
func (e *Emulator) Now() time.Time { return e.bill.clock.unpinnedNow() }

// Advance moves the emulator's clock forward by d, on top of the injected
// clock, and applies every transition that became due, each at its own
// time: renewals, trial ends, payment retries, expiries. Tests that hold a
// clock.Fake may move the fake instead; dev mode, on the wall clock, uses
// this (or POST /_emulator/advance).
func (e *Emulator) Advance(d time.Duration) time.Time {
	if d < 0 {
		d = 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bill.clock.advance(d)
	e.tickLocked()
	return e.bill.clock.unpinnedNow()
}

// clockJSON is the answer of the dev clock endpoints.
type clockJSON struct {
	Now           int64  `json:"now"`
	NowRFC3339    string `json:"now_rfc3339"`
	OffsetSeconds int64  `json:"offset_seconds"`
}

// clockState reports the emulator's time and offset.
func (e *Emulator) clockState() clockJSON {
	now := e.bill.clock.unpinnedNow()
	e.bill.clock.mu.Lock()
	off := e.bill.clock.offset
	e.bill.clock.mu.Unlock()
	return clockJSON{Now: now.Unix(), NowRFC3339: now.Format(time.RFC3339), OffsetSeconds: int64(off / time.Second)}
}

// devClockAdvance serves POST /_emulator/advance?seconds=N, the dev
// control that moves the emulator's clock (a test clock for the whole
// account). It is not part of Stripe's API and needs no key.
func (e *Emulator) devClockAdvance(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.ParseInt(r.URL.Query().Get("seconds"), 10, 64)
	if err != nil || secs < 0 || secs > 10*366*24*3600 {
		http.Error(w, "seconds must be a whole number of seconds between 0 and ten years", http.StatusBadRequest)
		return
	}
	e.Advance(time.Duration(secs) * time.Second)
	writeClock(w, e.clockState())
}

// devClock serves GET /_emulator/clock.
func (e *Emulator) devClock(w http.ResponseWriter, _ *http.Request) {
	writeClock(w, e.clockState())
}

func writeClock(w http.ResponseWriter, c clockJSON) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}
