// paymentd orders show: an order (a cart's checkout) with its lines,
// totals, stock, refunds and steps, found by its id, its session or its
// PaymentIntent.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
)

const ordersUsage = "usage: paymentd orders show <order id | session id | payment intent id> [--json]"

// orderView is an order as `orders show` prints it.
type orderView struct {
	Order        store.Order         `json:"order"`
	Lines        []store.OrderLine   `json:"lines"`
	Reservations []store.Reservation `json:"reservations"`
	Refunds      []store.OrderRefund `json:"refunds"`
	Steps        []store.Step        `json:"steps"`
}

func runOrders(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "show" {
		return withCode(exitUsage, errors.New(ordersUsage))
	}
	fs, path := flags("orders show", env)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return withCode(exitUsage, errors.New(ordersUsage))
	}
	db, err := opsDB(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := lookupOrder(ctx, db, fs.Arg(0))
	if errors.Is(err, store.ErrNotFound) {
		return withCode(exitNotFound, fmt.Errorf("no order matches %q", fs.Arg(0)))
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(env.stdout, v)
	}
	printOrder(env.stdout, v)
	return nil
}

func lookupOrder(ctx context.Context, db *store.DB, key string) (orderView, error) {
	var o store.Order
	var err error
	switch {
	case strings.HasPrefix(key, "cs_"):
		o, err = db.OrderBySession(ctx, key)
	case strings.HasPrefix(key, "pi_"):
		o, err = db.OrderByPaymentIntent(ctx, key)
	default:
		if _, perr := uuid.Parse(key); perr != nil {
			return orderView{}, store.ErrNotFound
		}
		o, err = db.GetOrder(ctx, key)
	}
	if err != nil {
		return orderView{}, err
	}
	v := orderView{Order: o}
	if v.Lines, err = db.OrderLines(ctx, o.ID); err != nil {
		return v, err
	}
	if v.Reservations, err = db.OrderReservations(ctx, o.ID); err != nil {
		return v, err
	}
	if v.Refunds, err = db.OrderRefunds(ctx, o.ID); err != nil {
		return v, err
	}
	v.Steps, err = db.SubjectSteps(ctx, o.ID)
	return v, err
}

func printOrder(w io.Writer, v orderView) {
	o := v.Order
	cur := strings.ToUpper(o.Currency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, val string) { fmt.Fprintf(tw, "%s\t%s\n", k, val) }
	row("order", o.ID)
	row("status", string(o.Status))
	row("paid with", string(o.UIMode))
	row("user", o.UserID)
	row("email", deref(o.Email))
	row("subtotal", fmt.Sprintf("%d %s", o.AmountSubtotal, cur))
	row("discount", fmt.Sprintf("%d %s%s", o.AmountDiscount, cur, refSuffix(o.PromotionCode)))
	row("tax", fmt.Sprintf("%d %s", o.AmountTax, cur))
	row("total", fmt.Sprintf("%d %s (refunded %d)", o.AmountTotal, cur, o.AmountRefunded))
	row("stripe session", deref(o.StripeSessionID))
	row("payment intent", deref(o.StripePaymentIntentID))
	row("charge", deref(o.StripeChargeID))
	if o.FailedAttempts > 0 {
		row("declined", fmt.Sprintf("%d time(s)%s", o.FailedAttempts, refSuffix(o.LastPaymentError)))
	}
	if o.StockShort {
		row("stock", "paid for units no longer on hand (the operator was alerted)")
	}
	row("created", stamp(&o.CreatedAt))
	row("expires", stamp(&o.ExpiresAt))
	row("paid", stamp(o.PaidAt))
	row("ended", stamp(o.EndedAt))
	tw.Flush()
	fmt.Fprintln(w, "\nlines:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PRODUCT\tQTY\tUNIT\tSUBTOTAL\tDISCOUNT\tTAX\tTOTAL")
	for _, l := range v.Lines {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%d\n", l.ProductKey, l.Quantity, l.UnitAmount, l.AmountSubtotal,
			l.AmountDiscount, l.AmountTax, l.AmountTotal)
	}
	tw.Flush()
	if len(v.Reservations) > 0 {
		fmt.Fprintln(w, "\nstock:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PRODUCT\tQTY\tSTATE\tSHORT")
		for _, r := range v.Reservations {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\n", r.ProductKey, r.Quantity, r.State, r.Short)
		}
		tw.Flush()
	}
	if len(v.Refunds) > 0 {
		fmt.Fprintln(w, "\nrefunds:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tAMOUNT\tSTATUS\tCREATED")
		for _, r := range v.Refunds {
			fmt.Fprintf(tw, "  %s\t%d %s\t%s\t%s\n", r.ID, r.Amount, strings.ToUpper(r.Currency), r.Status, stamp(&r.CreatedAt))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nsteps:")
	printSteps(w, v.Steps, false)
}
