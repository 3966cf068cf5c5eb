// Actions: each is a GET that shows what will happen (a confirmation page,
// for a reconcile the dry run's differences) and a POST, carrying the
// session's CSRF token, that does it and writes the audit in the same
// transaction where there is one. The actions use the functions the CLI
// and the reconciler use: store.RetryFailedStep (paymentd steps retry),
// reconcile.Reconciler.Object, fulfillment.RepairAccess and
// steps.Engine.Schedule.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// confirmView is a confirmation page: what the action will do, and the
// form that does it.
type confirmView struct {
	Heading string
	Explain []string
	Steps   []stepView
	// Report is a reconcile dry run's outcome.
	Report *reconcile.Report
	// ObjectErrors are the objects the dry run could not reconcile.
	ObjectErrors []string
	Action       string // the form's URL
	Button       string
	Back         string
	// IDs are posted along (bulk retry).
	IDs []int64
	// Blocked says why the action cannot be done now ("" when it can).
	Blocked string
}

// snapshot encodes an audit's before or after; nil stays empty.
func snapshot(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(fmt.Sprintf(`{"unencodable": %q}`, err.Error()))
	}
	return b
}

// audit records one action of operator on an object.
func (c *Console) audit(ctx context.Context, q *store.Queries, operator, action, kind, objectID string, purchaseID *string,
	before, after any, note string) (store.AuditEntry, error) {
	return q.InsertAudit(ctx, store.AuditEntry{At: c.now(), Operator: operator, Action: action, ObjectKind: kind,
		ObjectID: objectID, PurchaseID: purchaseID, Before: snapshot(before), After: snapshot(after), Note: note})
}

// backTo is where to go after an action on a step: its subject's page, or
// the steps list for a global step (or a subject without a page).
func backTo(s store.Step) string {
	if p := subjectPage(s); p != "" {
		return p
	}
	return "/console/steps"
}

// subjectPage is the console page of a step's subject, "" for none.
func subjectPage(s store.Step) string {
	switch {
	case s.SubjectID == nil:
		return ""
	case s.SubjectKind == store.SubjectPurchase:
		return "/console/purchases/" + *s.SubjectID
	case s.SubjectKind == store.SubjectSubscription:
		return "/console/subscriptions/" + *s.SubjectID
	case s.SubjectKind == store.SubjectOrder:
		return "/console/orders/" + *s.SubjectID
	}
	return ""
}

// redirectDone sends the browser to back, reporting the audit entries.
func redirectDone(w http.ResponseWriter, r *http.Request, back string, as []store.AuditEntry) {
	sep := "?"
	if strings.Contains(back, "?") {
		sep = "&"
	}
	http.Redirect(w, r, back+sep+doneQuery(as), http.StatusSeeOther)
}

// stepFromPath loads the step and action the path names; it reports false
// when it has already answered.
func (c *Console) stepFromPath(w http.ResponseWriter, r *http.Request, s *session) (stepView, string, bool) {
	action := r.PathValue("action")
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || !slices.Contains([]string{actionRetry, actionCancel, actionResend}, action) {
		c.message(w, r, s, http.StatusNotFound, "Not found", "Steps can be retried, canceled or resent, by their number.")
		return stepView{}, "", false
	}
	st, err := c.db.GetStep(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, s, http.StatusNotFound, "No such step", fmt.Sprintf("There is no step %d.", id))
		return stepView{}, "", false
	}
	if err != nil {
		c.fail(w, r, s, "read the step", err)
		return stepView{}, "", false
	}
	return viewStep(st, c.now(), c.cfg.StuckAfter), action, true
}

// refusal says why a step cannot take an action now.
func refusal(v stepView, action string) string {
	switch action {
	case actionRetry:
		return fmt.Sprintf("Step %d is %s: only a failed step can be retried.", v.ID, v.Status)
	case actionCancel:
		return fmt.Sprintf("Step %d is %s: only a step that has not run (waiting or pending) can be canceled.", v.ID, v.Status)
	}
	return fmt.Sprintf("Step %d is %s: only a done step that sent an email can be resent.", v.ID, v.Status)
}

