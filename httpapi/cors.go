// CORS: browsers on the origins listed in http.cors_origins may call the
// bearer routes. Only a listed origin is echoed in
// Access-Control-Allow-Origin, never "*", and a preflight is answered only
// for a method the path really serves.
package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// cors is the allow-list of origins and the methods each CORS path serves.
type cors struct {
	origins map[string]bool
	methods map[string][]string // path -> methods
}

func newCORS(origins []string) *cors {
	c := &cors{origins: map[string]bool{}, methods: map[string][]string{}}
	for _, o := range origins {
		c.origins[strings.TrimRight(o, "/")] = true
	}
	return c
}

// allow records a "METHOD /path" pattern as reachable cross-origin.
func (c *cors) allow(pattern string) {
	method, path, _ := strings.Cut(pattern, " ")
	c.methods[path] = append(c.methods[path], method)
	slices.Sort(c.methods[path])
}

// wrap adds Access-Control-Allow-Origin to responses for listed origins.
func (c *cors) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); c.origins[origin] {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", "X-Request-Id")
		}
		h.ServeHTTP(w, r)
	})
}

// preflight answers OPTIONS. A listed origin asking for a method the path
// serves gets the CORS grant; anything else gets 204 without one, which
// the browser treats as a refusal.
func (c *cors) preflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		methods, known := c.methods[r.URL.Path]
		if !known {
			writeError(w, r, nil, Errorf(http.StatusNotFound, "not_found", "no such route"))
			return
		}
		origin := r.Header.Get("Origin")
		if c.origins[origin] && slices.Contains(methods, r.Header.Get("Access-Control-Request-Method")) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
