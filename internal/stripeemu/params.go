// Form parameter decoding in Stripe's bracket notation, as stripe-go sends
// it: lists as name[0]=a&name[1]=b, maps as name[key]=v, lists of objects as
// name[0][field]=v.

package stripeemu

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// formInt parses an integer parameter.
func formInt(f url.Values, name string) (int64, *apiError) {
	v := f.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, invalid(name, "parameter_invalid_integer", "Invalid integer: %s", v)
	}
	return n, nil
}

// formBool parses a boolean parameter; ok is false when it is absent.
func formBool(f url.Values, name string) (val, ok bool, aerr *apiError) {
	if !f.Has(name) {
		return false, false, nil
	}
	switch v := f.Get(name); v {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	default:
		return false, false, invalid(name, "", "Invalid boolean: %s", v)
	}
}

// formList returns the values of name, name[] and name[N], in index order.
func formList(f url.Values, name string) []string {
	type item struct {
		idx int
		v   string
	}
	var items []item
	for k, vs := range f {
		switch {
		case k == name || k == name+"[]":
			for _, v := range vs {
				items = append(items, item{-1, v})
			}
		case strings.HasPrefix(k, name+"[") && strings.HasSuffix(k, "]"):
			n, err := strconv.Atoi(k[len(name)+1 : len(k)-1])
			if err != nil {
				continue
			}
			for _, v := range vs {
				items = append(items, item{n, v})
			}
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].idx < items[j].idx })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}

// formMap returns the entries name[key]=value with a simple key.
func formMap(f url.Values, name string) map[string]string {
	out := map[string]string{}
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(rest, "]") || len(vs) == 0 {
			continue
		}
		key := rest[:len(rest)-1]
		if strings.ContainsAny(key, "[]") {
			continue
		}
		out[key] = vs[len(vs)-1]
	}
	return out
}

// formIndexed groups name[N][field...]=v by N, in index order. A nested
// field keeps its inner brackets, e.g. "price_data][currency".
func formIndexed(f url.Values, name string) []map[string]string {
	groups := map[int]map[string]string{}
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || len(vs) == 0 {
			continue
		}
		idxStr, field, ok := strings.Cut(rest, "][")
		if !ok || !strings.HasSuffix(field, "]") {
			continue
		}
		n, err := strconv.Atoi(idxStr)
		if err != nil {
			continue
		}
		if groups[n] == nil {
			groups[n] = map[string]string{}
		}
		groups[n][field[:len(field)-1]] = vs[len(vs)-1]
	}
	idx := make([]int, 0, len(groups))
	for n := range groups {
		idx = append(idx, n)
	}
	sort.Ints(idx)
	out := make([]map[string]string, len(idx))
	for i, n := range idx {
		out[i] = groups[n]
	}
	return out
}

// applyMetadata merges metadata[k]=v updates into old the way Stripe does:
// an empty value deletes a key and metadata= (empty) clears everything. It
// returns a new map.
func applyMetadata(old map[string]string, f url.Values) map[string]string {
	out := map[string]string{}
	if !(f.Has("metadata") && f.Get("metadata") == "") {
		for k, v := range old {
			out[k] = v
		}
	}
	for k, v := range formMap(f, "metadata") {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// optString returns a pointer to s, or nil (JSON null) when s is empty.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
