// Rendering: every email is three templates, a subject (text/template), an
// HTML body (html/template, wrapped in layout.html.tmpl) and a plain-text
// body (text/template, wrapped in layout.txt.tmpl). The defaults are
// embedded; a file of the same name in the template directory replaces one.
// Everything is parsed and executed against sample data when the Renderer is
// built, so a broken override stops the daemon at start-up, not at the first
// purchase.
package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htemplate "html/template"
	"io/fs"
	netmail "net/mail"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	ttemplate "text/template"

	"github.com/paymentd/paymentd/steps"
)

//go:embed templates/*.tmpl
var embedded embed.FS

// Layout file names; each template name adds <name>.subject.tmpl,
// <name>.html.tmpl and <name>.txt.tmpl.
const (
	htmlLayoutFile = "layout.html.tmpl"
	textLayoutFile = "layout.txt.tmpl"
)

// Default brand colours.
const (
	defaultPrimaryColor    = "#4f46e5"
	defaultBackgroundColor = "#f4f4f7"
	defaultTextColor       = "#1f2937"
)

// Renderer turns a template name and Data into a Message. It is safe for
// concurrent use.
type Renderer struct {
	brand  Brand
	secret []byte
	from   string
	specs  map[string]spec
	sets   map[string]templateSet
}

// templateSet is one email's parsed templates.
type templateSet struct {
	subject *ttemplate.Template
	html    *htemplate.Template
	text    *ttemplate.Template
}

// NewRenderer validates brand, loads every template (embedded, or from
// templateDir when a file of the same name is there; templateDir may be
// empty), and renders each once with sample data. A template that fails to
// parse or execute is an error naming its file, as is a *.tmpl file in
// templateDir that matches no template. unsubscribeSecret keys the
// unsubscribe tokens and must not be empty.
func NewRenderer(brand Brand, templateDir string, unsubscribeSecret []byte) (*Renderer, error) {
	brand, err := checkBrand(brand)
	if err != nil {
		return nil, err
	}
	if len(unsubscribeSecret) == 0 {
		return nil, errors.New("new renderer: unsubscribe secret is empty")
	}
	src, err := newSource(templateDir)
	if err != nil {
		return nil, err
	}
	r := &Renderer{
		brand:  brand,
		secret: bytes.Clone(unsubscribeSecret),
		from:   (&netmail.Address{Name: brand.FromName, Address: brand.FromAddress}).String(),
		specs:  map[string]spec{},
		sets:   map[string]templateSet{},
	}
	if err := r.load(src); err != nil {
		return nil, err
	}
	for _, s := range catalog() {
		d := r.prepare(s, SampleData(s.name, "usd"), "customer@example.com")
		if _, err := r.execute(s.name, d); err != nil {
			return nil, fmt.Errorf("check template %s: %w", s.name, err)
		}
	}
	return r, nil
}

// Brand returns the brand the Renderer was built with, defaults applied.
func (r *Renderer) Brand() Brand { return r.brand }

// Render renders the named template. The brand is the Renderer's; an empty
// d.ProductName becomes the brand's product name; marketing templates get
// d.UnsubscribeURL and the List-Unsubscribe headers. Customer templates go to
// d.CustomerEmail, admin and operator templates to Brand.AdminEmail. Errors
// (unknown template, missing or invalid recipient, execution failure) are
// steps.Permanent: retrying the same data cannot fix them.
func (r *Renderer) Render(name string, d Data) (Message, error) {
	s, ok := r.specs[name]
	if !ok {
		return Message{}, steps.Permanent(fmt.Errorf("render %s: unknown template", name))
	}
	to := r.brand.AdminEmail
	if s.audience == toCustomer {
		to = d.CustomerEmail
	}
	addr, err := parseRecipient(to)
	if err != nil {
		return Message{}, steps.Permanent(fmt.Errorf("render %s: %w", name, err))
	}
	d = r.prepare(s, d, addr)
	m, err := r.execute(name, d)
	if err != nil {
		return Message{}, steps.Permanent(fmt.Errorf("render %s: %w", name, err))
	}
	m.From = r.from
	m.To = addr
	if s.audience == toCustomer && r.brand.SupportEmail != "" &&
		!strings.EqualFold(r.brand.SupportEmail, r.brand.FromAddress) {
		m.ReplyTo = r.brand.SupportEmail
	}
	m.Category = name
	m.Marketing = s.marketing
	if s.marketing {
		m.Headers = map[string]string{
			"List-Unsubscribe":      "<" + d.UnsubscribeURL + ">",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		}
	}
	return m, nil
}

