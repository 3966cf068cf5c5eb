package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/store"
)

// Retrying a failed step goes through the confirmation page, then makes
// the step pending again (as paymentd steps retry does), writes the audit
// with the step before and after, and reports it on the purchase's page.
func TestRetryAFailedStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"purchase_confirmation": store.StepDone,
		"grant_access": store.StepFailed, "access_email": store.StepWaiting})
	grant := st["grant_access"]
	b := e.signedIn()

	page := b.get("/console/purchases/" + p.ID)
	if !strings.Contains(page.body, "github: add collaborator: 502 Bad Gateway") ||
		!strings.Contains(page.body, `href="/console/steps/`+itoa(grant.ID)+`/retry"`) {
		t.Fatalf("the purchase page lacks the failed grant and its retry:\n%s", page.body)
	}
	confirm := b.get("/console/steps/" + itoa(grant.ID) + "/retry")
	if confirm.status != http.StatusOK || !strings.Contains(confirm.body, "Retry step "+itoa(grant.ID)) {
		t.Fatalf("confirmation = %d\n%s", confirm.status, confirm.body)
	}
	if s := e.step(grant.ID); s.Status != store.StepFailed {
		t.Fatalf("the confirmation page changed the step: %s", s.Status)
	}
	done := b.post("/console/steps/"+itoa(grant.ID)+"/retry", url.Values{"csrf": {hidden(t, confirm.body, "csrf")}})
	if done.status != http.StatusSeeOther || !strings.HasPrefix(done.header.Get("Location"), "/console/purchases/"+p.ID+"?done=") {
		t.Fatalf("retry = %d → %q\n%s", done.status, done.header.Get("Location"), done.body)
	}
	s := e.step(grant.ID)
	if s.Status != store.StepPending || s.Attempts != 0 || s.FinishedAt != nil {
		t.Errorf("after retry the step is %s with %d attempts", s.Status, s.Attempts)
	}
	audit, err := e.db.PurchaseAudit(e.ctx, p.ID, 10)
	if err != nil || len(audit) != 1 {
		t.Fatalf("audit = %+v, %v", audit, err)
	}
	a := audit[0]
	var before, after store.Step
	json.Unmarshal(a.Before, &before)
	json.Unmarshal(a.After, &after)
	if a.Operator != "alice" || a.Action != "retry_step" || a.ObjectID != itoa(grant.ID) ||
		before.Status != store.StepFailed || after.Status != store.StepPending {
		t.Errorf("audit entry = %+v (before %s, after %s)", a, before.Status, after.Status)
	}
	shown := b.get(done.header.Get("Location"))
	if !strings.Contains(shown.body, "<strong>Done:</strong>") || !strings.Contains(shown.body, "retry_step on step "+itoa(grant.ID)) ||
		!strings.Contains(shown.body, `<meta http-equiv="refresh" content="3">`) {
		t.Errorf("the purchase page after the retry:\n%s", shown.body)
	}

	// Retrying it again is refused and changes nothing.
	again := b.post("/console/steps/"+itoa(grant.ID)+"/retry", url.Values{"csrf": {hidden(t, confirm.body, "csrf")}})
	if again.status != http.StatusConflict || !strings.Contains(again.body, "only a failed step can be retried") {
		t.Errorf("a second retry = %d\n%s", again.status, again.body)
	}
	if n := e.auditCount(); n != 2 { // the sign-in and the one retry
		t.Errorf("%d audit rows, want 2", n)
	}
}

