package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/httpapi"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// shop is the cart API of two paymentd servers on one database, and a
// reconciler, against one Stripe emulator.
type shop struct {
	t       *testing.T
	ctx     context.Context
	clock   *clock.Fake
	emu     *stripeemu.Emulator
	api     *stripeapi.API
	db      *store.DB
	cfg     *config.Config
	servers []*httptest.Server
	orders  *orderRecorder
	rec     *reconcile.Reconciler
}

// orderRecorder is a reconcile.OrderFulfillment that counts what it was
// asked to schedule, per order.
type orderRecorder struct {
	mu                                       sync.Mutex
	paid, failed, refunded, reversed, denied map[string]int               // denied: lost disputes
	repairs                                  map[string]store.AccessState // the access drift pass's, by order id
	// refundedTo is the cumulative amount the last OrderRefunded call
	// gave, by order id.
	refundedTo map[string]int64
}

func (r *orderRecorder) RepairOrderAccess(_ context.Context, _ *store.Queries, o store.Order, want store.AccessState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repairs == nil {
		r.repairs = map[string]store.AccessState{}
	}
	r.repairs[o.ID] = want
	return nil
}

func (r *orderRecorder) bump(m *map[string]int, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[id]++
}

func (r *orderRecorder) OrderPaid(_ context.Context, _ *store.Queries, o store.Order, _ []store.OrderLine) error {
	r.bump(&r.paid, o.ID)
	return nil
}

func (r *orderRecorder) OrderPaymentFailed(_ context.Context, _ *store.Queries, o store.Order) error {
	r.bump(&r.failed, o.ID)
	return nil
}