func (c *Console) stepConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	v, action, ok := c.stepFromPath(w, r, s)
	if !ok {
		return
	}
	cv := confirmView{Steps: []stepView{v}, Action: fmt.Sprintf("/console/steps/%d/%s", v.ID, action), Back: backTo(v.Step)}
	if !v.can(action) {
		cv.Blocked = refusal(v, action)
	}
	switch action {
	case actionRetry:
		cv.Heading, cv.Button = fmt.Sprintf("Retry step %d (%s)?", v.ID, v.Name), "Retry the step"
		cv.Explain = []string{"The step becomes pending now with a fresh set of attempts; a worker runs it as soon as one is free. " +
			"This is what `paymentd steps retry` does."}
	case actionCancel:
		cv.Heading, cv.Button = fmt.Sprintf("Cancel step %d (%s)?", v.ID, v.Name), "Cancel the step"
		cv.Explain = []string{"The step will never run. Steps of its pipeline that wait for it are canceled with it, since they could never run either."}
	case actionResend:
		cv.Heading, cv.Button = fmt.Sprintf("Resend the email of step %d (%s)?", v.ID, v.Name), "Resend the email"
		cv.Explain = []string{"A new pipeline with a new step sends the email again, rendered from the purchase as it is now; " +
			"the done step is never run again."}
		if v.Name == fulfillment.StepAccessEmail {
			cv.Explain = append(cv.Explain, "The access email reads the grant of its own pipeline, so the new pipeline grants access first, "+
				"to the account recorded by id (GitHub answers with the pending invitation; an existing collaborator is left as is), then sends the email.")
		}
	}
	status := http.StatusOK
	if cv.Blocked != "" {
		status = http.StatusConflict
	}
	c.render(w, r, s, status, "confirm", cv.Heading, cv, 0)
}

// errRefused is an action its object no longer allows (it changed since
// the confirmation page).
type errRefused struct{ msg string }

func (e errRefused) Error() string { return e.msg }

func (c *Console) stepDo(w http.ResponseWriter, r *http.Request, s *session) {
	v, action, ok := c.stepFromPath(w, r, s)
	if !ok {
		return
	}
	var as []store.AuditEntry
	err := c.db.InTx(r.Context(), func(q *store.Queries) error {
		var err error
		as = nil
		switch action {
		case actionRetry:
			var a store.AuditEntry
			if a, err = c.retryStep(r.Context(), q, s.Operator, v.ID); err == nil {
				as = append(as, a)
			}
		case actionCancel:
			as, err = c.cancelStep(r.Context(), q, s.Operator, v.ID)
		case actionResend:
			as, err = c.resendStep(r.Context(), q, s.Operator, v.ID)
		}
		return err
	})
	var refused errRefused
	if errors.As(err, &refused) {
		c.message(w, r, s, http.StatusConflict, "Not done", refused.msg+" Nothing was changed.")
		return
	}
	if err != nil {
		c.fail(w, r, s, action+" the step", err)
		return
	}
	c.log.InfoContext(r.Context(), "console: step "+action, "operator", s.Operator, "step_id", v.ID, "step", v.Name)
	redirectDone(w, r, backTo(v.Step), as)
}

// retryStep retries a failed step through store.RetryFailedStep, the
// statement `paymentd steps retry` runs, and audits it.
func (c *Console) retryStep(ctx context.Context, q *store.Queries, operator string, id int64) (store.AuditEntry, error) {
	before, err := q.GetStep(ctx, id)
	if err != nil {
		return store.AuditEntry{}, err
	}
	ok, err := q.RetryFailedStep(ctx, id, c.now())
	if err != nil {
		return store.AuditEntry{}, err
	}
	if !ok {
		return store.AuditEntry{}, errRefused{refusal(viewStep(before, c.now(), c.cfg.StuckAfter), actionRetry)}
	}
	after, err := q.GetStep(ctx, id)
	if err != nil {
		return store.AuditEntry{}, err
	}
	return c.audit(ctx, q, operator, "retry_step", "step", strconv.FormatInt(id, 10), before.PurchaseID, before, after,
		before.Pipeline+"/"+before.Name)
}

// cancelStep cancels a step not yet run and what waits for it, auditing
// each.
func (c *Console) cancelStep(ctx context.Context, q *store.Queries, operator string, id int64) ([]store.AuditEntry, error) {
	before, err := stepsAround(ctx, q, id)
	if err != nil {
		return nil, err
	}
	ids, err := q.CancelStep(ctx, id, c.now(), "canceled by operator "+operator)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		st := before[id]
		return nil, errRefused{refusal(viewStep(st, c.now(), c.cfg.StuckAfter), actionCancel)}
	}
	var as []store.AuditEntry
	for i, sid := range ids {
		after, err := q.GetStep(ctx, sid)
		if err != nil {
			return nil, err
		}
		note := after.Pipeline + "/" + after.Name
		if i > 0 {
			note += fmt.Sprintf(" (waited for step %d)", id)
		}
		a, err := c.audit(ctx, q, operator, "cancel_step", "step", strconv.FormatInt(sid, 10), after.PurchaseID,
			before[sid], after, note)
		if err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	return as, nil
}

