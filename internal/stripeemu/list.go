// Stores and Stripe list paging. Each kind of object lives in a slice kept in
// ascending (created, id) order plus an id map; a page is found by binary
// search on the cursor's key and a walk of at most limit matching items, so
// listing 100,000 sessions a page at a time costs O(log n + limit) per page.

package stripeemu

import (
	"net/url"
	"slices"
	"strings"
)

// record is an object kept in a store.
type record interface {
	comparable
	// sortKey returns the created time (Unix seconds) and id.
	sortKey() (int64, string)
}

// store holds one kind of object in creation order.
type store[T record] struct {
	kind  string
	items []T // ascending by (created, id)
	byID  map[string]T
}

// newStore returns an empty store; kind names the object in errors.
func newStore[T record](kind string) store[T] {
	return store[T]{kind: kind, byID: map[string]T{}}
}

// keyCmp orders (created, id) pairs.
func keyCmp(c1 int64, id1 string, c2 int64, id2 string) int {
	switch {
	case c1 < c2:
		return -1
	case c1 > c2:
		return 1
	}
	return strings.Compare(id1, id2)
}

// add inserts v. Objects normally arrive in order and are appended; one
// created after the clock moved backwards is inserted in place.
func (s *store[T]) add(v T) {
	c, id := v.sortKey()
	s.byID[id] = v
	n := len(s.items)
	if n == 0 {
		s.items = append(s.items, v)
		return
	}
	lc, lid := s.items[n-1].sortKey()
	if keyCmp(lc, lid, c, id) < 0 {
		s.items = append(s.items, v)
		return
	}
	i := searchKey(s.items, c, id, false)
	s.items = slices.Insert(s.items, i, v)
}

// get returns the object with the given id.
func (s *store[T]) get(id string) (T, bool) {
	v, ok := s.byID[id]
	return v, ok
}

