// Billing state and its scheduler. Subscriptions, invoices and portal
// sessions live here, beside a heap of timed transitions (renewals, trial
// ends, payment retries, expiries). Whenever the emulator reads the clock
// (every request, every Go operation, Tick, Advance) it applies the due
// transitions in time order, each with the clock pinned at its due time, so a
// test that jumps fourteen months sees every renewal in order with the
// timestamps Stripe would have given it.

package stripeemu

import (
	"container/heap"
	"time"
)

// BillingSettings are the account's subscription settings, as the Stripe
// Dashboard's Billing settings hold them.
type BillingSettings struct {
	// RetrySchedule is when a failed renewal is retried, counted from its
	// first failed attempt. Nil means DefaultRetrySchedule; an empty,
	// non-nil slice means no retries.
	RetrySchedule []time.Duration
	// AfterRetries is the subscription status once every retry failed:
	// "canceled" (the default), "unpaid", or "past_due" (left as is).
	AfterRetries string
	// MarkUncollectible marks the invoice uncollectible once every retry
	// failed; otherwise it stays open.
	MarkUncollectible bool
	// UpcomingNotice is how long before a renewal invoice.upcoming is sent;
	// zero means 3 days, negative disables it.
	UpcomingNotice time.Duration
	// DraftDelay is how long a renewal invoice stays a draft before it is
	// finalized and paid; zero means one hour, as on Stripe.
	DraftDelay time.Duration
}

// Defaults of BillingSettings.
const (
	defaultUpcomingNotice = 3 * 24 * time.Hour
	defaultDraftDelay     = time.Hour
	trialWillEndNotice    = 3 * 24 * time.Hour
	incompleteWindow      = 23 * time.Hour
)

// SetBillingSettings replaces the account's billing settings. Transitions
// already scheduled keep the times they were given.
func (e *Emulator) SetBillingSettings(s BillingSettings) error {
	switch s.AfterRetries {
	case "", "canceled", "unpaid", "past_due":
	default:
		return opError("billing settings", invalid("after_retries", "", "AfterRetries must be canceled, unpaid or past_due (got %q).", s.AfterRetries))
	}
	e.mu.Lock()
	e.bill.settings = s
	e.mu.Unlock()
	return nil
}

// retrySchedule returns the effective retry schedule.
func (b *billing) retrySchedule() []time.Duration {
	if b.settings.RetrySchedule == nil {
		return DefaultRetrySchedule
	}
	return b.settings.RetrySchedule
}

func (b *billing) afterRetries() string {
	if b.settings.AfterRetries == "" {
		return "canceled"
	}
	return b.settings.AfterRetries
}

func (b *billing) upcomingNotice() time.Duration {
	if b.settings.UpcomingNotice == 0 {
		return defaultUpcomingNotice
	}
	return b.settings.UpcomingNotice
}

func (b *billing) draftDelay() int64 {
	d := b.settings.DraftDelay
	if d <= 0 {
		d = defaultDraftDelay
	}
	return int64(d / time.Second)
}

// billing holds every billing object and the scheduler.
type billing struct {
	clock    *virtualClock
	settings BillingSettings

	subs     store[*subscription]
	invoices store[*invoice]
	portals  store[*portalSession]

	subsByCustomer     map[string][]*subscription
	invoicesBySub      map[string][]*invoice
	invoicesByCustomer map[string][]*invoice

	// cards maps a customer to its default payment method; a customer
	// without one cannot be charged.
	cards map[string]string
	// declining holds customers whose card declines every charge.
	declining map[string]bool
	// sessionSubs maps a subscription-mode session to the subscription
	// paying it created, even while that one is incomplete.
	sessionSubs map[string]*subscription

	portalConfig string
	jobs         jobHeap
	jobSeq       uint64
}

