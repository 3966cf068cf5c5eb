package steps

import (
	"errors"
	"fmt"
	"time"
)

// A handler's returned error is its outcome: nil means done, a plain error
// means retry with exponential backoff and jitter, and the wrappers below say
// something more specific.

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the step fails at once, without further attempts,
// and an operator alert is scheduled.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError asks for the next attempt no earlier than a given delay.
type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.after, e.err)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so the next attempt waits d (for example a 429's
// Retry-After or a rate limit's reset time) instead of the backoff schedule.
// A d of zero or less (a reset time already past) takes the backoff
// schedule, so a stale reset time cannot burn every attempt in seconds. The
// attempt still counts towards the step's maximum.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &retryAfterError{after: d, err: err}
}

// RetryDelay returns the delay requested through RetryAfter, if any (zero
// for a time already past).
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
