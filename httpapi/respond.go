// JSON in and out: every response is JSON, and every error has the shape
// {"error": {"code": "...", "message": "..."}} with a status chosen in one
// place from its code. Clients see a code and a safe message, never internals.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Error is an API error: a stable machine code and a message safe to show.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Product and Available detail an out_of_stock error: the product and
	// the units of it that can still be bought. Product also names the
	// product of a cart_required error.
	Product   string `json:"product,omitempty"`
	Available *int   `json:"available,omitempty"`
	// Cart marks a cart_required error (with Product): the product is
	// bought through the cart, POST /api/checkout {"cart": true}.
	Cart bool `json:"cart,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an API error with status and code.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as the API error shape. Anything that is not an
// *Error is logged and reported as an internal error.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		log.ErrorContext(r.Context(), "request failed", "err", err, "method", r.Method, "path", r.URL.Path)
		apiErr = Errorf(http.StatusInternalServerError, "internal", "something went wrong on our side; it has been logged")
	}
	writeJSON(w, apiErr.Status, map[string]*Error{"error": apiErr})
}

// decodeJSON reads a JSON body of at most limit bytes into v, rejecting
// unknown fields so a misspelt field is an error rather than ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", limit)
		}
		return Errorf(http.StatusBadRequest, "invalid_json", "request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, "invalid_json", "request body holds more than one JSON value")
	}
	return nil
}