// newBilling returns empty billing state on clk.
func newBilling(clk *virtualClock) *billing {
	return &billing{
		clock:              clk,
		subs:               newStore[*subscription]("subscription"),
		invoices:           newStore[*invoice]("invoice"),
		portals:            newStore[*portalSession]("billing_portal.session"),
		subsByCustomer:     map[string][]*subscription{},
		invoicesBySub:      map[string][]*invoice{},
		invoicesByCustomer: map[string][]*invoice{},
		cards:              map[string]string{},
		declining:          map[string]bool{},
		sessionSubs:        map[string]*subscription{},
	}
}

// jobKind names a scheduled transition.
type jobKind uint8

const (
	jobRenew            jobKind = iota // the period ends: renew, end the trial, or cancel
	jobFinalize                        // a renewal draft is finalized and paid
	jobRetry                           // a failed invoice is retried
	jobTrialWillEnd                    // customer.subscription.trial_will_end
	jobUpcoming                        // invoice.upcoming
	jobExpireIncomplete                // an incomplete subscription expires
	jobResumeCollection                // pause_collection.resumes_at passes
)

// job is a scheduled transition. stamp is the state it was scheduled for
// (a period end, a trial end, a retry number); a job whose stamp no longer
// matches is stale and does nothing, so changes never need to unschedule.
type job struct {
	at    int64
	seq   uint64
	kind  jobKind
	sub   *subscription
	inv   *invoice
	stamp int64
}

// jobHeap orders jobs by time, then by scheduling order.
type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

// scheduleLocked queues a transition.
func (e *Emulator) scheduleLocked(at int64, kind jobKind, s *subscription, inv *invoice, stamp int64) {
	e.bill.jobSeq++
	heap.Push(&e.bill.jobs, &job{at: at, seq: e.bill.jobSeq, kind: kind, sub: s, inv: inv, stamp: stamp})
}

// tickBillingLocked applies every transition due by now, oldest first, with
// the clock pinned at each one's time. A transition may schedule another that
// is already due (a renewal's draft is finalized an hour later); the loop
// picks it up in order.
func (e *Emulator) tickBillingLocked() {
	b := e.bill
	now := b.clock.unpinnedNow().Unix()
	if len(b.jobs) == 0 || b.jobs[0].at > now {
		return
	}
	defer b.clock.unpin()
	for len(b.jobs) > 0 && b.jobs[0].at <= now {
		j := heap.Pop(&b.jobs).(*job)
		b.clock.pin(j.at)
		e.runJobLocked(j)
	}
}

// runJobLocked applies one transition if it is still current.
func (e *Emulator) runJobLocked(j *job) {
	s, inv := j.sub, j.inv
	switch j.kind {
	case jobRenew:
		if s.live() && s.status != subPaused && s.status != subIncomplete && s.periodEnd == j.stamp {
			e.periodEndLocked(s)
		}
	case jobFinalize:
		if inv.status == invDraft && inv.autoAdvance {
			e.finalizeAndCollectLocked(inv, eventRequestJSON{})
		}
	case jobRetry:
		if inv.status == invOpen && inv.autoAdvance && int64(inv.autoAttempts) == j.stamp {
			e.attemptLocked(inv, true, eventRequestJSON{})
		}
	case jobTrialWillEnd:
		if s.status == subTrialing && s.trialEnd == j.stamp {
			e.recordSubLocked("customer.subscription.trial_will_end", s, eventRequestJSON{}, nil)
		}
	case jobUpcoming:
		if s.live() && s.status != subPaused && s.status != subIncomplete && s.periodEnd == j.stamp && !s.cancelAtPeriodEnd {
			e.recordLocked("invoice.upcoming", e.renderUpcoming(s), eventRequestJSON{}, nil)
		}
	case jobExpireIncomplete:
		if s.status == subIncomplete {
			e.expireIncompleteLocked(s)
		}
	case jobResumeCollection:
		if s.pause != nil && s.pause.ResumesAt != nil && *s.pause.ResumesAt == j.stamp {
			before := e.subSnapshotLocked(s)
			s.pause = nil
			e.subChangedLocked(s, before, eventRequestJSON{})
		}
	}
}