// stepsAround returns, by id, step id and the other steps of its subject
// (those a cancel may reach), as they are before an action.
func stepsAround(ctx context.Context, q *store.Queries, id int64) (map[int64]store.Step, error) {
	st, err := q.GetStep(ctx, id)
	if err != nil {
		return nil, err
	}
	out := map[int64]store.Step{id: st}
	if st.SubjectID != nil {
		all, err := q.SubjectSteps(ctx, *st.SubjectID)
		if err != nil {
			return nil, err
		}
		for _, s := range all {
			out[s.ID] = s
		}
	}
	return out, nil
}

// resendStep schedules a done email step's email again, in a new pipeline
// of the purchase, and audits it. The purchase is locked while the
// pipeline's name is chosen, so two resends never share one.
func (c *Console) resendStep(ctx context.Context, q *store.Queries, operator string, id int64) ([]store.AuditEntry, error) {
	orig, err := q.GetStep(ctx, id)
	if err != nil {
		return nil, err
	}
	v := viewStep(orig, c.now(), c.cfg.StuckAfter)
	if !v.can(actionResend) || orig.PurchaseID == nil {
		return nil, errRefused{refusal(v, actionResend)}
	}
	if _, err := q.LockPurchase(ctx, *orig.PurchaseID); err != nil {
		return nil, err
	}
	existing, err := q.PurchaseSteps(ctx, *orig.PurchaseID)
	if err != nil {
		return nil, err
	}
	pipeline := steps.Pipeline{PurchaseID: *orig.PurchaseID, Name: resendPipeline(existing)}
	step := steps.Step{Name: orig.Name, Tags: orig.Tags, Args: orig.Args}
	if orig.AfterName != nil {
		if *orig.AfterName != fulfillment.StepGrantAccess {
			return nil, errRefused{fmt.Sprintf("Step %d waits for %s in its pipeline; only an access email can be resent with what it waits for.",
				id, *orig.AfterName)}
		}
		// The access email reads the grant of its own pipeline.
		pipeline.Steps = append(pipeline.Steps, steps.Step{Name: fulfillment.StepGrantAccess, Tags: []string{fulfillment.TagAccess}})
		step.After = fulfillment.StepGrantAccess
	}
	pipeline.Steps = append(pipeline.Steps, step)
	if _, err := c.engine.Schedule(ctx, q, pipeline); err != nil {
		return nil, err
	}
	now, err := q.PurchaseSteps(ctx, *orig.PurchaseID)
	if err != nil {
		return nil, err
	}
	var scheduled []store.Step
	for _, st := range now {
		if st.Pipeline == pipeline.Name {
			scheduled = append(scheduled, st)
		}
	}
	a, err := c.audit(ctx, q, operator, "resend_email", "step", strconv.FormatInt(id, 10), orig.PurchaseID, orig,
		map[string]any{"pipeline": pipeline.Name, "steps": scheduled}, v.Email.Template+" to "+v.Email.To+" in "+pipeline.Name)
	if err != nil {
		return nil, err
	}
	return []store.AuditEntry{a}, nil
}

// bulkIDs reads the step ids of a bulk retry.
func bulkIDs(v url.Values) ([]int64, error) {
	var ids []int64
	for _, raw := range v["id"] {
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a step number", raw)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	switch {
	case len(ids) == 0:
		return nil, errors.New("no step was selected")
	case len(ids) > maxFlash:
		return nil, fmt.Errorf("at most %d steps at a time", maxFlash)
	}
	return ids, nil
}

