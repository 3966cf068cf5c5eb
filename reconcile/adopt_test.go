package reconcile_test

import (
	"encoding/json"
	"errors"
	"github.com/google/uuid"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// foreignAccount adds to e's account what a Stripe account selling more
// than paymentd's product holds: a donation Payment Link (a price with no
// lookup key), "save a card" setup sessions, subscription sessions and
// sessions for a product paymentd does not sell, each one paid (and the
// paid ones partly refunded) and one expired. It returns the sessions by
// the reason they must be skipped.
func foreignAccount(e *env) map[reconcile.SkipReason][]string {
	e.t.Helper()
	price := func(key string, amount int64) string {
		prod, err := e.api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: key, Name: "Other " + key}, "")
		if err != nil {
			e.t.Fatal(err)
		}
		p, err := e.api.CreatePrice(e.ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: key, Currency: "usd", Amount: amount}, "")
		if err != nil {
			e.t.Fatal(err)
		}
		return p.ID
	}
	donation := price("", 500) // no lookup key
	membershipProduct, err := e.api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: "membership_monthly", Name: "Membership"}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	membershipPrice, err := e.api.CreateRecurringPrice(e.ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{
		ProductID: membershipProduct.ID, LookupKey: "membership_monthly", Currency: "usd", Amount: 900}, Interval: "month"}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	membership := membershipPrice.ID
	other := price("stickers", 300)
	out := map[reconcile.SkipReason][]string{}
	add := func(why reconcile.SkipReason, params stripeemu.SessionParams, paid bool) {
		s, err := e.emu.CreateSession(params)
		if err != nil {
			e.t.Fatal(err)
		}
		if paid {
			if err := e.emu.PaySession(s.ID, stripeemu.Pay{Email: "stranger@example.com"}); err != nil {
				e.t.Fatal(err)
			}
			if got, _ := e.emu.Session(s.ID); got.PaymentIntent != nil {
				if _, err := e.emu.Refund(got.PaymentIntent.ID, 100); err != nil {
					e.t.Fatal(err)
				}
			}
		} else if err := e.emu.ExpireSession(s.ID); err != nil {
			e.t.Fatal(err)
		}
		out[why] = append(out[why], s.ID)
	}
	for _, paid := range []bool{true, false} {
		add(reconcile.SkipNoLookupKey, stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: donation}},
			PaymentLink: "plink_donate", CustomerEmail: "donor@example.com"}, paid)
		add(reconcile.SkipNotPaymentMode, stripeemu.SessionParams{Mode: "setup", CustomerEmail: "saver@example.com"}, paid)
		add(reconcile.SkipNotPaymentMode, stripeemu.SessionParams{Mode: "subscription",
			LineItems: []stripeemu.LineItem{{Price: membership}}, CustomerEmail: "member@example.com"}, paid)
		add(reconcile.SkipUnknownProduct, stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: other, Quantity: 2}},
			PaymentLink: "plink_stickers", CustomerEmail: "fan@example.com"}, paid)
	}
	return out
}

