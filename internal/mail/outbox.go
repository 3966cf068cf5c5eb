// Outbox: the development and test Sender. Each message becomes an RFC 5322
// .eml file (multipart/alternative, text then HTML) plus the HTML part as a
// .html file for a browser, named
// <timestamp>-<template>-<key hash>.{eml,html}. The key hash makes a second
// send with the same idempotency key a no-op.
package mail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Outbox writes messages to files in a directory. It is safe for
// concurrent use within one process.
type Outbox struct {
	dir   string
	clock func() time.Time
	mu    sync.Mutex
}

// NewOutbox returns an Outbox writing to dir, created on first send. clock
// stamps file names and Date headers; nil means time.Now.
func NewOutbox(dir string, clock func() time.Time) *Outbox {
	if clock == nil {
		clock = time.Now
	}
	return &Outbox{dir: dir, clock: clock}
}

// Dir returns the directory the Outbox writes to.
func (o *Outbox) Dir() string { return o.dir }

// Send writes m as an .eml and an .html file, unless a message with the
// same idempotency key is already there. An empty key is replaced by a
// hash of the message, so identical messages are written once.
func (o *Outbox) Send(ctx context.Context, m Message, idempotencyKey string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	hashed := idempotencyKey
	if hashed == "" {
		hashed = "content:" + m.To + "\x00" + m.Subject + "\x00" + m.Text + "\x00" + m.HTML
	}
	sum := sha256.Sum256([]byte(hashed))
	hash := hex.EncodeToString(sum[:6])

	o.mu.Lock()
	defer o.mu.Unlock()
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("create outbox: %w", err)
	}
	existing, err := filepath.Glob(filepath.Join(o.dir, "*-"+hash+".eml"))
	if err != nil {
		return fmt.Errorf("look up outbox: %w", err)
	}
	if len(existing) > 0 {
		return nil
	}

	now := o.clock().UTC()
	slug := slugify(m.Category)
	if slug == "" {
		slug = slugify(m.Subject)
	}
	if slug == "" {
		slug = "message"
	}
	base := filepath.Join(o.dir, now.Format("20060102T150405.000000000Z")+"-"+slug+"-"+hash)

	eml, err := buildEML(m, idempotencyKey, hash, now)
	if err != nil {
		return fmt.Errorf("build eml: %w", err)
	}
	// The .eml is written last: its presence means the send is complete.
	if err := writeAtomic(base+".html", []byte(m.HTML)); err != nil {
		return err
	}
	return writeAtomic(base+".eml", eml)
}

// List returns the paths of the .eml files in the outbox, oldest first.
// A missing directory is an empty outbox.
func (o *Outbox) List() ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(o.dir, "*.eml"))
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	sort.Strings(paths)
	return paths, nil
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".outbox-*")
	if err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write outbox: %w", werr)
	}
	return nil
}

// buildEML renders m as an RFC 5322 message with a multipart/alternative
// body, CRLF line endings and quoted-printable parts.
func buildEML(m Message, idempotencyKey, hash string, now time.Time) ([]byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.SetBoundary("paymentd-" + hash); err != nil {
		return nil, err
	}
	for _, part := range []struct{ ctype, content string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.ctype)
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}

	domain := "paymentd.invalid"
	if a, err := netmail.ParseAddress(m.From); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok {
			domain = d
		}
	}
	var out bytes.Buffer
	header := func(k, v string) {
		out.WriteString(k + ": " + headerValue(v) + "\r\n")
	}
	header("From", m.From)
	header("To", m.To)
	if m.ReplyTo != "" {
		header("Reply-To", m.ReplyTo)
	}
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hash+"@"+domain+">")
	header("MIME-Version", "1.0")
	if m.Category != "" {
		header("X-Paymentd-Template", m.Category)
	}
	if idempotencyKey != "" {
		header("X-Paymentd-Idempotency-Key", idempotencyKey)
	}
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if validHeaderName(k) {
			header(textproto.CanonicalMIMEHeaderKey(k), m.Headers[k])
		}
	}
	header("Content-Type", "multipart/alternative; boundary=\""+mw.Boundary()+"\"")
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// headerValue keeps a header on one line.
func headerValue(v string) string {
	return strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

// validHeaderName reports whether k is a printable ASCII field name
// without a colon (RFC 5322 section 2.2).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' || k[i] == ':' {
			return false
		}
	}
	return true
}

// slugify reduces s to lowercase ASCII letters, digits, underscores and
// single dashes, at most 40 characters, so a template name stays as it is.
func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		case b.Len() > 0 && !dash:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}