func TestCancelAPendingStepAndWhatWaitsForIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepPending,
		"access_email": store.StepWaiting})
	b := e.signedIn()
	confirm := b.get("/console/steps/" + itoa(st["grant_access"].ID) + "/cancel")
	if !strings.Contains(confirm.body, "wait for it are canceled with it") {
		t.Fatalf("confirmation:\n%s", confirm.body)
	}
	done := b.post("/console/steps/"+itoa(st["grant_access"].ID)+"/cancel", url.Values{"csrf": {hidden(t, confirm.body, "csrf")}})
	if done.status != http.StatusSeeOther {
		t.Fatalf("cancel = %d\n%s", done.status, done.body)
	}
	for _, name := range []string{"grant_access", "access_email"} {
		if s := e.step(st[name].ID); s.Status != store.StepCanceled || s.LastError == nil ||
			*s.LastError != "canceled by operator alice" {
			t.Errorf("%s is %s (%v)", name, s.Status, s.LastError)
		}
	}
	audit, _ := e.db.PurchaseAudit(e.ctx, p.ID, 10)
	if len(audit) != 2 || audit[0].Action != "cancel_step" || audit[1].Action != "cancel_step" {
		t.Errorf("audit = %+v", audit)
	}
	// A done step cannot be canceled: the page says so, with no form.
	_, st2 := e.paidPurchase(product, map[string]store.StepStatus{"purchase_confirmation": store.StepDone})
	page := b.get("/console/steps/" + itoa(st2["purchase_confirmation"].ID) + "/cancel")
	if page.status != http.StatusConflict || strings.Contains(page.body, `name="csrf" value`) &&
		strings.Contains(page.body, "Cancel the step") {
		t.Errorf("cancel a done step = %d\n%s", page.status, page.body)
	}
}

// Resending schedules a new step in a new pipeline; the done one stays
// done. The access email brings the grant it reads along.
func TestResendAnEmailInANewPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"purchase_confirmation": store.StepDone,
		"grant_access": store.StepDone, "access_email": store.StepDone})
	b := e.signedIn()
	csrf := b.csrf()
	page := b.get("/console/purchases/" + p.ID)
	if !strings.Contains(page.body, "Sent email <strong>purchase_confirmation</strong> to "+buyerEmail) ||
		!strings.Contains(page.body, "/steps/"+itoa(st["purchase_confirmation"].ID)+"/email") {
		t.Fatalf("the timeline lacks the sent email:\n%s", page.body)
	}
	for i, name := range []string{"purchase_confirmation", "access_email"} {
		done := b.post("/console/steps/"+itoa(st[name].ID)+"/resend", url.Values{"csrf": {csrf}})
		if done.status != http.StatusSeeOther {
			t.Fatalf("resend %s = %d\n%s", name, done.status, done.body)
		}
		all, _ := e.db.PurchaseSteps(e.ctx, p.ID)
		var fresh []string
		for _, s := range all {
			if s.Pipeline == "resend:"+itoa(int64(i+1)) {
				fresh = append(fresh, s.Name+"/"+string(s.Status))
			}
		}
		want := "purchase_confirmation/pending"
		if name == "access_email" {
			want = "grant_access/pending,access_email/waiting"
		}
		if strings.Join(fresh, ",") != want {
			t.Errorf("resend %s scheduled %v, want %s", name, fresh, want)
		}
		if s := e.step(st[name].ID); s.Status != store.StepDone || s.Pipeline != "purchase" {
			t.Errorf("the original %s is %s", name, s.Status)
		}
	}
	audit, _ := e.db.PurchaseAudit(e.ctx, p.ID, 10)
	if len(audit) != 2 || audit[1].Action != "resend_email" || !strings.Contains(audit[1].Note, "purchase_confirmation to "+buyerEmail+" in resend:1") {
		t.Errorf("audit = %+v", audit)
	}
	// A step that sent nothing cannot be resent.
	if a := b.post("/console/steps/"+itoa(st["grant_access"].ID)+"/resend", url.Values{"csrf": {csrf}}); a.status != http.StatusConflict {
		t.Errorf("resend a grant = %d", a.status)
	}
}