func TestOnlyPaymentdSessionsBecomePurchases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	// Ours: an API checkout paid, one expired, and a Payment Link for our
	// product bought three at a time.
	paidSession, paidPurchase := e.checkout("ada")
	e.pay(paidSession, false)
	expiredSession, expiredPurchase := e.checkout("bea")
	if err := e.emu.ExpireSession(expiredSession); err != nil {
		t.Fatal(err)
	}
	link, err := e.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: e.price, Quantity: 3}},
		PaymentLink: "plink_pro", CustomerEmail: "cy@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e.pay(link.ID, false)
	foreign := foreignAccount(e)
	e.clock.Advance(time.Hour)

	// Every signal at once: the lists (sessions, and the refunds that lead
	// to their charges), the events feed, and a webhook hint per object.
	for _, ev := range e.emu.Events() {
		if !stripeapi.UsesEventType(string(ev.Type)) {
			continue // the webhook endpoint stores hints of these types only
		}
		var obj struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(ev.Data.Raw, &obj)
		if _, err := e.db.InsertHint(e.ctx, ev.ID, string(ev.Type), obj.ID, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	o := reconcile.PassOptions{Lists: true, Events: true, Since: t0.Add(-time.Hour), Pending: true, Hints: true, Retries: true}
	rep := e.pass(o)
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}

	var n int
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM purchases`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d purchases (%v); want only paymentd's 3", n, err)
	}
	if p := e.purchase(paidPurchase); p.Status != store.PurchaseCompleted {
		t.Errorf("our paid purchase is %s", p.Status)
	}
	if p := e.purchase(expiredPurchase); p.Status != store.PurchaseExpired {
		t.Errorf("our expired purchase is %s", p.Status)
	}
	p, err := e.db.PurchaseBySession(e.ctx, link.ID)
	if err != nil || p.Status != store.PurchaseCompleted || p.ProductKey != product || p.Quantity != 3 ||
		p.AmountTotal != 3*19900 || p.Currency != "usd" {
		t.Errorf("our Payment Link purchase: %+v, %v", p, err)
	}
	var foreignSteps int
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM steps WHERE subject_id IS NULL OR subject_id NOT IN ($1::uuid, $2::uuid, $3::uuid)`,
		paidPurchase, expiredPurchase, p.ID).Scan(&foreignSteps); err != nil || foreignSteps != 0 {
		t.Errorf("%d steps for others (%v)", foreignSteps, err)
	}
	want := map[reconcile.SkipReason]int{}
	for why, ids := range foreign {
		want[why] = len(ids)
	}
	for why, w := range want {
		if rep.Skipped[why] != w {
			t.Errorf("skipped[%s] = %d, want %d (all: %v)", why, rep.Skipped[why], w, rep.Skipped)
		}
	}
	if len(rep.Skipped) != len(want) {
		t.Errorf("skipped = %v, want %v", rep.Skipped, want)
	}

	// Nobody can claim a session that is not paymentd's.
	for _, id := range foreign[reconcile.SkipNoLookupKey][:1] {
		if _, err := e.rec.Claim(e.ctx, id, reconcile.Claimant{UserID: "u-donor", Email: "stranger@example.com", EmailVerified: true}); !errors.Is(err, reconcile.ErrUnknownSession) {
			t.Errorf("claim of a donation session: %v; want ErrUnknownSession", err)
		}
	}
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM purchases`).Scan(&n); err != nil || n != 3 {
		t.Errorf("%d purchases after the claim", n)
	}

	// A second pass changes nothing and still reports them.
	before := e.snapshot()
	e.clock.Advance(time.Minute)
	rep = e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true, Retries: true})
	if len(rep.Changes) != 0 || e.snapshot() != before || rep.Skipped[reconcile.SkipNotPaymentMode] != want[reconcile.SkipNotPaymentMode] {
		t.Errorf("second pass: changes %+v, skipped %v", rep.Changes, rep.Skipped)
	}
}

func TestAdoptedSessionTakesQuantityAndCurrencyFromStripe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	prod, err := e.api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: product, Name: "Acme Pro EU"}, "")
	if err != nil {
		t.Fatal(err)
	}
	eur, err := e.api.CreatePrice(e.ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: product, Currency: "eur", Amount: 18900,
		TransferLookupKey: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: eur.ID, Quantity: 2}},
		PaymentLink: "plink_eu", CustomerEmail: "eu@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e.pay(s.ID, false)
	e.pass(reconcile.Incremental)
	p, err := e.db.PurchaseBySession(e.ctx, s.ID)
	if err != nil || p.Quantity != 2 || p.Currency != "eur" || p.AmountTotal != 2*18900 || p.Status != store.PurchaseCompleted {
		t.Errorf("adopted purchase: quantity %d, %d %s, %s (%v); want 2, 37800 eur, completed", p.Quantity, p.AmountTotal, p.Currency, p.Status, err)
	}
}

func TestTwoSessionsCarryingOnePurchaseIDAreTwoPurchases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	// A recovered session carries the metadata of the one it recovers.
	meta := map[string]string{"user_id": "u1", "product": product, "purchase_id": uuid.NewString()}
	var sessions []string
	for range 2 {
		params := stripeemuSession(e.price, "twice@example.com")
		params.Metadata, params.PaymentLink = meta, ""
		s, err := e.emu.CreateSession(params)
		if err != nil {
			t.Fatal(err)
		}
		e.pay(s.ID, false)
		sessions = append(sessions, s.ID)
	}
	rep := e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour)})
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	ids := map[string]bool{}
	for _, sid := range sessions {
		p, err := e.db.PurchaseBySession(e.ctx, sid)
		if err != nil || p.Status != store.PurchaseCompleted {
			t.Fatalf("session %s: %+v, %v", sid, p, err)
		}
		ids[p.ID] = true
	}
	if len(ids) != 2 || !ids[meta["purchase_id"]] {
		t.Errorf("purchase ids %v; want two, one of them the metadata's", ids)
	}
}