// prepare fills in what the Renderer owns: brand, default product name and,
// for marketing mail, the unsubscribe link for recipient.
func (r *Renderer) prepare(s spec, d Data, recipient string) Data {
	d.Brand = r.brand
	if d.ProductName == "" {
		d.ProductName = r.brand.ProductName
	}
	if s.marketing {
		d.UnsubscribeURL = unsubscribeURL(r.brand.PublicURL, r.secret, recipient)
	}
	return d
}

// execute runs the named template set, filling Subject, HTML and Text.
func (r *Renderer) execute(name string, d Data) (Message, error) {
	set := r.sets[name]
	var subj, html, text bytes.Buffer
	if err := set.subject.Execute(&subj, d); err != nil {
		return Message{}, fmt.Errorf("execute subject: %w", err)
	}
	subject := strings.Join(strings.Fields(subj.String()), " ")
	if subject == "" {
		return Message{}, fmt.Errorf("execute subject: %s.subject.tmpl renders an empty subject", name)
	}
	if err := set.html.Execute(&html, d); err != nil {
		return Message{}, fmt.Errorf("execute html: %w", err)
	}
	if err := set.text.Execute(&text, d); err != nil {
		return Message{}, fmt.Errorf("execute text: %w", err)
	}
	return Message{Subject: subject, HTML: html.String(), Text: tidyText(text.String())}, nil
}

// firstName returns the first word of a full name, or "".
func firstName(name string) string {
	if f := strings.Fields(name); len(f) > 0 {
		return f[0]
	}
	return ""
}

// tidyText trims trailing spaces, collapses runs of blank lines left by
// conditionals and ends the text with exactly one newline.
func tidyText(s string) string {
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	blank := true // drops leading blank lines
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\r")
		if l == "" {
			if blank {
				continue
			}
			blank = true
		} else {
			blank = false
		}
		out = append(out, l)
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}

// load parses the layouts and every template set.
func (r *Renderer) load(src source) error {
	funcs := map[string]any{"money": FormatMoney, "firstName": firstName}

	layoutSrc, origin, err := src.read(htmlLayoutFile)
	if err != nil {
		return err
	}
	htmlLayout, err := htemplate.New(htmlLayoutFile).Funcs(funcs).Parse(layoutSrc)
	if err != nil {
		return fmt.Errorf("parse %s: %w", origin, err)
	}
	layoutSrc, origin, err = src.read(textLayoutFile)
	if err != nil {
		return err
	}
	textLayout, err := ttemplate.New(textLayoutFile).Funcs(funcs).Parse(layoutSrc)
	if err != nil {
		return fmt.Errorf("parse %s: %w", origin, err)
	}

	for _, s := range catalog() {
		var set templateSet

		file := s.name + ".subject.tmpl"
		body, origin, err := src.read(file)
		if err != nil {
			return err
		}
		if set.subject, err = ttemplate.New(file).Funcs(funcs).Parse(body); err != nil {
			return fmt.Errorf("parse %s: %w", origin, err)
		}

		file = s.name + ".html.tmpl"
		if body, origin, err = src.read(file); err != nil {
			return err
		}
		h, err := htmlLayout.Clone()
		if err != nil {
			return fmt.Errorf("clone %s: %w", htmlLayoutFile, err)
		}
		if _, err := h.New(file).Parse(body); err != nil {
			return fmt.Errorf("parse %s: %w", origin, err)
		}
		if h.Lookup("body") == nil {
			return fmt.Errorf("parse %s: no {{define \"body\"}} block", origin)
		}
		set.html = h

		file = s.name + ".txt.tmpl"
		if body, origin, err = src.read(file); err != nil {
			return err
		}
		t, err := textLayout.Clone()
		if err != nil {
			return fmt.Errorf("clone %s: %w", textLayoutFile, err)
		}
		if _, err := t.New(file).Parse(body); err != nil {
			return fmt.Errorf("parse %s: %w", origin, err)
		}
		if t.Lookup("body") == nil {
			return fmt.Errorf("parse %s: no {{define \"body\"}} block", origin)
		}
		set.text = t

		r.specs[s.name] = s
		r.sets[s.name] = set
	}
	return nil
}