// The preview of a sent email is rendered again, sandboxed.
func TestEmailPreview(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"purchase_confirmation": store.StepDone,
		"grant_access": store.StepFailed})
	b := e.signedIn()
	a := b.get("/console/purchases/" + p.ID + "/steps/" + itoa(st["purchase_confirmation"].ID) + "/email")
	if a.status != http.StatusOK || !strings.Contains(a.body, "Acme Pro") || !strings.Contains(a.body, "$199.00") {
		t.Fatalf("preview = %d\n%.3000s", a.status, a.body)
	}
	if csp := a.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") || a.header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("preview headers: CSP %q, XFO %q", csp, a.header.Get("X-Frame-Options"))
	}
	if a := b.get("/console/purchases/" + p.ID + "/steps/" + itoa(st["grant_access"].ID) + "/email"); a.status != http.StatusNotFound {
		t.Errorf("the preview of a step that sent nothing = %d", a.status)
	}
	other, _ := e.paidPurchase(product, map[string]store.StepStatus{})
	if a := b.get("/console/purchases/" + other.ID + "/steps/" + itoa(st["purchase_confirmation"].ID) + "/email"); a.status != http.StatusNotFound {
		t.Errorf("another purchase's step = %d", a.status)
	}
}

// A targeted reconcile shows its dry run's differences and changes
// nothing; confirmed, it applies them through the reconciler, records a
// pass and the audit.
func TestReconcileAPurchaseDryRunFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	sid, pid := e.checkout()
	if err := e.emu.PaySession(sid, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	b := e.signedIn()
	dry := b.get("/console/purchases/" + pid + "/reconcile")
	if dry.status != http.StatusOK || !strings.Contains(dry.body, "<strong>completed</strong>: session <code>"+sid+"</code>") {
		t.Fatalf("dry run page = %d\n%s", dry.status, dry.body)
	}
	if p, _ := e.db.GetPurchase(e.ctx, pid); p.Status != store.PurchasePending {
		t.Fatalf("the dry run changed the purchase: %s", p.Status)
	}
	if steps, _ := e.db.PurchaseSteps(e.ctx, pid); len(steps) != 0 {
		t.Fatalf("the dry run scheduled %d steps", len(steps))
	}
	done := b.post("/console/purchases/"+pid+"/reconcile", url.Values{"csrf": {hidden(t, dry.body, "csrf")}})
	if done.status != http.StatusSeeOther {
		t.Fatalf("reconcile = %d\n%s", done.status, done.body)
	}
	p, _ := e.db.GetPurchase(e.ctx, pid)
	if p.Status != store.PurchaseCompleted {
		t.Errorf("after the real pass the purchase is %s", p.Status)
	}
	if steps, _ := e.db.PurchaseSteps(e.ctx, pid); len(steps) == 0 {
		t.Error("the real pass scheduled no pipeline")
	}
	passes, _ := e.db.RecentReconcilePasses(e.ctx, 5)
	if len(passes) != 1 || passes[0].Kind != "targeted" || passes[0].Changes != 1 || passes[0].Healed != 1 {
		t.Errorf("passes = %+v", passes)
	}
	audit, _ := e.db.PurchaseAudit(e.ctx, pid, 5)
	if len(audit) != 1 || audit[0].Action != "reconcile" || !strings.Contains(string(audit[0].Before), `"status": "pending"`) ||
		!strings.Contains(string(audit[0].After), `"status": "completed"`) {
		t.Errorf("audit = %+v", audit)
	}
	again := b.get("/console/purchases/" + pid + "/reconcile")
	if !strings.Contains(again.body, "Nothing differs") {
		t.Errorf("a second dry run:\n%s", again.body)
	}
}

