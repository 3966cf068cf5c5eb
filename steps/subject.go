// Subjects: what a step belongs to. A purchase, a subscription or an order
// runs its own pipelines, named per subject; global steps belong to none.
package steps

import (
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

// Subject is what a pipeline's steps belong to: a kind and the uuid of a row
// of that kind's table. The zero Subject means none: a global pipeline.
type Subject struct {
	Kind store.SubjectKind
	ID   string
}

// PurchaseSubject is the subject of a purchase's steps.
func PurchaseSubject(id string) Subject { return Subject{Kind: store.SubjectPurchase, ID: id} }

// SubscriptionSubject is the subject of a subscription's steps.
func SubscriptionSubject(id string) Subject { return Subject{Kind: store.SubjectSubscription, ID: id} }

// OrderSubject is the subject of an order's steps.
func OrderSubject(id string) Subject { return Subject{Kind: store.SubjectOrder, ID: id} }

// Global reports whether s is no subject at all.
func (s Subject) Global() bool { return s.Kind == store.SubjectGlobal || s == Subject{} }

// String is "global", or kind:id.
func (s Subject) String() string {
	if s.Global() {
		return string(store.SubjectGlobal)
	}
	return string(s.Kind) + ":" + s.ID
}

// normalize checks s and returns it with an explicit kind.
func (s Subject) normalize() (Subject, error) {
	switch {
	case s.Global() && s.ID == "":
		return Subject{Kind: store.SubjectGlobal}, nil
	case s.Global():
		return s, fmt.Errorf("a global subject has no id (got %q)", s.ID)
	case !slices.Contains(store.SubjectKinds, s.Kind):
		return s, fmt.Errorf("unknown subject kind %q (one of %v)", s.Kind, store.SubjectKinds)
	}
	if _, err := uuid.Parse(s.ID); err != nil {
		return s, fmt.Errorf("%s id %q is not a uuid", s.Kind, s.ID)
	}
	return s, nil
}

// subjectOf returns the subject of a stored step.
func subjectOf(s store.Step) Subject {
	if s.SubjectID == nil {
		return Subject{Kind: store.SubjectGlobal}
	}
	return Subject{Kind: s.SubjectKind, ID: *s.SubjectID}
}
