package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// subscribe starts a monthly subscription to config.yaml's
// pro_subscription for ada (user-1) on the emulator, reconciles it as a
// hint would (the reconciler's Object), runs the steps that schedules, and
// returns its row.
func (e *env) subscribe() store.Subscription {
	e.t.Helper()
	prod, err := e.api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: "pro_subscription", Name: "Acme Pro Cloud"}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	price, err := e.api.CreateRecurringPrice(e.ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{
		ProductID: prod.ID, LookupKey: "pro_monthly", Currency: "usd", Amount: 2900}, Interval: "month"}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: buyerEmail, Items: []stripeemu.LineItem{{Price: price.ID}},
		Metadata: map[string]string{reconcile.MetaSubscriptionID: uuid.NewString(), "user_id": "user-1",
			"product": "pro_subscription"}})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.rec.Object(e.ctx, s.ID, reconcile.NewReport(false)); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.engine.RunDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	row, err := e.db.SubscriptionByStripeID(e.ctx, s.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return row
}

// grantCredits gives user-1 a pack of n credits for a purchase.
func (e *env) grantCredits(cause string, n int64) {
	e.t.Helper()
	err := e.db.InTx(e.ctx, func(q *store.Queries) error {
		a, err := q.LockCreditAccount(e.ctx, store.CreditHolder{UserID: "user-1"}, e.clock.Now())
		if err != nil {
			return err
		}
		_, _, err = q.ApplyCreditChange(e.ctx, store.CreditChange{AccountID: a.ID, Kind: store.CreditGrant,
			CauseKind: store.CausePurchase, CauseID: cause, Lot: &store.NewLot{Source: store.LotPack, SourceID: cause, Amount: n}},
			e.clock.Now())
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestSubscriptionInOverviewSearchAndDetail: a subscription reconciled from
// the emulator is counted on the overview, found by its sub_, in_, cus_,
// id and subscriber's email, and its page shows its fields, invoices, the
// subscriber's credits and a timeline with the email it sent and a preview.
func TestSubscriptionInOverviewSearchAndDetail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	sub := e.subscribe()
	e.grantCredits("8a3c5f7e-0000-4000-8000-000000000001", 500)
	b := e.signedIn()

	if o := b.get("/console/"); !strings.Contains(o.body, `kind=subscriptions&amp;status=active">1</a>`) {
		t.Errorf("the overview does not count the active subscription:\n%.3000s", o.body)
	}

	page := "/console/subscriptions/" + sub.ID
	for _, q := range []string{sub.StripeSubscriptionID, *sub.LatestInvoiceID, sub.ID} {
		a := b.get("/console/search?q=" + url.QueryEscape(q))
		if a.status != http.StatusSeeOther || a.header.Get("Location") != page {
			t.Errorf("search %s = %d → %q", q, a.status, a.header.Get("Location"))
		}
	}
	for _, q := range []string{"q=" + sub.StripeCustomerID, "q=ADA%40example.com", "q=user-1",
		"kind=subscriptions&status=active"} {
		a := b.get("/console/search?" + q)
		if a.status != http.StatusOK || !strings.Contains(a.body, `<a href="`+page+`">`) {
			t.Errorf("search %s = %d without the subscription", q, a.status)
		}
	}
	if a := b.get("/console/search?kind=subscriptions&status=past_due"); !strings.Contains(a.body, "No subscription matches.") {
		t.Error("a status filter lists a subscription not in it")
	}
	if a := b.get("/console/search?q=" + buyerEmail + "&kind=purchases"); strings.Contains(a.body, page) {
		t.Error("a search of purchases lists a subscription")
	}
	for q, want := range map[string]string{
		"kind=subscriptions&status=completed": "unknown subscription status &#34;completed&#34;",
		"kind=carts":                          "unknown kind &#34;carts&#34;",
	} {
		if a := b.get("/console/search?" + q); a.status != http.StatusBadRequest || !strings.Contains(a.body, want) {
			t.Errorf("search %s = %d, want 400 saying %q", q, a.status, want)
		}
	}

	steps, err := e.db.SubjectSteps(e.ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	var started store.Step
	for _, st := range steps {
		if e, ok := emailOf(st); ok && e.Template == "subscription_started" {
			started = st
		}
	}
	if started.ID == 0 {
		t.Fatalf("no subscription_started email among the subscription's steps: %+v", steps)
	}
	d := b.get(page)
	for _, want := range []string{
		"https://dashboard.stripe.com/test/subscriptions/" + sub.StripeSubscriptionID,
		"https://dashboard.stripe.com/test/customers/" + sub.StripeCustomerID,
		buyerEmail, "$29.00", "pro_monthly",
		"Invoice <code>" + *sub.LatestInvoiceID + "</code>",
		"Subscription: created (" + sub.StripeSubscriptionID + ")",
		"Sent email <strong>subscription_started</strong> to " + buyerEmail,
		page + "/steps/" + itoa(started.ID) + "/email",
		"balance <strong>500</strong>", "grant 500 → 500",
		page + "/reconcile",
	} {
		if !strings.Contains(d.body, want) {
			t.Errorf("the subscription page lacks %q", want)
		}
	}
	if strings.Contains(d.body, "/console/steps/"+itoa(started.ID)+"/resend") {
		t.Error("a subscription's email offers a resend, which only purchases have")
	}
	if p := b.get(page + "/steps/" + itoa(started.ID) + "/email"); p.status != http.StatusOK ||
		!strings.Contains(p.body, "Acme Pro Cloud") || !strings.Contains(p.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("preview = %d, CSP %q\n%.1000s", p.status, p.header.Get("Content-Security-Policy"), p.body)
	}
	for _, path := range []string{"/console/subscriptions/" + uuid.NewString(), "/console/subscriptions/sub_x",
		page + "/steps/999999/email"} {
		if a := b.get(path); a.status != http.StatusNotFound {
			t.Errorf("%s = %d, want 404", path, a.status)
		}
	}
}

// TestSubscriptionStepRetryAndReconcile: a failed step of a subscription
// is retried from its page and the action shows there; a reconcile shows
// the dry run's difference first, changes nothing, then applies it and is
// audited on the subscription.
func TestSubscriptionStepRetryAndReconcile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	sub := e.subscribe()
	page := "/console/subscriptions/" + sub.ID
	steps, err := e.db.SubjectSteps(e.ctx, sub.ID)
	if err != nil || len(steps) == 0 {
		t.Fatalf("steps %v, %v", steps, err)
	}
	st := steps[0]
	e.exec(`UPDATE steps SET status = 'failed', last_error = 'smtp: 451 try later', result = NULL, finished_at = $2,
		updated_at = $2 WHERE id = $1`, st.ID, e.clock.Now())
	b := e.signedIn()
	if d := b.get(page); !strings.Contains(d.body, "/console/steps/"+itoa(st.ID)+"/retry") ||
		!strings.Contains(d.body, "smtp: 451 try later") {
		t.Fatal("the failed step shows no error or retry on the subscription's page")
	}
	a := b.post("/console/steps/"+itoa(st.ID)+"/retry", url.Values{"csrf": {b.csrf()}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), page+"?done=") {
		t.Fatalf("retry = %d → %q", a.status, a.header.Get("Location"))
	}
	if got := e.step(st.ID); got.Status != store.StepPending {
		t.Errorf("retried step is %s", got.Status)
	}
	if d := b.get(a.header.Get("Location")); !strings.Contains(d.body, "retry_step step "+itoa(st.ID)) {
		t.Error("the retry is not among the subscription's operator actions")
	}

	// A step of the subscription not run yet is canceled from its page too.
	if _, err := e.db.InsertSteps(e.ctx, e.clock.Now(), []store.NewStep{{SubjectKind: store.SubjectSubscription,
		SubjectID: sub.ID, Pipeline: "email:trial_ending:test", Name: "subscription_email",
		RunAt: e.clock.Now().Add(24 * time.Hour), MaxAttempts: 1}}); err != nil {
		t.Fatal(err)
	}
	later, err := e.db.SubjectSteps(e.ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	pending := later[len(later)-1]
	c := b.post("/console/steps/"+itoa(pending.ID)+"/cancel", url.Values{"csrf": {b.csrf()}})
	if c.status != http.StatusSeeOther || !strings.HasPrefix(c.header.Get("Location"), page+"?done=") ||
		e.step(pending.ID).Status != store.StepCanceled {
		t.Errorf("cancel = %d → %q, step %s", c.status, c.header.Get("Location"), e.step(pending.ID).Status)
	}

	// Stripe moves on without a webhook: the dry run shows it, the row waits.
	if err := e.emu.SetCancelAtPeriodEnd(sub.StripeSubscriptionID, true); err != nil {
		t.Fatal(err)
	}
	audits := e.auditCount()
	dry := b.get(page + "/reconcile")
	if dry.status != http.StatusOK || !strings.Contains(dry.body, "Reconcile this subscription") ||
		strings.Contains(dry.body, "Nothing differs") {
		t.Fatalf("dry run = %d\n%.3000s", dry.status, dry.body)
	}
	if row, _ := e.db.GetSubscription(e.ctx, sub.ID); row.CancelAtPeriodEnd || e.auditCount() != audits {
		t.Fatal("the dry run changed the subscription or wrote an audit")
	}
	if a := b.post(page+"/reconcile", url.Values{}); a.status != http.StatusForbidden {
		t.Errorf("a reconcile without the CSRF token = %d", a.status)
	}
	done := b.post(page+"/reconcile", url.Values{"csrf": {b.csrf()}})
	if done.status != http.StatusSeeOther || !strings.HasPrefix(done.header.Get("Location"), page+"?done=") {
		t.Fatalf("reconcile = %d → %q", done.status, done.header.Get("Location"))
	}
	if row, _ := e.db.GetSubscription(e.ctx, sub.ID); !row.CancelAtPeriodEnd {
		t.Error("the reconcile did not apply Stripe's cancel_at_period_end")
	}
	as, err := e.db.SubjectAudit(e.ctx, "subscription", sub.ID, nil, 10)
	if err != nil || len(as) != 1 || as[0].Action != "reconcile" || !strings.Contains(string(as[0].After), `"cancel_at_period_end": true`) {
		t.Errorf("audit = %+v, %v", as, err)
	}
	e.clock.Advance(time.Minute)
	if d := b.get(page); !strings.Contains(d.body, "reconcile subscription "+sub.ID) {
		t.Error("the reconcile is not shown on the subscription's page")
	}
}
