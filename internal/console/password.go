// Passwords: operators listed in config sign in with a password checked
// against an argon2id hash in the PHC string format, or a bcrypt hash (what
// htpasswd -B and most tools print). The hashing is golang.org/x/crypto's;
// this file only encodes and parses the PHC string around it.
package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters of new hashes: OWASP's recommended minimum (19 MiB,
// two passes, one lane), about 30 ms on a small server.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds on the parameters of a configured argon2id hash, so a typo in
// config cannot make every sign-in take gigabytes or minutes.
const (
	maxArgonMemoryKiB = 1 << 20 // 1 GiB
	maxArgonTime      = 16
	maxArgonThreads   = 16
)

var b64 = base64.RawStdEncoding

// HashPassword returns an argon2id hash of password in the PHC string
// format ($argon2id$v=19$m=19456,t=2,p=1$salt$key), with a fresh salt.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("hash password: the password is empty")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// argonHash is a parsed PHC argon2id string.
type argonHash struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2id parses a PHC argon2id string. Its errors never quote the
// hash.
func parseArgon2id(s string) (argonHash, error) {
	var h argonHash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, errors.New("not an argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return h, fmt.Errorf("argon2id version must be v=%d", argon2.Version)
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &threads); err != nil {
		return h, errors.New("argon2id parameters must read m=<KiB>,t=<passes>,p=<lanes>")
	}
	if h.memory < 8*threads || h.memory > maxArgonMemoryKiB || h.time < 1 || h.time > maxArgonTime ||
		threads < 1 || threads > maxArgonThreads {
		return h, fmt.Errorf("argon2id parameters out of range (m up to %d KiB, t 1 to %d, p 1 to %d)",
			maxArgonMemoryKiB, maxArgonTime, maxArgonThreads)
	}
	h.threads = uint8(threads)
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return h, errors.New("argon2id salt must be unpadded base64 of at least 8 bytes")
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return h, errors.New("argon2id hash must be unpadded base64 of at least 16 bytes")
	}
	return h, nil
}

// checkHash reports whether hash is one VerifyPassword can check: a
// well-formed argon2id string or a bcrypt hash.
func checkHash(hash string) error {
	if strings.HasPrefix(hash, "$argon2id$") {
		_, err := parseArgon2id(hash)
		return err
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return errors.New("neither an argon2id PHC string nor a bcrypt hash")
	}
	return nil
}

// VerifyPassword reports whether password matches hash (argon2id or
// bcrypt), comparing in constant time. A malformed hash is an error.
func VerifyPassword(hash, password string) (bool, error) {
	if strings.HasPrefix(hash, "$argon2id$") {
		h, err := parseArgon2id(hash)
		if err != nil {
			return false, err
		}
		key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(key, h.key) == 1, nil
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, errors.New("neither an argon2id PHC string nor a bcrypt hash")
}