func (c *Console) bulkRetryConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	ids, err := bulkIDs(r.URL.Query())
	if err != nil {
		c.message(w, r, s, http.StatusBadRequest, "Nothing to retry", "Select failed steps to retry: "+err.Error()+".")
		return
	}
	cv := confirmView{Heading: fmt.Sprintf("Retry %d failed step(s)?", len(ids)), Action: "/console/steps/retry",
		Button: "Retry these steps", Back: "/console/steps?view=failed",
		Explain: []string{"Each step becomes pending now with a fresh set of attempts (as `paymentd steps retry` does). A step that is no longer failed is left alone."}}
	for _, id := range ids {
		st, err := c.db.GetStep(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			c.fail(w, r, s, "read the steps", err)
			return
		}
		v := viewStep(st, c.now(), c.cfg.StuckAfter)
		cv.Steps = append(cv.Steps, v)
		if v.can(actionRetry) {
			cv.IDs = append(cv.IDs, id)
		}
	}
	if len(cv.IDs) == 0 {
		cv.Blocked = "None of these steps is failed any more."
	}
	c.render(w, r, s, http.StatusOK, "confirm", cv.Heading, cv, 0)
}

func (c *Console) bulkRetryDo(w http.ResponseWriter, r *http.Request, s *session) {
	ids, err := bulkIDs(r.PostForm)
	if err != nil {
		c.message(w, r, s, http.StatusBadRequest, "Nothing to retry", "Select failed steps to retry: "+err.Error()+".")
		return
	}
	var as []store.AuditEntry
	err = c.db.InTx(r.Context(), func(q *store.Queries) error {
		as = nil
		for _, id := range ids {
			a, err := c.retryStep(r.Context(), q, s.Operator, id)
			var refused errRefused
			if errors.As(err, &refused) || errors.Is(err, store.ErrNotFound) {
				continue // no longer failed: left alone, as the page said
			}
			if err != nil {
				return err
			}
			as = append(as, a)
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, "retry the steps", err)
		return
	}
	c.log.InfoContext(r.Context(), "console: steps retried", "operator", s.Operator, "steps", len(as))
	redirectDone(w, r, "/console/steps?view=failed", as)
}

// newReport returns an empty reconcile report for Reconciler.Object. The
// reconcile package has no exported constructor; this one fills in every
// exported map a pass writes to.

// purchaseObjects are the Stripe objects a targeted reconcile of a
// purchase looks at: its Checkout Session (status, payment) and, once
// paid, its charge (refunds, disputes).
func purchaseObjects(p store.Purchase) []string {
	ids := []string{p.StripeSessionID}
	if p.StripeChargeID != nil && *p.StripeChargeID != "" {
		ids = append(ids, *p.StripeChargeID)
	}
	return ids
}

// reconcilePurchase reconciles a purchase's Stripe objects now, through
// the reconciler's Object, as a dry run (computing every difference and
// changing nothing) or for real. It returns the report and the objects
// that failed.
func (c *Console) reconcilePurchase(ctx context.Context, p store.Purchase, dry bool) (rep *reconcile.Report, failed []string) {
	rep = reconcile.NewReport(dry)
	for _, id := range purchaseObjects(p) {
		if err := c.reconcileObject(ctx, id, rep); err != nil {
			failed = append(failed, err.Error())
		}
	}
	return rep, failed
}

// reconcileObject is Reconciler.Object, with a panic turned into an error
// so a bad object never takes the console down.
func (c *Console) reconcileObject(ctx context.Context, id string, rep *reconcile.Report) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reconcile %s: panic: %v", id, p)
			c.log.ErrorContext(ctx, "console: reconcile panicked", "object_id", id, "panic", p)
		}
	}()
	return c.rec.Object(ctx, id, rep)
}

func (c *Console) reconcileConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	p := d.Purchase
	rep, failed := c.reconcilePurchase(r.Context(), p, true)
	cv := confirmView{Heading: "Reconcile this purchase with Stripe now?", Report: rep, ObjectErrors: failed,
		Action: "/console/purchases/" + p.ID + "/reconcile", Button: "Reconcile for real", Back: "/console/purchases/" + p.ID,
		Explain: []string{"A dry run just compared " + strings.Join(purchaseObjects(p), " and ") +
			" with the database and changed nothing. Below is what a real pass would change; Stripe may have moved on by the time you confirm, " +
			"and the real pass applies what Stripe says then."}}
	c.render(w, r, s, http.StatusOK, "confirm", cv.Heading, cv, 0)
}

// purchaseState is the audit's snapshot of a purchase.
func purchaseState(p store.Purchase) map[string]any {
	return map[string]any{"status": p.Status, "access_state": p.AccessState, "access_ref": p.AccessRef,
		"amount_total": p.AmountTotal, "amount_refunded": p.AmountRefunded, "currency": p.Currency,
		"disputed": p.Disputed, "completed_at": p.CompletedAt, "checked_at": p.CheckedAt}
}

