package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// chromium finds Debian's chromium. Missing, the test fails (never skips)
// and says how to install it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PAYMENTD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the browser tests need Chromium: install Debian's chromium package (sudo apt-get install -y chromium), " +
		"as .ci/run does, or point PAYMENTD_CHROMIUM at a Chromium binary")
	return ""
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// artifactDir is where screenshots of a failure go: the test's artifact
// directory under go test's output directory when -artifacts is given,
// else .data/artifacts/<test> in the repository, so they outlive the run.
func artifactDir(t *testing.T) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", ".data", "artifacts", t.Name()))
	return dir
}

// browserTest drives headless Chromium against one running dev stack.
type browserTest struct {
	t    *testing.T
	ctx  context.Context
	info devInfo
	logs *syncBuffer
}

// run runs chromedp actions, failing the test with what it was doing.
func (b *browserTest) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action that returns a value.
func value[T any](b *browserTest, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// text returns the visible text of the element sel names.
func (b *browserTest) textOf(sel string) string {
	b.t.Helper()
	return value(b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// text returns the page's visible text.
func (b *browserTest) text() string { b.t.Helper(); return b.textOf("body") }

// location returns the page's URL.
func (b *browserTest) location() string {
	b.t.Helper()
	return value(b, "read the location", chromedp.Location())
}

// eventually polls cond until it holds or the deadline passes. reload
// reloads the page between polls.
func (b *browserTest) eventually(what string, within time.Duration, reload bool, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not within %s; the page says:\n%s", what, within, b.text())
		}
		time.Sleep(200 * time.Millisecond)
		if reload {
			b.run("reload", chromedp.Reload())
		}
	}
}

// screenshot writes a full-page PNG of url to dir.
func (b *browserTest) screenshot(dir, name, url string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Navigate(url))
	var png []byte
	if err == nil {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot of the %s: %s", name, path)
}

// The dev stack in a real browser: buy on the storefront and pay on the
// emulator's page, while GitHub refuses the invitation; the purchase
// completes and its confirmation email is listed. Then the console: a
// request without a session goes to the sign-in page, a wrong password
// is refused, the right one signs in; search the buyer by email, open the
// purchase whose grant failed, retry it, and watch the step become done
// and the access email appear in the timeline. A form posted without its
// CSRF token is refused. Then a subscription: subscribe on the storefront,
// pay, see it active and its subscription_started email listed, find it in
// the console by its sub_ id and see its timeline; Manage billing opens
// the portal.
func TestBrowserStorefrontAndConsole(t *testing.T) {
	exe := chromium(t)
	api, admin := freeAddr(t), freeAddr(t)
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "PAYMENTD_HTTP_ADDR": api, "PAYMENTD_ADMIN_ADDR": admin,
		"PAYMENTD_LOG_LEVEL": "warn"}
	cfg, err := config.Load("../../config.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Stripe.SuccessURL = "http://" + api + "/?session_id={CHECKOUT_SESSION_ID}"
	cfg.Stripe.CancelURL = "http://" + api + "/"
	cfg.Email.OutboxDir = t.TempDir()
	cfg.Steps.MaxAttempts = 1 // GitHub's one refusal fails the grant for good
	cfg.Steps.PollInterval = 100 * time.Millisecond
	for i := range cfg.Products {
		if cfg.Products[i].Key == "pro_subscription" {
			cfg.Products[i].TrialDays = 0 // paid at once: active, not trialing
		}
	}

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan devInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- devStack(ctx, &cliEnv{stdout: io.Discard, stderr: logs, getenv: func(string) string { return "" }}, cfg,
			devOptions{dataDir: t.TempDir(), emuAddr: "127.0.0.1:0", ghAddr: "127.0.0.1:0", ready: func(i devInfo) { up <- i }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("the dev stack: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the dev stack did not stop within 30s")
		}
	})
	var info devInfo
	select {
	case info = <-up:
	case err := <-done:
		t.Fatalf("the dev stack ended: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the dev stack was not up within 60s\n%s", logs.String())
	}
	// GitHub refuses the first invitation.
	info.github.FailNextRequest(1, http.MethodPut, "/collaborators/", http.StatusBadGateway)

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first run starts the browser, on a context without a timeout.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium (%s): %v", exe, err)
	}
	b := &browserTest{t: t, ctx: bctx, info: info, logs: logs}
	store := "http://" + api
	console := "http://" + admin + "/console/"
	var purchasePage, subscriptionPage string
	defer func() {
		if !t.Failed() {
			return
		}
		dir := artifactDir(t)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Logf("screenshots: %v", err)
			return
		}
		b.screenshot(dir, "overview", console)
		if purchasePage != "" {
			b.screenshot(dir, "timeline", purchasePage)
		}
		if subscriptionPage != "" {
			b.screenshot(dir, "subscription", subscriptionPage)
		}
		t.Logf("dev stack log:\n%s", logs.String())
	}()

	// The storefront: buy, pay on the emulator's page, come back.
	b.run("open the storefront", chromedp.Navigate(store+"/"), chromedp.WaitVisible(chromedp.CSS(`form.buy button`)))
	if txt := b.text(); !strings.Contains(txt, "Acme Pro · $199.00") {
		t.Fatalf("the storefront does not show the product:\n%s", txt)
	}
	b.run("buy", chromedp.Click(chromedp.CSS(`form.buy button`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/pay"] button`)))
	if loc := b.location(); !strings.HasPrefix(loc, info.emuURL+"/checkout/cs_") {
		t.Fatalf("Buy led to %s, not the emulator's checkout page", loc)
	}
	b.run("pay", chromedp.Click(chromedp.CSS(`form[action$="/pay"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#purchases`)))
	if loc := b.location(); !strings.HasPrefix(loc, store+"/") {
		t.Fatalf("paying led to %s, not back to the storefront", loc)
	}
	b.eventually("the purchase shows completed", 20*time.Second, false, func() bool {
		return strings.Contains(b.textOf("#purchases"), "pro_one_time: completed · $199.00")
	})
	b.eventually("the confirmation email is listed", 20*time.Second, false, func() bool {
		return strings.Contains(b.textOf("#emails"), "(purchase_confirmation to buyer@example.com)")
	})
	href := value(b, "read the email's link", chromedp.AttributeValue(chromedp.CSS(`#emails a`), "href")).Value
	b.run("open the email", chromedp.Click(chromedp.CSS(`#emails a`)))
	if code, body := get(t, store+href); code != http.StatusOK || !strings.Contains(body, "Acme") {
		t.Errorf("the listed email %s = %d", href, code)
	}

	// The grant failed for good: GitHub refused and there is one attempt.
	ps, err := info.app.db.PurchasesByEmail(b.ctx, devEmail)
	if err != nil || len(ps) != 1 {
		t.Fatalf("purchases of %s: %v, %v", devEmail, ps, err)
	}
	p := ps[0]
	grant := waitForStep(t, info.app.db, p.ID, "grant_access", "failed")

	// The console: no session → the sign-in page.
	b.run("open the console", chromedp.Navigate(console+"steps?view=failed"), chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
	if loc := b.location(); !strings.HasPrefix(loc, console+"login?next=") {
		t.Errorf("without a session the console led to %s", loc)
	}
	b.run("a wrong password", chromedp.SendKeys(chromedp.CSS(`input[name=name]`), info.operator),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "not the password"),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)), chromedp.WaitVisible(chromedp.CSS(`.problem`)))
	if txt := b.text(); !strings.Contains(txt, "Wrong name or password") {
		t.Errorf("a wrong password:\n%s", txt)
	}
	b.run("the right password", chromedp.SetValue(chromedp.CSS(`input[name=name]`), info.operator),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), info.password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)), chromedp.WaitVisible(chromedp.CSS(`nav`)))
	if txt := b.text(); !strings.Contains(txt, "Failed steps") || !strings.Contains(txt, "grant_access") {
		t.Errorf("after signing in, the failed steps page:\n%s", txt)
	}

	// Search the buyer by email; open the purchase.
	b.run("search", chromedp.Navigate(console), chromedp.WaitVisible(chromedp.CSS(`.quicksearch input`)),
		chromedp.SendKeys(chromedp.CSS(`.quicksearch input`), devEmail),
		chromedp.Submit(chromedp.CSS(`.quicksearch input`)), chromedp.WaitVisible(chromedp.CSS(`table.purchases`)))
	b.run("open the purchase", chromedp.Click(chromedp.CSS(`table.purchases a[href="/console/purchases/`+p.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.timeline`)))
	purchasePage = b.location()
	if txt := b.text(); !strings.Contains(txt, "github: ") || !strings.Contains(txt, "Sent email purchase_confirmation to "+devEmail) {
		t.Errorf("the timeline lacks the failed grant or the confirmation:\n%s", txt)
	}

	// Retry the grant, confirm, and watch it become done and the access
	// email appear (the page reloads itself while steps are in flight).
	retry := fmt.Sprintf(`a[href="/console/steps/%d/retry"]`, grant.ID)
	b.run("retry", chromedp.Click(chromedp.CSS(retry)), chromedp.WaitVisible(chromedp.CSS(`form.confirm button`)))
	b.run("confirm", chromedp.Click(chromedp.CSS(`form.confirm button`)), chromedp.WaitVisible(chromedp.CSS(`#done`)))
	if txt := b.text(); !strings.Contains(txt, fmt.Sprintf("retry_step on step %d", grant.ID)) {
		t.Errorf("after the retry:\n%s", txt)
	}
	b.eventually("the access email in the timeline", 30*time.Second, true, func() bool {
		return strings.Contains(b.text(), "Sent email access_granted to "+devEmail)
	})
	if s := waitForStep(t, info.app.db, p.ID, "grant_access", "done"); s.ID != grant.ID {
		t.Errorf("a new grant step %d, not the retried %d", s.ID, grant.ID)
	}
	// Its preview opens in the timeline (a sandboxed frame the session's
	// cookie still reaches).
	email := waitForStep(t, info.app.db, p.ID, "access_email", "done")
	step := fmt.Sprintf("#step-%d", email.ID)
	b.run("open the preview", chromedp.Click(chromedp.CSS(step+" details summary")),
		chromedp.WaitVisible(chromedp.CSS(step+" iframe.preview")))
	b.eventually("the access email's preview", 20*time.Second, false, func() bool {
		// The frame is sandboxed: its own process (a target of its own),
		// and no script, so its text is read from the DOM tree the
		// protocol returns. Had the session's cookie not reached it, it
		// would have gone to the sign-in page instead.
		targets, err := chromedp.Targets(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			if tg.Type != "iframe" || !strings.HasSuffix(tg.URL, fmt.Sprintf("/steps/%d/email", email.ID)) {
				continue
			}
			fctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(tg.TargetID), chromedp.WithDetachOnCancel())
			defer cancel()
			tctx, cancelT := context.WithTimeout(fctx, 5*time.Second)
			defer cancelT()
			nodes, err := chromedp.Run(tctx, chromedp.Nodes(chromedp.CSS("body"), chromedp.Populate(-1, false)))
			return err == nil && len(nodes) == 1 && strings.Contains(nodeText(nodes[0]), "@octocat")
		}
		return false
	})
	audit, err := info.app.db.PurchaseAudit(b.ctx, p.ID, 10)
	if err != nil || len(audit) != 1 || audit[0].Operator != info.operator || audit[0].Action != "retry_step" {
		t.Errorf("audit = %+v, %v", audit, err)
	}

	// A form without its CSRF token is refused, and changes nothing.
	b.run("post without the token", chromedp.Evaluate[chromedp.Void](`document.querySelector('.signout input[name=csrf]').remove()`),
		chromedp.Submit(chromedp.CSS(`.signout button`)), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
	if txt := b.text(); !strings.Contains(txt, "CSRF token is missing or wrong") {
		t.Errorf("a form without its token:\n%s", txt)
	}
	b.run("still signed in", chromedp.Navigate(console), chromedp.WaitVisible(chromedp.CSS(`nav`)))
	if loc := b.location(); loc != console {
		t.Errorf("after the refused sign-out the console led to %s", loc)
	}

	// A subscription: subscribe on the storefront, pay on the emulator's
	// page, come back, and see it active with its subscription_started
	// email listed; then its page in the console, with its timeline.
	subscribe := `form.buy[data-product="pro_subscription"] button`
	b.run("open the storefront again", chromedp.Navigate(store+"/"), chromedp.WaitVisible(chromedp.CSS(subscribe)))
	b.run("subscribe", chromedp.Click(chromedp.CSS(subscribe)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/pay"] button`)))
	if loc := b.location(); !strings.HasPrefix(loc, info.emuURL+"/checkout/cs_") {
		t.Fatalf("Subscribe led to %s, not the emulator's checkout page", loc)
	}
	// The emulator's page fills in the email of a session's customer_email
	// only, and a subscription's session names its customer instead.
	b.run("pay for the subscription", chromedp.SetValue(chromedp.CSS(`#email`), devEmail),
		chromedp.Click(chromedp.CSS(`form[action$="/pay"] button`)), chromedp.WaitVisible(chromedp.CSS(`#subscriptions`)))
	b.eventually("the subscription shows active", 20*time.Second, false, func() bool {
		return strings.Contains(b.textOf("#subscriptions"), "pro_subscription (pro_monthly): active · $29.00 / month")
	})
	b.eventually("the subscription_started email is listed", 20*time.Second, false, func() bool {
		return strings.Contains(b.textOf("#emails"), "(subscription_started to buyer@example.com)")
	})
	subs, err := info.app.db.UserSubscriptions(b.ctx, devUser)
	if err != nil || len(subs) != 1 {
		t.Fatalf("subscriptions of %s: %v, %v", devUser, subs, err)
	}
	b.run("find the subscription in the console", chromedp.Navigate(console+"search?q="+subs[0].StripeSubscriptionID),
		chromedp.WaitVisible(chromedp.CSS(`.timeline`)))
	subscriptionPage = b.location()
	if subscriptionPage != console+"subscriptions/"+subs[0].ID {
		t.Errorf("searching %s led to %s", subs[0].StripeSubscriptionID, subscriptionPage)
	}
	// The email reaches the outbox before its step is recorded done, and
	// the timeline lists it once it is: poll, reloading.
	b.eventually("the subscription's timeline shows its creation and its email", 20*time.Second, true, func() bool {
		txt := b.text()
		return strings.Contains(txt, "Subscription: created ("+subs[0].StripeSubscriptionID+")") &&
			strings.Contains(txt, "Sent email subscription_started to "+devEmail)
	})

	// The storefront's billing portal link opens the portal of the
	// subscriber's customer.
	b.run("open the billing portal", chromedp.Navigate(store+"/"), chromedp.WaitVisible(chromedp.CSS(`#portal`)),
		chromedp.Click(chromedp.CSS(`#portal`)), chromedp.WaitNotPresent(chromedp.CSS(`#portal`)))
	if loc := b.location(); !strings.HasPrefix(loc, info.emuURL+"/billing/p/session/") {
		t.Errorf("Manage billing led to %s, not the emulator's portal", loc)
	}
}

// nodeText is the text of n's subtree, from the nodes' values.
func nodeText(n *chromedp.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	if n.NodeType == chromedp.NodeTypeText {
		b.WriteString(n.NodeValue)
	}
	for _, c := range n.Children {
		b.WriteString(nodeText(c))
	}
	b.WriteString(nodeText(n.ContentDocument))
	return b.String()
}

// waitForStep waits until the purchase's step name has status.
func waitForStep(t *testing.T, db *store.DB, purchaseID, name, status string) store.Step {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		steps, err := db.PurchaseSteps(context.Background(), purchaseID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if s.Name == name && string(s.Status) == status {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s of %s never became %s: %+v", name, purchaseID, status, steps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