// searchKey returns the first index whose key is >= (c, id), or > (c, id)
// when after is set.
func searchKey[T record](items []T, c int64, id string, after bool) int {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		mc, mid := items[m].sortKey()
		cmp := keyCmp(mc, mid, c, id)
		if cmp < 0 || (after && cmp == 0) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// searchCreated returns the first index whose created is >= c.
func searchCreated[T record](items []T, c int64) int {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if mc, _ := items[m].sortKey(); mc < c {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// pageQuery holds the common list parameters.
type pageQuery struct {
	limit         int
	startingAfter string
	endingBefore  string
	createdMin    int64 // inclusive
	createdMax    int64 // inclusive
}

// parsePageQuery reads limit, starting_after, ending_before and the created
// filters (created, created[gt|gte|lt|lte]).
func parsePageQuery(f url.Values) (pageQuery, *apiError) {
	q := pageQuery{limit: 10, createdMin: minInt64, createdMax: maxInt64}
	if f.Has("limit") {
		n, err := formInt(f, "limit")
		if err != nil {
			return q, err
		}
		if n < 1 || n > 100 {
			return q, invalid("limit", "parameter_invalid_integer", "This value must be greater than or equal to 1 and less than or equal to 100.")
		}
		q.limit = int(n)
	}
	q.startingAfter = f.Get("starting_after")
	q.endingBefore = f.Get("ending_before")
	if q.startingAfter != "" && q.endingBefore != "" {
		return q, invalid("ending_before", "", "You may only specify one of these parameters: ending_before, starting_after.")
	}
	return q, parseCreated(f, "created", &q.createdMin, &q.createdMax)
}

const (
	minInt64 = -1 << 63
	maxInt64 = 1<<63 - 1
)

// parseCreated narrows [lo, hi] by name=, name[gt]=, name[gte]=, name[lt]=
// and name[lte]=.
func parseCreated(f url.Values, name string, lo, hi *int64) *apiError {
	for _, op := range []string{"", "gt", "gte", "lt", "lte"} {
		key := name
		if op != "" {
			key = name + "[" + op + "]"
		}
		if !f.Has(key) {
			continue
		}
		v, err := formInt(f, key)
		if err != nil {
			return err
		}
		switch op {
		case "":
			*lo, *hi = max(*lo, v), min(*hi, v)
		case "gt":
			*lo = max(*lo, v+1)
		case "gte":
			*lo = max(*lo, v)
		case "lt":
			*hi = min(*hi, v-1)
		case "lte":
			*hi = min(*hi, v)
		}
	}
	return nil
}

// page returns one page of the whole store, newest first.
func (s *store[T]) page(q pageQuery, keep func(T) bool) ([]T, bool, *apiError) {
	return s.pageOf(s.items, q, keep)
}

// pageOf returns one page of items (a subset of the store in ascending
// order), newest first, with Stripe's cursor semantics: starting_after=X
// gives the items older than X, ending_before=X the items newer than X that
// are nearest to it. keep, if not nil, filters items.
func (s *store[T]) pageOf(items []T, q pageQuery, keep func(T) bool) ([]T, bool, *apiError) {
	lo := searchCreated(items, q.createdMin)
	hi := len(items)
	if q.createdMax != maxInt64 {
		hi = searchCreated(items, q.createdMax+1)
	}
	backward := false
	switch {
	case q.startingAfter != "":
		cur, ok := s.byID[q.startingAfter]
		if !ok {
			return nil, false, invalid("starting_after", "resource_missing", "No such %s: '%s'", s.kind, q.startingAfter)
		}
		c, id := cur.sortKey()
		hi = min(hi, searchKey(items, c, id, false))
	case q.endingBefore != "":
		cur, ok := s.byID[q.endingBefore]
		if !ok {
			return nil, false, invalid("ending_before", "resource_missing", "No such %s: '%s'", s.kind, q.endingBefore)
		}
		c, id := cur.sortKey()
		lo = max(lo, searchKey(items, c, id, true))
		backward = true
	}
	out := make([]T, 0, min(q.limit, max(hi-lo, 0)))
	hasMore := false
	if backward {
		for i := lo; i < hi; i++ {
			if keep != nil && !keep(items[i]) {
				continue
			}
			if len(out) == q.limit {
				hasMore = true
				break
			}
			out = append(out, items[i])
		}
		slices.Reverse(out)
		return out, hasMore, nil
	}
	for i := hi - 1; i >= lo; i-- {
		if keep != nil && !keep(items[i]) {
			continue
		}
		if len(out) == q.limit {
			hasMore = true
			break
		}
		out = append(out, items[i])
	}
	return out, hasMore, nil
}

// sortedSubset returns a copy of items in ascending store order, for paging
// over an index's candidates.
func sortedSubset[T record](items []T) []T {
	out := slices.Clone(items)
	slices.SortFunc(out, func(a, b T) int {
		ac, aid := a.sortKey()
		bc, bid := b.sortKey()
		return keyCmp(ac, aid, bc, bid)
	})
	return out
}

// listJSON is a Stripe list object.
type listJSON struct {
	Object  string `json:"object"`
	Data    []any  `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

// renderList renders a page with render applied to each item.
func renderList[T any](url string, items []T, hasMore bool, render func(T) any) listJSON {
	data := make([]any, len(items))
	for i, it := range items {
		data[i] = render(it)
	}
	return listJSON{Object: "list", Data: data, HasMore: hasMore, URL: url}
}

// expander is the set of expand[] paths of a request.
type expander map[string]bool

// parseExpand reads expand, expand[] and expand[N].
func parseExpand(f url.Values) expander {
	x := expander{}
	for _, p := range formList(f, "expand") {
		x[p] = true
	}
	return x
}

// has reports whether field is expanded at this level, directly or because
// a path below it is (expanding a.b implies expanding a).
func (x expander) has(field string) bool {
	if x[field] {
		return true
	}
	for p := range x {
		if strings.HasPrefix(p, field+".") {
			return true
		}
	}
	return false
}

// sub returns the paths below field, for rendering the expanded object.
func (x expander) sub(field string) expander {
	out := expander{}
	prefix := field + "."
	for p := range x {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			out[rest] = true
		}
	}
	return out
}