func (c *Console) reconcileDo(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	before := d.Purchase
	start := c.now()
	rep, failed := c.reconcilePurchase(ctx, before, false)
	after, err := c.db.GetPurchase(ctx, before.ID)
	if err != nil {
		c.fail(w, r, s, "read the purchase after reconciling it", err)
		return
	}
	a, err := c.recordTargeted(ctx, s.Operator, "purchase", before.ID, &before.ID, start, rep, failed,
		purchaseState(before), purchaseState(after))
	if err != nil {
		c.fail(w, r, s, "record the reconcile", err)
		return
	}
	c.log.InfoContext(ctx, "console: purchase reconciled", "operator", s.Operator, "purchase_id", before.ID,
		"summary", a.Note)
	redirectDone(w, r, "/console/purchases/"+before.ID, []store.AuditEntry{a})
}

// accessWant maps the access action in a path to the state RepairAccess
// moves towards.
var accessWant = map[string]store.AccessState{"grant": store.AccessGranted, "revoke": store.AccessRevoked}

func (c *Console) accessConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	want, known := accessWant[r.PathValue("want")]
	if !known {
		c.message(w, r, s, http.StatusNotFound, "Not found", "Access can be granted or revoked.")
		return
	}
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	p := d.Purchase
	verb := r.PathValue("want")
	cv := confirmView{Heading: verb + " access for this purchase?", Action: "/console/purchases/" + p.ID + "/access/" + verb,
		Button: strings.ToUpper(verb[:1]) + verb[1:] + " access", Back: "/console/purchases/" + p.ID}
	cv.Heading = strings.ToUpper(cv.Heading[:1]) + cv.Heading[1:]
	if want == store.AccessGranted {
		cv.Explain = []string{"A grant_access step is scheduled in a repair pipeline. A GitHub grant goes to the account recorded by id, " +
			"whatever its login is now. The grant is skipped if the purchase is not paid for when it runs."}
	} else {
		cv.Explain = []string{"A revoke_access step is scheduled in a repair pipeline; it takes back every grant the purchase ever had. " +
			"A buyer who had access before paying (preexisting) is never removed."}
	}
	cv.Explain = append(cv.Explain, fmt.Sprintf("Access is now %s; the purchase is %s.", p.AccessState, p.Status),
		"Nothing is scheduled while a step of the same kind is still under way. This is what the access drift pass does.")
	if !hasAccess(c.products[p.ProductKey]) {
		cv.Blocked = "The product " + p.ProductKey + " is not delivered by an access provider."
	}
	c.render(w, r, s, http.StatusOK, "confirm", cv.Heading, cv, 0)
}

func (c *Console) accessDo(w http.ResponseWriter, r *http.Request, s *session) {
	verb := r.PathValue("want")
	want, known := accessWant[verb]
	if !known {
		c.message(w, r, s, http.StatusNotFound, "Not found", "Access can be granted or revoked.")
		return
	}
	d, ok := c.loadPurchase(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	var a store.AuditEntry
	err := c.db.InTx(ctx, func(q *store.Queries) error {
		p, err := q.LockPurchase(ctx, d.Purchase.ID)
		if err != nil {
			return err
		}
		grants, err := q.PurchaseGrants(ctx, p.ID)
		if err != nil {
			return err
		}
		before, err := q.PurchaseSteps(ctx, p.ID)
		if err != nil {
			return err
		}
		if err := c.access.RepairAccess(ctx, q, p, want); err != nil {
			return err
		}
		after, err := q.PurchaseSteps(ctx, p.ID)
		if err != nil {
			return err
		}
		scheduled := after[len(before):]
		note := fmt.Sprintf("scheduled %d step(s)", len(scheduled))
		if len(scheduled) == 0 {
			note = "nothing scheduled: the product has no access provider, or a step of the same kind is under way"
		}
		a, err = c.audit(ctx, q, s.Operator, verb+"_access", "purchase", p.ID, &p.ID,
			map[string]any{"purchase": purchaseState(p), "grants": grants}, map[string]any{"scheduled": scheduled}, note)
		return err
	})
	if err != nil {
		c.fail(w, r, s, verb+" access", err)
		return
	}
	c.log.InfoContext(ctx, "console: access "+verb, "operator", s.Operator, "purchase_id", d.Purchase.ID, "note", a.Note)
	redirectDone(w, r, "/console/purchases/"+d.Purchase.ID, []store.AuditEntry{a})
}
