// Unsubscribe links: a marketing message links to
// PublicURL/unsubscribe?email=...&token=..., where the token is an
// HMAC-SHA256 of the lowercased address, so the endpoint can honour the
// request without a login and nobody can unsubscribe someone else.
package mail

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
)

// UnsubscribeToken returns the base64url (unpadded) HMAC-SHA256 of the
// trimmed, lowercased email under secret.
func UnsubscribeToken(secret []byte, email string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strings.ToLower(strings.TrimSpace(email))))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// VerifyUnsubscribe reports, in constant time, whether token was issued for
// email under secret. An empty secret or token never verifies.
func VerifyUnsubscribe(secret []byte, email, token string) bool {
	if len(secret) == 0 || token == "" {
		return false
	}
	return hmac.Equal([]byte(UnsubscribeToken(secret, email)), []byte(token))
}

// unsubscribeURL builds the one-click unsubscribe link for email.
func unsubscribeURL(publicURL string, secret []byte, email string) string {
	q := url.Values{}
	q.Set("email", strings.TrimSpace(email))
	q.Set("token", UnsubscribeToken(secret, email))
	return strings.TrimRight(publicURL, "/") + "/unsubscribe?" + q.Encode()
}