// templateFiles lists every template file name.
func templateFiles() []string {
	files := []string{htmlLayoutFile, textLayoutFile}
	for _, name := range Names() {
		files = append(files, name+".subject.tmpl", name+".html.tmpl", name+".txt.tmpl")
	}
	return files
}

// source reads template files: from dir when present there, else embedded.
type source struct{ dir string }

// newSource checks that dir, if set, is a directory holding no unknown
// *.tmpl file.
func newSource(dir string) (source, error) {
	if dir == "" {
		return source{}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return source{}, fmt.Errorf("read template dir: %w", err)
	}
	known := map[string]bool{}
	for _, f := range templateFiles() {
		known[f] = true
	}
	var unknown []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".tmpl") && !known[e.Name()] {
			unknown = append(unknown, filepath.Join(dir, e.Name()))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return source{}, fmt.Errorf("read template dir: unknown template file %s", strings.Join(unknown, ", "))
	}
	return source{dir: dir}, nil
}

// read returns a file's content and a description of where it came from.
func (s source) read(file string) (content, origin string, err error) {
	if s.dir != "" {
		path := filepath.Join(s.dir, file)
		b, err := os.ReadFile(path)
		if err == nil {
			return string(b), path, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("read template: %w", err)
		}
	}
	b, err := fs.ReadFile(embedded, "templates/"+file)
	if err != nil {
		return "", "", fmt.Errorf("read embedded template %s: %w", file, err)
	}
	return string(b), "embedded templates/" + file, nil
}

// parseRecipient checks that s is one plain email address and returns it.
func parseRecipient(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no recipient address")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("parse recipient %q: %w", s, err)
	}
	return a.Address, nil
}

// checkBrand validates b and fills in defaults.
func checkBrand(b Brand) (Brand, error) {
	var problems []string
	if strings.TrimSpace(b.ProductName) == "" {
		problems = append(problems, "product name is empty")
	}
	if a, err := netmail.ParseAddress(b.FromAddress); err != nil {
		problems = append(problems, fmt.Sprintf("from address %q is not an email address", b.FromAddress))
	} else {
		b.FromAddress = a.Address
	}
	if b.FromName == "" {
		b.FromName = b.ProductName
	}
	for _, e := range []struct{ what, v string }{{"support email", b.SupportEmail}, {"admin email", b.AdminEmail}} {
		if e.v != "" {
			if _, err := netmail.ParseAddress(e.v); err != nil {
				problems = append(problems, fmt.Sprintf("%s %q is not an email address", e.what, e.v))
			}
		}
	}
	if !isHTTPURL(b.PublicURL) {
		problems = append(problems, fmt.Sprintf("public URL %q is not an absolute http(s) URL", b.PublicURL))
	}
	for _, u := range []struct{ what, v string }{{"logo URL", b.LogoURL}, {"pricing URL", b.PricingURL}} {
		if u.v != "" && !isHTTPURL(u.v) {
			problems = append(problems, fmt.Sprintf("%s %q is not an absolute http(s) URL", u.what, u.v))
		}
	}
	for _, c := range []struct {
		what string
		v    *string
		def  string
	}{
		{"primary colour", &b.PrimaryColor, defaultPrimaryColor},
		{"background colour", &b.BackgroundColor, defaultBackgroundColor},
		{"text colour", &b.TextColor, defaultTextColor},
	} {
		if *c.v == "" {
			*c.v = c.def
		} else if !isCSSColor(*c.v) {
			problems = append(problems, fmt.Sprintf("%s %q is not #rgb, #rrggbb or a colour name", c.what, *c.v))
		}
	}
	if len(problems) > 0 {
		return b, fmt.Errorf("check brand: %s", strings.Join(problems, "; "))
	}
	return b, nil
}

// isHTTPURL reports whether s is an absolute http or https URL.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// isCSSColor accepts #rgb, #rgba, #rrggbb, #rrggbbaa and colour keywords.
func isCSSColor(s string) bool {
	if hex, ok := strings.CutPrefix(s, "#"); ok {
		switch len(hex) {
		case 3, 4, 6, 8:
		default:
			return false
		}
		for _, c := range hex {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
