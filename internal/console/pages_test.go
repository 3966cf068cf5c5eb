package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

func TestSearchFindsByEmailIDsAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var last store.Purchase
	for i := range pageSize + 5 {
		p, _ := e.paidPurchase(product, map[string]store.StepStatus{})
		last = p
		e.clock.Advance(time.Second)
		_ = i
	}
	b := e.signedIn()

	first := b.get("/console/search?q=ADA%40example.com")
	if first.status != http.StatusOK || strings.Count(first.body, `<a href="/console/purchases/`) != pageSize {
		t.Fatalf("first page = %d with %d rows", first.status, strings.Count(first.body, `<a href="/console/purchases/`))
	}
	if !strings.Contains(first.body, "/console/purchases/"+last.ID) || !strings.Contains(first.body, "Searching by email") {
		t.Error("the newest purchase is not on the first page")
	}
	i := strings.Index(first.body, `rel="next" href="`)
	if i < 0 {
		t.Fatal("no next page link")
	}
	next := first.body[i+len(`rel="next" href="`):]
	next = strings.ReplaceAll(next[:strings.Index(next, `"`)], "&amp;", "&")
	second := b.get(next)
	if n := strings.Count(second.body, `<a href="/console/purchases/`); second.status != http.StatusOK || n != 5 ||
		strings.Contains(second.body, `rel="next"`) {
		t.Errorf("second page = %d with %d rows", second.status, n)
	}

	// An exact id opens the purchase.
	for _, q := range []string{last.ID, last.StripeSessionID, *last.StripePaymentIntentID, *last.StripeChargeID} {
		a := b.get("/console/search?q=" + url.QueryEscape(q))
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/purchases/"+last.ID {
			t.Errorf("search %s = %d → %q", q, a.status, a.header.Get("Location"))
		}
	}
	if a := b.get("/console/search?q=user-1&status=completed"); strings.Count(a.body, `<a href="/console/purchases/`) != pageSize {
		t.Errorf("by user id and status: %d rows", strings.Count(a.body, `<a href="/console/purchases/`))
	}
	if a := b.get("/console/search?q=nobody%40example.com"); !strings.Contains(a.body, "No purchase matches.") {
		t.Error("an unknown email lists something")
	}
	for q, want := range map[string]string{
		"status=paid":                         `unknown status &#34;paid&#34;`,
		"from=yesterday":                      "is not a date like 2026-04-01",
		"from=2026-04-02&to=2026-04-01":       "the from date is after the to date",
		"after=garbage":                       "the page cursor is malformed",
		"q=" + strings.Repeat("x", 201):       "longer than 200 characters",
		"q=cs_x&after=2026-01-01T00:00:00Z_1": "the page cursor is malformed",
	} {
		a := b.get("/console/search?" + q)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, want) {
			t.Errorf("search %s = %d, want 400 saying %q\n%.500s", q, a.status, want, a.body)
		}
	}
	day := t0.Format(dateLayout)
	if a := b.get("/console/search?from=" + day + "&to=" + day); strings.Count(a.body, `<a href="/console/purchases/`) != pageSize {
		t.Errorf("by date: %d rows", strings.Count(a.body, `<a href="/console/purchases/`))
	}
	if a := b.get("/console/search?to=2026-03-01"); !strings.Contains(a.body, "No purchase matches.") {
		t.Error("a date range before every purchase lists something")
	}
}