func TestGrantAndRevokeAccessThroughRepairAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, _ := e.paidPurchase(product, map[string]store.StepStatus{})
	b := e.signedIn()
	csrf := b.csrf()
	confirm := b.get("/console/purchases/" + p.ID + "/access/grant")
	if confirm.status != http.StatusOK || !strings.Contains(confirm.body, "repair pipeline") {
		t.Fatalf("confirmation = %d\n%s", confirm.status, confirm.body)
	}
	if a := b.post("/console/purchases/"+p.ID+"/access/grant", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("grant = %d\n%s", a.status, a.body)
	}
	steps, _ := e.db.PurchaseSteps(e.ctx, p.ID)
	if len(steps) != 1 || steps[0].Name != "grant_access" || steps[0].Pipeline != "repair:granted:1" {
		t.Fatalf("scheduled %+v", steps)
	}
	// A second grant while the first is under way schedules nothing, and says so.
	if a := b.post("/console/purchases/"+p.ID+"/access/grant", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("second grant = %d", a.status)
	}
	audit, _ := e.db.PurchaseAudit(e.ctx, p.ID, 5)
	if len(audit) != 2 || audit[0].Note != "nothing scheduled: the product has no access provider, or a step of the same kind is under way" ||
		audit[1].Note != "scheduled 1 step(s)" {
		t.Errorf("audit = %+v", audit)
	}
	if a := b.post("/console/purchases/"+p.ID+"/access/revoke", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("revoke = %d", a.status)
	}
	if steps, _ := e.db.PurchaseSteps(e.ctx, p.ID); len(steps) != 2 || steps[1].Name != "revoke_access" {
		t.Errorf("after revoke: %+v", steps)
	}
	ebook, _ := e.paidPurchase("ebook", map[string]store.StepStatus{})
	if a := b.get("/console/purchases/" + ebook.ID + "/access/grant"); !strings.Contains(a.body, "not delivered by an access provider") {
		t.Errorf("grant for a product without access:\n%s", a.body)
	}
	if a := b.get("/console/purchases/" + p.ID + "/access/steal"); a.status != http.StatusNotFound {
		t.Errorf("an unknown access action = %d", a.status)
	}
}

func TestBulkRetryOfFailedSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, a := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepFailed})
	_, b2 := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepFailed,
		"purchase_confirmation": store.StepDone})
	b := e.signedIn()
	list := b.get("/console/steps?view=failed")
	for _, s := range []store.Step{a["grant_access"], b2["grant_access"]} {
		if !strings.Contains(list.body, `name="id" value="`+itoa(s.ID)+`"`) {
			t.Fatalf("the failed list lacks step %d:\n%s", s.ID, list.body)
		}
	}
	ids := url.Values{"id": {itoa(a["grant_access"].ID), itoa(b2["grant_access"].ID), itoa(b2["purchase_confirmation"].ID)}}
	confirm := b.get("/console/steps/retry?" + ids.Encode())
	if confirm.status != http.StatusOK || !strings.Contains(confirm.body, "Retry 3 failed step(s)?") {
		t.Fatalf("confirm = %d\n%s", confirm.status, confirm.body)
	}
	form := url.Values{"csrf": {hidden(t, confirm.body, "csrf")}, "id": ids["id"]}
	done := b.post("/console/steps/retry", form)
	if done.status != http.StatusSeeOther {
		t.Fatalf("bulk retry = %d\n%s", done.status, done.body)
	}
	for _, s := range []store.Step{a["grant_access"], b2["grant_access"]} {
		if got := e.step(s.ID); got.Status != store.StepPending {
			t.Errorf("step %d is %s", s.ID, got.Status)
		}
	}
	if got := e.step(b2["purchase_confirmation"].ID); got.Status != store.StepDone {
		t.Errorf("the done step became %s", got.Status)
	}
	shown := b.get(done.header.Get("Location"))
	if strings.Count(shown.body, "retry_step on step") != 2 {
		t.Errorf("the page after the bulk retry:\n%s", shown.body)
	}
	if a := b.post("/console/steps/retry", url.Values{"csrf": {form.Get("csrf")}, "id": {"x"}}); a.status != http.StatusBadRequest {
		t.Errorf("bad ids = %d", a.status)
	}
}
