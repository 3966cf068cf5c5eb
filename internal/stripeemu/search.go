// Stripe's search endpoints for payment intents: a subset of the search
// query language (field:'value' clauses joined by AND or by OR, exact
// matches, metadata['key']) and its page-token results. Unlike Stripe,
// whose index lags writes by up to a minute, the emulator's is current.

package stripeemu

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// compileSearch compiles query into a predicate over T. fields maps a field
// name to its value; meta returns an object's metadata for
// metadata['key'] clauses.
func compileSearch[T any](query string, fields map[string]func(T) string, meta func(T) map[string]string) (func(T) bool, *apiError) {
	bad := func(format string, args ...any) *apiError {
		return invalid("query", "", "Invalid query: "+format, args...)
	}
	joiner := " AND "
	if strings.Contains(query, " OR ") {
		if strings.Contains(query, " AND ") {
			return nil, bad("AND and OR cannot be combined in one query.")
		}
		joiner = " OR "
	}
	var clauses []func(T) bool
	for _, part := range strings.Split(query, joiner) {
		part = strings.TrimSpace(part)
		field, val, ok := strings.Cut(part, ":")
		if !ok || len(val) < 2 || !(val[0] == '\'' && val[len(val)-1] == '\'' || val[0] == '"' && val[len(val)-1] == '"') {
			return nil, bad("expected field:'value', got %q.", part)
		}
		val = val[1 : len(val)-1]
		if get, ok := fields[field]; ok {
			clauses = append(clauses, func(v T) bool { return get(v) == val })
			continue
		}
		if key, ok := strings.CutPrefix(field, "metadata["); ok && strings.HasSuffix(key, "]") {
			key = strings.Trim(key[:len(key)-1], `'"`)
			clauses = append(clauses, func(v T) bool { m, ok := meta(v)[key]; return ok && m == val })
			continue
		}
		return nil, bad("the emulator cannot search by %q.", field)
	}
	if joiner == " OR " {
		return func(v T) bool {
			for _, c := range clauses {
				if c(v) {
					return true
				}
			}
			return false
		}, nil
	}
	return func(v T) bool {
		for _, c := range clauses {
			if !c(v) {
				return false
			}
		}
		return true
	}, nil
}

// searchPage reads limit (default 10) and the page token of a search.
func searchPage(f url.Values) (limit, offset int, ae *apiError) {
	limit = 10
	if f.Has("limit") {
		n, ae := formInt(f, "limit")
		if ae != nil {
			return 0, 0, ae
		}
		if n < 1 || n > 100 {
			return 0, 0, invalid("limit", "parameter_invalid_integer", "This value must be greater than or equal to 1 and less than or equal to 100.")
		}
		limit = int(n)
	}
	if p := f.Get("page"); p != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "page_"))
		if err != nil || n < 0 || !strings.HasPrefix(p, "page_") {
			return 0, 0, invalid("page", "", "Invalid page token.")
		}
		offset = n
	}
	return limit, offset, nil
}

// searchResult renders one page of hits (newest first) as a search_result.
func searchResult[T any](path string, hits []T, limit, offset int, render func(T) any) searchResultJSON {
	res := searchResultJSON{Object: "search_result", Data: []any{}, TotalCount: len(hits), URL: path}
	for i := offset; i < len(hits) && i < offset+limit; i++ {
		res.Data = append(res.Data, render(hits[i]))
	}
	if offset+limit < len(hits) {
		res.HasMore = true
		res.NextPage = optString(fmt.Sprintf("page_%d", offset+limit))
	}
	return res
}