func TestPurchasePageShowsFieldsDashboardAndTimeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"purchase_confirmation": store.StepDone,
		"grant_access": store.StepDone, "access_email": store.StepDone})
	g, err := e.db.RecordGrantAttempt(e.ctx, store.Grant{PurchaseID: p.ID, Provider: store.ProviderGitHub, GitHubUserID: 583231,
		GitHubLogin: "octocat"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.MarkGrantGranted(e.ctx, g.ID, 77, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.db.UpsertRefund(e.ctx, store.Refund{ID: "re_1", PurchaseID: p.ID, Amount: 5000, Currency: "usd",
		Status: "succeeded", CreatedAt: t0.Add(time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.db.UpsertDispute(e.ctx, store.Dispute{ID: "dp_1", PurchaseID: p.ID, Amount: 19900, Currency: "usd",
		Status: "needs_response", Reason: "fraudulent", CreatedAt: t0.Add(2 * time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	b := e.signedIn()
	page := b.get("/console/purchases/" + p.ID)
	for _, want := range []string{
		"https://dashboard.stripe.com/test/payments/" + *p.StripePaymentIntentID,
		buyerEmail, "$199.00", p.StripeSessionID,
		"Access github to octocat (account 583231): <strong>granted</strong>, invitation 77",
		"Refund <code>re_1</code>: $50.00, succeeded",
		"Dispute <code>dp_1</code>: $199.00, needs_response (fraudulent)",
		"Sent email <strong>access_granted</strong> to " + buyerEmail,
		`/console/steps/` + itoa(st["access_email"].ID) + `/resend`,
		`/console/purchases/` + p.ID + `/access/revoke`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the purchase page lacks %q", want)
		}
	}
	// The timeline is in order: paid, steps, grant, refund, dispute.
	order := []string{"Purchase: paid", "<strong>purchase_confirmation</strong>", "Access github", "Refund <code>re_1", "Dispute <code>dp_1"}
	pos := -1
	for _, s := range order {
		i := strings.Index(page.body, s)
		if i < pos {
			t.Errorf("%q comes before what precedes it in the timeline", s)
		}
		pos = i
	}
	if strings.Contains(page.body, `http-equiv="refresh"`) {
		t.Error("a purchase with nothing in flight reloads itself")
	}
	if a := b.get("/console/purchases/" + uuid.NewString()); a.status != http.StatusNotFound {
		t.Errorf("an unknown purchase = %d", a.status)
	}
	if a := b.get("/console/purchases/not-a-uuid"); a.status != http.StatusNotFound {
		t.Errorf("a malformed id = %d", a.status)
	}
}

func TestOverviewAndStuckSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, st := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepFailed,
		"purchase_confirmation": store.StepPending})
	e.exec(`UPDATE steps SET run_at = $2 WHERE id = $1`, st["purchase_confirmation"].ID, t0.Add(-2*time.Hour))
	if _, err := e.db.InsertSteps(e.ctx, t0, []store.NewStep{{PurchaseID: p.ID, Pipeline: "alert:" + itoa(st["grant_access"].ID),
		Name: "operator_alert", RunAt: t0, MaxAttempts: 1,
		Args: []byte(fmt.Sprintf(`{"step_id": %d, "purchase_id": %q, "pipeline": "purchase", "step": "grant_access", "attempts": 1, "last_error": "github: add collaborator: 502 Bad Gateway"}`,
			st["grant_access"].ID, p.ID))}}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.RecordReconcilePass(e.ctx, store.PassSummary{Kind: "incremental", StartedAt: t0, Duration: 1234 * time.Millisecond,
		Seen: 40, Changes: 3, Healed: 2, Errors: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.RecordReconcileError(e.ctx, "session", "cs_broken", "stripe: 500", t0, t0); err != nil {
		t.Fatal(err)
	}
	b := e.signedIn()
	o := b.get("/console/")
	for _, want := range []string{
		`<a href="/console/search?status=completed">1</a>`,
		`<a href="/console/steps?view=failed">1</a>`,
		"0 running past their lease, 1 pending for over 1h0m0s",
		"grant_access <small>(purchase, step " + itoa(st["grant_access"].ID) + ")</small>",
		"<td data-label=\"Duration\">1234 ms</td>", "<td data-label=\"Healed\">2</td>",
		`<a href="/console/search?q=cs_broken">cs_broken</a>`,
		"alice</strong> sign_in",
	} {
		if !strings.Contains(o.body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	stuck := b.get("/console/steps?view=stuck")
	if !strings.Contains(stuck.body, "pending since "+t0.Add(-2*time.Hour).Format(timeLayout)) {
		t.Errorf("the stuck list lacks the pending step:\n%s", stuck.body)
	}
	if a := b.get("/console/steps?view=everything"); a.status != http.StatusBadRequest {
		t.Errorf("an unknown view = %d", a.status)
	}
}

// The layout reads on a phone: a viewport, and tables that stack.
func TestPagesHaveNoScriptAndAViewport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p, _ := e.paidPurchase(product, map[string]store.StepStatus{"grant_access": store.StepFailed})
	sub, o := e.subscribe(), e.paidOrder()
	b := e.signedIn()
	for _, path := range []string{"/console/", "/console/search?q=ada%40example.com", "/console/purchases/" + p.ID,
		"/console/subscriptions/" + sub.ID, "/console/orders/" + o.ID, "/console/steps?view=failed", "/console/login"} {
		a := b.get(path)
		if path == "/console/login" {
			a = e.browser().get(path)
		}
		if !strings.Contains(a.body, `<meta name="viewport" content="width=device-width, initial-scale=1">`) ||
			strings.Contains(a.body, "<script") {
			t.Errorf("%s: no viewport, or a script", path)
		}
	}
	css := b.get("/console/static/console.css")
	if !strings.Contains(css.body, "--primary: "+e.cfg.Brand.PrimaryColor) || !strings.Contains(css.body, "@media (max-width: 640px)") {
		t.Errorf("the stylesheet lacks the brand colour or the phone layout:\n%.300s", css.body)
	}
}