func (r *orderRecorder) OrderRefunded(_ context.Context, _ *store.Queries, o store.Order, _ store.OrderRefund) error {
	r.bump(&r.refunded, o.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refundedTo == nil {
		r.refundedTo = map[string]int64{}
	}
	r.refundedTo[o.ID] = o.AmountRefunded
	return nil
}

func (r *orderRecorder) OrderRefundReversed(_ context.Context, _ *store.Queries, o store.Order, _ store.OrderRefund) error {
	r.bump(&r.reversed, o.ID)
	return nil
}

func (r *orderRecorder) OrderDisputeLost(_ context.Context, _ *store.Queries, o store.Order, _ store.OrderDispute) error {
	r.bump(&r.denied, o.ID)
	return nil
}

func (r *orderRecorder) count(m map[string]int, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[id]
}

func newShop(t *testing.T) *shop {
	t.Helper()
	cfg, err := config.Load("../config.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 11})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emulator", APIBase: srv.URL,
		RateLimit: 1000, MaxRetries: -1}))
	dbURL := pgtest.URL(t)
	s := &shop{t: t, ctx: context.Background(), clock: clk, emu: emu, api: api, db: pgtest.Open(t, dbURL), cfg: cfg,
		orders: &orderRecorder{}}
	if _, err := catalog.Sync(s.ctx, api, cfg.Products, false); err != nil {
		t.Fatal(err)
	}
	coupon, err := emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "LAUNCH20", Coupon: coupon}); err != nil {
		t.Fatal(err)
	}
	for _, p := range cfg.Products { // as paymentd does when it starts
		if p.Stock != nil {
			if _, err := s.db.SeedStock(s.ctx, p.Key, *p.Stock, clk.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for range 2 { // two paymentd servers, each with its own connection pool and price cache
		auth, err := httpapi.NewAuthenticator(s.ctx, httpapi.AuthOptions{Secret: []byte(cfg.Auth.JWTSecret),
			Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		h := httpapi.New(pgtest.Open(t, dbURL), clk, log, nil)
		h.MountAPI(httpapi.APIDeps{Config: cfg, Auth: auth, Stripe: api, Prices: catalog.NewResolver(api, clk, 0), Orders: api})
		hs := httptest.NewServer(h.Handler())
		t.Cleanup(hs.Close)
		s.servers = append(s.servers, hs)
	}
	eng := steps.New(s.db, clk, log, steps.Config{}, nil)
	s.rec = reconcile.New(reconcile.Options{DB: s.db, Stripe: api, Fulfillment: &recorder{eng: eng}, Orders: s.orders,
		Clock: clk, Log: log, Products: cfg.Products})
	return s
}

// do calls the API of server n as user and decodes the answer into out.
func (s *shop) do(n int, user, method, path string, body, out any) int {
	s.t.Helper()
	tok, err := httpapi.DevToken([]byte(s.cfg.Auth.JWTSecret), s.cfg.Auth.Issuer, s.cfg.Auth.Audience, user,
		user+"@example.com", time.Hour, s.clock.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.servers[n].URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

type checkoutAnswer struct {
	SessionID       string `json:"session_id"`
	PaymentIntentID string `json:"payment_intent_id"`
	OrderID         string `json:"order_id"`
	ClientSecret    string `json:"client_secret"`
	Error           struct {
		Code      string `json:"code"`
		Available *int   `json:"available"`
	} `json:"error"`
}

// buy fills user's cart and checks it out through server n.
func (s *shop) buy(n int, user, mode string, items []map[string]any, code string) (int, checkoutAnswer) {
	s.t.Helper()
	cart := map[string]any{"items": items}
	if code != "" {
		cart["promotion_code"] = code
	}
	var out checkoutAnswer
	if st := s.do(n, user, "PUT", "/api/cart", cart, &out); st != http.StatusOK {
		return st, out
	}
	st := s.do(n, user, "POST", "/api/checkout", map[string]any{"cart": true, "ui_mode": mode}, &out)
	return st, out
}

func stickers(n int) []map[string]any {
	return []map[string]any{{"product": "acme_stickers", "quantity": n}}
}

func (s *shop) pass(o reconcile.PassOptions) *reconcile.Report {
	s.t.Helper()
	rep, err := s.rec.RunPass(s.ctx, "test", o)
	if err != nil {
		s.t.Fatalf("pass: %v", err)
	}
	if !rep.Converged() {
		s.t.Fatalf("pass did not converge: %+v", rep.Errors)
	}
	return rep
}

func (s *shop) order(id string) store.Order {
	s.t.Helper()
	o, err := s.db.GetOrder(s.ctx, id)
	if err != nil {
		s.t.Fatalf("order %s: %v", id, err)
	}
	return o
}

func (s *shop) stock(key string) store.Stock {
	s.t.Helper()
	st, err := s.db.GetStock(s.ctx, key)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// paidHosted checks out one sticker as user on server n, hosted, pays it
// in the emulator (nothing reconciled yet) and returns the checkout and its
// PaymentIntent.
func (s *shop) paidHosted(n int, user string) (checkoutAnswer, string) {
	s.t.Helper()
	st, a := s.buy(n, user, "hosted", stickers(1), "")
	if st != http.StatusOK {
		s.t.Fatalf("checkout = %d", st)
	}
	s.pay(a)
	sess, err := s.emu.Session(a.SessionID)
	if err != nil {
		s.t.Fatal(err)
	}
	return a, sess.PaymentIntent.ID
}

// pay pays an order's Stripe object as the buyer would.
func (s *shop) pay(a checkoutAnswer) {
	s.t.Helper()
	var err error
	if a.SessionID != "" {
		err = s.emu.PaySession(a.SessionID, stripeemu.Pay{})
	} else {
		_, err = s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeSucceeds)
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// paidEmbedded checks out quantity stickers for ada as an embedded order,
// pays it and runs an incremental pass, which records it paid.
func (s *shop) paidEmbedded(quantity int) checkoutAnswer {
	s.t.Helper()
	st, a := s.buy(0, "ada", "embedded", stickers(quantity), "")
	if st != http.StatusOK {
		s.t.Fatalf("checkout = %d", st)
	}
	s.pay(a)
	s.pass(reconcile.Incremental)
	return a
}

// TestOrderStockRace is the acceptance: 50 buyers race for the
// last 5 units through hosted and embedded checkouts on two servers;
// exactly 5 reserve, the rest get 409 out_of_stock; after 3 of the 5
// expire or are canceled, 3 more can buy; stock never goes negative and
// ends at the initial count minus the units paid for.
func TestOrderStockRace(t *testing.T) {
	s := newShop(t)
	if _, err := s.db.SetStock(s.ctx, "acme_stickers", 5, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 { // carts first: a cart does not reserve
		if st := s.do(i%2, fmt.Sprintf("buyer-%02d", i), "PUT", "/api/cart", map[string]any{"items": stickers(1)}, nil); st != 200 {
			t.Fatalf("cart of buyer %d = %d", i, st)
		}
	}
	type result struct {
		st int
		a  checkoutAnswer
	}
	results := make([]result, 50)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			mode := []string{"hosted", "embedded"}[(i/2)%2]
			var out checkoutAnswer
			st := s.do(i%2, fmt.Sprintf("buyer-%02d", i), "POST", "/api/checkout", map[string]any{"cart": true, "ui_mode": mode}, &out)
			results[i] = result{st, out}
		}()
	}
	close(start)
	wg.Wait()
	var won []checkoutAnswer
	for i, r := range results {
		switch {
		case r.st == http.StatusOK:
			won = append(won, r.a)
		case r.st == http.StatusConflict && r.a.Error.Code == "out_of_stock" && r.a.Error.Available != nil && *r.a.Error.Available == 0:
		default:
			t.Errorf("buyer %d: %d %+v", i, r.st, r.a)
		}
	}
	if len(won) != 5 {
		t.Fatalf("%d checkouts reserved, want exactly 5", len(won))
	}
	if st := s.stock("acme_stickers"); st.OnHand != 5 || st.Reserved != 5 {
		t.Fatalf("stock after the race = %+v", st)
	}

	// Three of the five end unpaid: two ended at Stripe (a session
	// expired or an intent canceled by the buyer), the third by its
	// expiry, while the other two are paid.
	ended, kept := won[:3], won[3:]
	for _, a := range ended[:2] {
		var err error
		if a.SessionID != "" {
			err = s.emu.ExpireSession(a.SessionID)
		} else {
			err = s.emu.CancelPaymentIntent(a.PaymentIntentID, "requested_by_customer")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range kept {
		s.pay(a)
	}
	s.pass(reconcile.Incremental)
	if st := s.stock("acme_stickers"); st.OnHand != 3 || st.Reserved != 1 {
		t.Fatalf("stock after 2 paid and 2 ended = %+v, want 3 on hand and 1 held", st)
	}
	// The third: Stripe expires a session at its expiry; paymentd cancels
	// an intent at the order's.
	s.clock.Advance(s.cfg.Cart.CheckoutTTL + time.Minute)
	s.pass(reconcile.Incremental)
	for _, a := range ended {
		if o := s.order(a.OrderID); !o.Status.Ended() {
			t.Errorf("order %s is %s, want ended", o.ID, o.Status)
		}
	}
	for _, a := range kept {
		if o := s.order(a.OrderID); o.Status != store.OrderPaid {
			t.Errorf("paid order %s is %s", o.ID, o.Status)
		}
	}
	if st := s.stock("acme_stickers"); st.OnHand != 3 || st.Reserved != 0 {
		t.Fatalf("stock after 2 paid and 3 ended = %+v, want 3 on hand and none held", st)
	}

	// Three more can buy; the fourth cannot.
	var second []checkoutAnswer
	for i := range 4 {
		st, a := s.buy(i%2, fmt.Sprintf("late-%d", i), []string{"embedded", "hosted"}[i%2], stickers(1), "")
		switch {
		case i < 3 && st == http.StatusOK:
			second = append(second, a)
		case i == 3 && st == http.StatusConflict && a.Error.Code == "out_of_stock":
		default:
			t.Fatalf("late buyer %d = %d %+v", i, st, a)
		}
	}
	for _, a := range second {
		s.pay(a)
	}
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep) // a second look changes nothing
	if st := s.stock("acme_stickers"); st.OnHand != 0 || st.Reserved != 0 || st.Oversold != 0 {
		t.Errorf("final stock = %+v, want 5 - 5 paid = 0, nothing held or oversold", st)
	}
	var paidUnits int
	if err := s.db.Pool.QueryRow(s.ctx, `SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id
		WHERE o.status = 'paid' AND l.product_key = 'acme_stickers'`).Scan(&paidUnits); err != nil || paidUnits != 5 {
		t.Errorf("paid units = %d, %v; want 5", paidUnits, err)
	}
	for _, a := range append(kept, second...) {
		if n := s.orders.count(s.orders.paid, a.OrderID); n != 1 {
			t.Errorf("order %s paid pipeline scheduled %d times", a.OrderID, n)
		}
	}
}

// TestOrderFailedCardThenSuccess: a declined card keeps the order open,
// asks for one recovery email however often it is reconciled, and paying
// on a second try completes the same order; its discount and total equal
// the PaymentIntent's amount to the cent (20% on two lines).
func TestOrderFailedCardThenSuccess(t *testing.T) {
	s := newShop(t)
	st, a := s.buy(0, "ada", "embedded", []map[string]any{{"product": "pro_one_time", "quantity": 1},
		{"product": "acme_stickers", "quantity": 3}}, "LAUNCH20")
	if st != http.StatusOK {
		t.Fatalf("checkout = %d %+v", st, a)
	}
	if _, err := s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeDeclined); err == nil {
		t.Fatal("the declined card was accepted")
	}
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep)
	o := s.order(a.OrderID)
	if o.Status != store.OrderPending || o.FailedAttempts != 1 || o.LastPaymentError == nil || *o.LastPaymentError != "generic_decline" {
		t.Fatalf("after a decline the order is %s, %d failed, %v", o.Status, o.FailedAttempts, o.LastPaymentError)
	}
	if n := s.orders.count(s.orders.failed, o.ID); n != 1 {
		t.Errorf("recovery email scheduled %d times, want once", n)
	}
	if held := s.stock("acme_stickers"); held.Reserved != 3 {
		t.Errorf("a declined order released its stock: %+v", held)
	}
	s.clock.Advance(10 * time.Minute) // the second try comes later: the payment's time is its charge's
	if _, err := s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	o = s.order(a.OrderID)
	if ch, err := s.api.Charge(s.ctx, deref(o.StripeChargeID)); err != nil || o.PaidAt == nil || !o.PaidAt.Equal(time.Unix(ch.Created, 0)) {
		t.Errorf("paid at %v, want the charge's time (%v)", o.PaidAt, err)
	}
	pi, err := s.emu.PaymentIntent(a.PaymentIntentID)
	if err != nil {
		t.Fatal(err)
	}
	// 19900 + 3 × 900 = 22600; 20% is 4520.
	if o.Status != store.OrderPaid || o.AmountTotal != pi.Amount || pi.Amount != 18080 || o.AmountDiscount != 4520 ||
		o.AmountSubtotal != 22600 || o.StripeChargeID == nil || o.PaidAt == nil {
		t.Errorf("paid order = %s total %d discount %d subtotal %d; intent %d", o.Status, o.AmountTotal, o.AmountDiscount,
			o.AmountSubtotal, pi.Amount)
	}
	if n := s.orders.count(s.orders.failed, o.ID); n != 1 {
		t.Errorf("recovery emails = %d after paying", n)
	}
	if st := s.stock("acme_stickers"); st.OnHand != 22 || st.Reserved != 0 {
		t.Errorf("stock = %+v, want 25 - 3", st)
	}
	var cart struct{ Items []any }
	s.do(0, "ada", "GET", "/api/cart", nil, &cart)
	if len(cart.Items) != 0 {
		t.Errorf("the cart was not emptied by the payment: %+v", cart)
	}
}

// TestOrderWebhooksDroppedShuffledDoubled: with every webhook dropped the
// sweep and the events feed still converge; delivered again shuffled and
// doubled, nothing changes a second time: statuses, lines and totals equal
// Stripe's, stock and promotion-code use counted once per paid order.
func TestOrderWebhooksDroppedShuffledDoubled(t *testing.T) {
	s := newShop(t)
	var answers []checkoutAnswer
	for i := range 6 {
		st, a := s.buy(i%2, fmt.Sprintf("u%d", i), []string{"hosted", "embedded"}[i%2],
			[]map[string]any{{"product": "acme_stickers", "quantity": 2}, {"product": "pro_one_time", "quantity": 1}}, "LAUNCH20")
		if st != http.StatusOK {
			t.Fatalf("checkout %d = %d %+v", i, st, a)
		}
		answers = append(answers, a)
	}
	// Four are paid (one embedded after a decline), one session expires,
	// one intent is canceled.
	for i, a := range answers {
		switch i {
		case 0, 1, 2:
			s.pay(a)
		case 3:
			if _, err := s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeInsufficientFunds); err == nil {
				t.Fatal("declined card accepted")
			}
			s.pay(a)
		case 4:
			if err := s.emu.ExpireSession(a.SessionID); err != nil {
				t.Fatal(err)
			}
		case 5:
			if err := s.emu.CancelPaymentIntent(a.PaymentIntentID, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Dropped: no hint at all. The events feeds find everything.
	first := s.pass(reconcile.Incremental)
	if first.Counts["paid"] != 4 || first.Counts["expired"] != 1 || first.Counts["canceled"] != 1 {
		t.Errorf("first pass counts = %v", first.Counts)
	}
	check := func(when string) {
		t.Helper()
		for i, a := range answers {
			o := s.order(a.OrderID)
			lines, err := s.db.OrderLines(s.ctx, o.ID)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, l := range lines {
				sum += l.AmountTotal
			}
			want := map[int]store.OrderStatus{0: "paid", 1: "paid", 2: "paid", 3: "paid", 4: "expired", 5: "canceled"}[i]
			var stripeTotal int64
			if a.SessionID != "" {
				sess, err := s.emu.Session(a.SessionID)
				if err != nil {
					t.Fatal(err)
				}
				stripeTotal = sess.AmountTotal
			} else {
				pi, err := s.emu.PaymentIntent(a.PaymentIntentID)
				if err != nil {
					t.Fatal(err)
				}
				stripeTotal = pi.Amount
			}
			if o.Status != want || o.AmountTotal != stripeTotal || sum != o.AmountTotal || len(lines) != 2 {
				t.Errorf("%s: order %d is %s total %d (lines %d), want %s and Stripe's %d", when, i, o.Status, o.AmountTotal,
					sum, want, stripeTotal)
			}
			if n := s.orders.count(s.orders.paid, o.ID); (want == "paid") != (n == 1) || n > 1 {
				t.Errorf("%s: order %d paid pipeline scheduled %d times", when, i, n)
			}
		}
		if st := s.stock("acme_stickers"); st.OnHand != 25-8 || st.Reserved != 0 {
			t.Errorf("%s: stock = %+v, want 25 - 4 × 2", when, st)
		}
		var uses int
		if err := s.db.Pool.QueryRow(s.ctx, `SELECT count(*) FROM orders WHERE promotion_code = 'LAUNCH20'
			AND status = 'paid'`).Scan(&uses); err != nil || uses != 4 {
			t.Errorf("%s: the code counts %d paid uses, %v", when, uses, err)
		}
	}
	check("after the feeds")

	// Then every event delivered, shuffled and twice over.
	events := s.emu.Events()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2 {
		rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		for _, ev := range events {
			id, _ := ev.Data.Object["id"].(string)
			if stripeapi.UsesEventType(string(ev.Type)) || stripeapi.UsesPaymentIntentEventType(string(ev.Type)) {
				if _, err := s.db.InsertHint(s.ctx, fmt.Sprintf("%s-%d", ev.ID, round), string(ev.Type), id, s.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
		}
		rep := s.pass(reconcile.HintsOnly)
		if len(rep.Changes) != 0 {
			t.Errorf("round %d of late webhooks changed %+v", round, rep.Changes)
		}
	}
	s.pass(reconcile.Deep)
	check("after late, shuffled and doubled webhooks")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestOrderRefunds: refunds of an order's charge, partial then the rest,
// are recorded once each and move the order to partially_refunded then
// refunded; a hosted order whose refund is the first signal paymentd sees
// is recorded paid, then refunded, from that one hint.
func TestOrderRefunds(t *testing.T) {
	s := newShop(t)
	emb := s.paidEmbedded(2)
	if _, err := s.emu.Refund(emb.PaymentIntentID, 500); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep)
	o := s.order(emb.OrderID)
	if o.Status != store.OrderPartiallyRefunded || o.AmountRefunded != 500 || s.orders.count(s.orders.refunded, o.ID) != 1 {
		t.Fatalf("after 500 refunded: %s, %d refunded, %d refund pipelines", o.Status, o.AmountRefunded, s.orders.count(s.orders.refunded, o.ID))
	}
	if _, err := s.emu.Refund(emb.PaymentIntentID, o.AmountTotal-500); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	if o = s.order(emb.OrderID); o.Status != store.OrderRefunded || o.AmountRefunded != o.AmountTotal || s.orders.count(s.orders.refunded, o.ID) != 2 {
		t.Errorf("after the rest refunded: %s, %d refunded, %d refund pipelines", o.Status, o.AmountRefunded, s.orders.count(s.orders.refunded, o.ID))
	}
	if rs, err := s.db.OrderRefunds(s.ctx, o.ID); err != nil || len(rs) != 2 {
		t.Errorf("refund rows = %+v, %v", rs, err)
	}

	hosted, piID := s.paidHosted(1, "bob")
	refundID, err := s.emu.Refund(piID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.InsertHint(s.ctx, "evt_only", "charge.refunded", refundID, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.HintsOnly)
	if o := s.order(hosted.OrderID); o.Status != store.OrderRefunded || o.PaidAt == nil || s.orders.count(s.orders.paid, o.ID) != 1 {
		t.Errorf("hosted order after its refund's hint alone: %s, paid at %v", o.Status, o.PaidAt)
	}
}

// TestOrderRefundThatFailsIsReversed, end to end through the emulator: an
// embedded order's full refund fails; the pass that sees it moves the
// order back to paid and hands the reversal over once, however often it is
// seen again. A new refund of half then counts as half: the failed one
// counts for nothing.
func TestOrderRefundThatFailsIsReversed(t *testing.T) {
	s := newShop(t)
	emb := s.paidEmbedded(2)
	refundID, err := s.emu.Refund(emb.PaymentIntentID, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	o := s.order(emb.OrderID)
	if o.Status != store.OrderRefunded || s.orders.count(s.orders.refunded, o.ID) != 1 {
		t.Fatalf("after the full refund: %s, %d refund pipelines", o.Status, s.orders.count(s.orders.refunded, o.ID))
	}
	if err := s.emu.FailRefund(refundID); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep)
	if _, err := s.db.InsertHint(s.ctx, "evt_again", "charge.refund.updated", refundID, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.HintsOnly)
	o = s.order(emb.OrderID)
	if o.Status != store.OrderPaid || o.AmountRefunded != 0 || s.orders.count(s.orders.reversed, o.ID) != 1 {
		t.Fatalf("after the refund failed: %s, %d refunded, %d reversals; want paid, 0, 1", o.Status, o.AmountRefunded,
			s.orders.count(s.orders.reversed, o.ID))
	}
	half := o.AmountTotal / 2
	if _, err := s.emu.Refund(emb.PaymentIntentID, half); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	o = s.order(emb.OrderID)
	s.orders.mu.Lock()
	to := s.orders.refundedTo[o.ID]
	s.orders.mu.Unlock()
	if o.Status != store.OrderPartiallyRefunded || o.AmountRefunded != half || to != half ||
		s.orders.count(s.orders.refunded, o.ID) != 2 {
		t.Errorf("after a new refund of %d: %s, %d refunded, handed over as %d of %d, %d refund pipelines", half,
			o.Status, o.AmountRefunded, to, o.AmountTotal, s.orders.count(s.orders.refunded, o.ID))
	}
}

// TestOrderLostDispute: a dispute of an order's payment changes nothing
// while it is open; lost, it refunds the order and takes its access back,
// once, through every later pass (the charge's own reconcile keeps it
// refunded). A hosted order whose lost dispute is the first signal paymentd
// sees is recorded paid, then refunded, from that one hint.
func TestOrderLostDispute(t *testing.T) {
	s := newShop(t)
	emb := s.paidEmbedded(2)
	dp, err := s.emu.OpenDispute(emb.PaymentIntentID)
	if err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	if o := s.order(emb.OrderID); o.Status != store.OrderPaid || s.orders.count(s.orders.denied, o.ID) != 0 {
		t.Fatalf("while disputed: %s, %d losses", o.Status, s.orders.count(s.orders.denied, o.ID))
	}
	if err := s.emu.CloseDispute(dp, false); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep)
	s.pass(reconcile.Incremental)
	o := s.order(emb.OrderID)
	if o.Status != store.OrderRefunded || o.AmountRefunded != 0 || s.orders.count(s.orders.denied, o.ID) != 1 {
		t.Errorf("after the loss: %s, %d refunded, %d losses; want refunded, 0, 1", o.Status, o.AmountRefunded,
			s.orders.count(s.orders.denied, o.ID))
	}
	if d, err := s.db.GetOrderDispute(s.ctx, dp); err != nil || d.Status != "lost" || d.OrderID != o.ID {
		t.Errorf("dispute row = %+v, %v", d, err)
	}

	hosted, piID := s.paidHosted(1, "bob")
	dp, err = s.emu.OpenDispute(piID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.emu.CloseDispute(dp, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.InsertHint(s.ctx, "evt_dispute_only", "charge.dispute.closed", dp, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.HintsOnly)
	if o := s.order(hosted.OrderID); o.Status != store.OrderRefunded || o.PaidAt == nil ||
		s.orders.count(s.orders.paid, o.ID) != 1 || s.orders.count(s.orders.denied, o.ID) != 1 {
		t.Errorf("hosted order after its lost dispute's hint alone: %s, paid at %v, %d paid, %d losses", o.Status, o.PaidAt,
			s.orders.count(s.orders.paid, o.ID), s.orders.count(s.orders.denied, o.ID))
	}
}

// TestOrderPaidBeyondLoweredStock: an operator lowers the stock under an
// open order; its payment still completes the order, the units beyond
// are counted as oversold, on_hand stays at zero, and the operator is
// alerted once.
func TestOrderPaidBeyondLoweredStock(t *testing.T) {
	s := newShop(t)
	st, a := s.buy(0, "ada", "embedded", stickers(3), "")
	if st != http.StatusOK {
		t.Fatalf("checkout = %d", st)
	}
	if _, err := s.db.SetStock(s.ctx, "acme_stickers", 1, s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.pay(a)
	s.pass(reconcile.Incremental)
	s.pass(reconcile.Deep)
	o := s.order(a.OrderID)
	if o.Status != store.OrderPaid || !o.StockShort {
		t.Errorf("order = %s, stock short %v", o.Status, o.StockShort)
	}
	if st := s.stock("acme_stickers"); st.OnHand != 0 || st.Reserved != 0 || st.Oversold != 2 {
		t.Errorf("stock = %+v, want 0 on hand, 2 oversold", st)
	}
	var alerts int
	if err := s.db.Pool.QueryRow(s.ctx, `SELECT count(*) FROM steps WHERE pipeline = $1`,
		"alert:order_stock_short:"+o.ID).Scan(&alerts); err != nil || alerts != 1 {
		t.Errorf("%d stock alerts, %v; want 1", alerts, err)
	}
}

// TestOrderBankDebit: a bank debit keeps an embedded order processing
// (its stock held, even past its expiry) until it settles: one that fails
// puts the order back to pending for another try, one that succeeds pays it.
func TestOrderBankDebit(t *testing.T) {
	s := newShop(t)
	if err := s.emu.SetPaymentSettings(stripeemu.PaymentSettings{AsyncSettleDelay: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, a := s.buy(0, "ada", "embedded", stickers(2), "")
	if st != http.StatusOK {
		t.Fatalf("checkout = %d", st)
	}
	if _, err := s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeAsyncFails); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	if o := s.order(a.OrderID); o.Status != store.OrderProcessing {
		t.Fatalf("order with a debit under way = %s", o.Status)
	}
	if err := s.emu.SettlePaymentIntent(a.PaymentIntentID, false); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	if o := s.order(a.OrderID); o.Status != store.OrderPending || o.FailedAttempts != 1 || s.orders.count(s.orders.failed, o.ID) != 1 {
		t.Fatalf("after the debit failed: %s, %d failed attempts", o.Status, o.FailedAttempts)
	}
	if _, err := s.emu.ConfirmPaymentIntent(a.PaymentIntentID, stripeemu.OutcomeAsyncSucceeds); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	s.clock.Advance(s.cfg.Cart.CheckoutTTL + time.Minute) // processing past the expiry: not canceled
	s.pass(reconcile.Incremental)
	if o := s.order(a.OrderID); o.Status != store.OrderProcessing {
		t.Fatalf("a processing order past its expiry = %s", o.Status)
	}
	if held := s.stock("acme_stickers"); held.Reserved != 2 {
		t.Errorf("stock of a processing order = %+v", held)
	}
	if err := s.emu.SettlePaymentIntent(a.PaymentIntentID, true); err != nil {
		t.Fatal(err)
	}
	s.pass(reconcile.Incremental)
	if o := s.order(a.OrderID); o.Status != store.OrderPaid {
		t.Errorf("after the debit settled: %s", o.Status)
	}
	if st := s.stock("acme_stickers"); st.OnHand != 23 || st.Reserved != 0 {
		t.Errorf("stock = %+v", st)
	}
}

// TestOrderFoundByTheLists: with no hint and no events feed, the deep
// pass's lists alone bring a paid embedded order (the PaymentIntents) and
// a paid hosted one (the sessions) to paid.
func TestOrderFoundByTheLists(t *testing.T) {
	s := newShop(t)
	_, emb := s.buy(0, "ada", "embedded", stickers(1), "")
	_, hosted := s.buy(1, "bob", "hosted", stickers(1), "")
	s.pay(emb)
	s.pay(hosted)
	rep := s.pass(reconcile.PassOptions{Lists: true})
	for _, a := range []checkoutAnswer{emb, hosted} {
		if o := s.order(a.OrderID); o.Status != store.OrderPaid {
			t.Errorf("order %s after the lists = %s (%+v)", a.OrderID, o.Status, rep.Counts)
		}
	}
	var purchases int
	if err := s.db.Pool.QueryRow(s.ctx, `SELECT count(*) FROM purchases`).Scan(&purchases); err != nil || purchases != 0 {
		t.Errorf("%d purchases recorded from cart sessions, %v", purchases, err)
	}
}
