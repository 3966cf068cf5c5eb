// Conformance of the billing objects with Stripe's OpenAPI spec for API
// version 2023-10-16, the one stripe-mock v0.183.0 (pinned in go.mod)
// embeds: every required field present, no field the spec does not know,
// types, nullability and enums as declared.

package stripeemu_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// openAPI is the part of the spec the checker reads.
type openAPI struct {
	Info       struct{ Version string } `json:"info"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

// schema is an OpenAPI schema object, as far as the checker needs.
type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Nullable             bool               `json:"nullable"`
	Enum                 []any              `json:"enum"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	AnyOf                []*schema          `json:"anyOf"`
}

// loadSpec reads the spec embedded in the stripe-mock module.
func loadSpec(t *testing.T) *openAPI {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	out, err := exec.Command(gobin, "list", "-m", "-f", "{{.Dir}}", "github.com/stripe/stripe-mock").Output()
	if err != nil {
		t.Fatalf("locate stripe-mock: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "embedded", "openapi", "spec3.json"))
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	var spec openAPI
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Info.Version != stripeemu.APIVersion {
		t.Fatalf("spec is for %s, the emulator speaks %s", spec.Info.Version, stripeemu.APIVersion)
	}
	return &spec
}

// check validates v against s and returns the problems, each with its path.
func (sp *openAPI) check(path string, v any, s *schema) []string {
	if s.Ref != "" {
		return sp.check(path, v, sp.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")])
	}
	if v == nil {
		if s.Nullable {
			return nil
		}
		return []string{path + ": null, but not nullable"}
	}
	if len(s.AnyOf) > 0 {
		var all []string
		for _, alt := range s.AnyOf {
			probs := sp.check(path, v, alt)
			if len(probs) == 0 {
				return nil
			}
			all = append(all, probs...)
		}
		return append([]string{path + ": matches no alternative"}, all...)
	}
	if len(s.Enum) > 0 {
		for _, e := range s.Enum {
			if e == v {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: %v not in %v", path, v, s.Enum)}
	}
	switch s.Type {
	case "string":
		if _, ok := v.(string); !ok {
			return []string{fmt.Sprintf("%s: %T, want string", path, v)}
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok || s.Type == "integer" && f != float64(int64(f)) {
			return []string{fmt.Sprintf("%s: %v, want %s", path, v, s.Type)}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: %T, want boolean", path, v)}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want array", path, v)}
		}
		var probs []string
		for i, el := range arr {
			if s.Items != nil {
				probs = append(probs, sp.check(fmt.Sprintf("%s[%d]", path, i), el, s.Items)...)
			}
		}
		return probs
	case "object", "":
		obj, ok := v.(map[string]any)
		if !ok {
			if s.Type == "" {
				return nil
			}
			return []string{fmt.Sprintf("%s: %T, want object", path, v)}
		}
		var probs []string
		for _, r := range s.Required {
			if _, ok := obj[r]; !ok {
				probs = append(probs, path+"."+r+": required, missing")
			}
		}
		var add *schema
		if len(s.AdditionalProperties) > 0 && string(s.AdditionalProperties) != "false" {
			add = &schema{}
			_ = json.Unmarshal(s.AdditionalProperties, add)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, known := s.Properties[k]
			switch {
			case known:
				probs = append(probs, sp.check(path+"."+k, obj[k], ps)...)
			case add != nil:
				probs = append(probs, sp.check(path+"."+k, obj[k], add)...)
			case k == "total_count" && s.Properties["has_more"] != nil:
				// Stripe's embedded lists carry total_count beyond the spec.
			case len(s.Properties) > 0:
				probs = append(probs, path+"."+k+": not in the spec")
			}
		}
		return probs
	}
	return nil
}

// rawGet fetches an API path and decodes the JSON.
func (f *fixture) rawGet(path string) any {
	f.t.Helper()
	res, body := f.raw(http.MethodGet, path, nil, http.Header{"Authorization": {"Bearer sk_test_x"}})
	if res.StatusCode != 200 {
		f.t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
	}
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func TestBillingObjectsMatchTheOpenAPISpec(t *testing.T) {
	spec := loadSpec(t)
	f := newFixture(t)
	prod := f.product("Pro")
	monthly := f.recurringPrice(prod.ID, 2900, "month", "pro_monthly")
	premium := f.recurringPrice(prod.ID, 4900, "month", "")
	trialSess := f.subSession(monthly.ID, func(p *stripe.CheckoutSessionParams) {
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(14), Metadata: map[string]string{"user_id": "u1"}}
	})
	if err := f.emu.PaySession(trialSess.ID, stripeemu.Pay{Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	cs, _ := f.emu.Session(trialSess.ID)
	sub := f.subscribe(premium.ID, "bo@example.com")
	if err := f.emu.SetCancelAtPeriodEnd(sub.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PauseCollection(cs.Subscription.ID, "void", start.Add(60*day)); err != nil {
		t.Fatal(err)
	}
	cp, err := f.sc.Coupons.New(&stripe.CouponParams{PercentOff: stripe.Float64(10), Duration: stripe.String("forever")})
	if err != nil {
		t.Fatal(err)
	}
	discounted, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "dee@example.com", Items: []stripeemu.LineItem{{Price: monthly.ID}}, Coupon: cp.ID})
	if err != nil {
		t.Fatal(err)
	}
	declined := f.subSession(monthly.ID)
	_ = f.emu.PaySession(declined.ID, stripeemu.Pay{Email: "cy@example.com", Decline: true})
	f.advance(15 * day)
	res, body := f.raw(http.MethodPost, "/v1/billing_portal/sessions", url.Values{"customer": {sub.Customer.ID}, "return_url": {"https://app.example/"}},
		http.Header{"Authorization": {"Bearer sk_test_x"}})
	var portal any
	if err := json.Unmarshal([]byte(body), &portal); err != nil || res.StatusCode != 200 {
		t.Fatalf("portal session: %d %s", res.StatusCode, body)
	}

	objects := map[string]string{
		"/v1/prices/" + monthly.ID:                                 "price",
		"/v1/checkout/sessions/" + trialSess.ID:                    "checkout.session",
		"/v1/checkout/sessions/" + declined.ID:                     "checkout.session",
		"/v1/customers/" + sub.Customer.ID:                         "customer",
		"/v1/subscriptions/" + cs.Subscription.ID:                  "subscription",
		"/v1/subscriptions/" + discounted.ID:                       "subscription",
		"/v1/subscriptions/" + sub.ID + "?expand[]=latest_invoice": "subscription",
		"/v1/subscriptions?status=all&expand[]=data.customer":      "",
		"/v1/invoices?limit=100":                                   "",
		"/v1/customers/search?query=email:'bo@example.com'":        "",
	}
	var probs []string
	for path, name := range objects {
		v := f.rawGet(path)
		if name != "" {
			probs = append(probs, spec.check(path, v, spec.Components.Schemas[name])...)
			continue
		}
		data := v.(map[string]any)["data"].([]any)
		if len(data) == 0 {
			t.Fatalf("%s listed nothing", path)
		}
		kind := map[string]string{"subscription": "subscription", "invoice": "invoice", "customer": "customer"}[data[0].(map[string]any)["object"].(string)]
		for i, el := range data {
			probs = append(probs, spec.check(fmt.Sprintf("%s[%d]", path, i), el, spec.Components.Schemas[kind])...)
		}
	}
	probs = append(probs, spec.check("portal", portal, spec.Components.Schemas["billing_portal.session"])...)
	// Every event's object, including the id-less upcoming invoice.
	seen := map[string]bool{}
	for _, ev := range f.emu.Events() {
		obj := ev.Data.Object["object"].(string)
		if seen[string(ev.Type)] || spec.Components.Schemas[obj] == nil {
			continue
		}
		seen[string(ev.Type)] = true
		var v any
		_ = json.Unmarshal(mustMarshal(t, ev.Data.Object), &v)
		probs = append(probs, spec.check(string(ev.Type), v, spec.Components.Schemas[obj])...)
	}
	for _, want := range []string{"invoice.upcoming", "invoice.voided", "customer.subscription.updated", "invoice.payment_failed"} {
		if !seen[want] {
			t.Fatalf("no %s event was checked", want)
		}
	}
	if len(probs) > 0 {
		t.Fatalf("%d departures from the spec:\n%s", len(probs), strings.Join(probs, "\n"))
	}

	// The checker itself notices a missing field, an unknown one, a bad
	// enum and a null where none is allowed.
	bad := f.rawGet("/v1/subscriptions/" + sub.ID).(map[string]any)
	delete(bad, "status")
	bad["plan"] = map[string]any{}
	bad["collection_method"] = "by_pigeon"
	bad["cancel_at_period_end"] = nil
	bad["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["price"].(map[string]any)["type"] = "sometimes"
	if got := spec.check("tampered", bad, spec.Components.Schemas["subscription"]); len(got) != 5 {
		t.Fatalf("the checker found %d problems in a tampered subscription, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
