// Preview: every template rendered with sample data into a directory of
// HTML files and an index page, for checking a brand or an override in a
// browser before real customers see it.
package mail

import (
	"bytes"
	"fmt"
	htemplate "html/template"
	"os"
	"path/filepath"
)

// previewIndex is the index page linking every rendered template.
const previewIndex = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Brand.ProductName}} email previews</title>
</head>
<body style="margin:0;padding:32px;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;background-color:{{.Brand.BackgroundColor}};color:{{.Brand.TextColor}};">
<h1 style="margin:0 0 24px 0;font-size:24px;">{{.Brand.ProductName}} email previews</h1>
<table cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;background-color:#ffffff;">
<tr><th align="left" style="padding:8px 16px;border-bottom:2px solid {{.Brand.PrimaryColor}};">Template</th><th align="left" style="padding:8px 16px;border-bottom:2px solid {{.Brand.PrimaryColor}};">Subject</th><th align="left" style="padding:8px 16px;border-bottom:2px solid {{.Brand.PrimaryColor}};">To</th></tr>
{{- range .Pages}}
<tr><td style="padding:8px 16px;border-bottom:1px solid #e5e7eb;"><a href="{{.File}}" style="color:{{$.Brand.PrimaryColor}};">{{.Name}}</a>{{if .Marketing}} <small>(marketing)</small>{{end}}</td><td style="padding:8px 16px;border-bottom:1px solid #e5e7eb;">{{.Subject}}</td><td style="padding:8px 16px;border-bottom:1px solid #e5e7eb;">{{.To}}</td></tr>
{{- end}}
</table>
</body>
</html>
`

// previewPage is one row of the index.
type previewPage struct {
	Name, File, Subject, To string
	Marketing               bool
}

// Preview renders every template with SampleData in usd into
// outDir/<name>.html, writes outDir/index.html linking each one with its
// subject, and returns the paths written, index last. It creates outDir.
// Without a configured admin address, admin mail shows admin@example.com.
func Preview(r *Renderer, outDir string) ([]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create preview dir: %w", err)
	}
	// Previews work before an admin address is configured.
	pr := *r
	if pr.brand.AdminEmail == "" {
		pr.brand.AdminEmail = "admin@example.com"
	}
	var (
		written []string
		pages   []previewPage
	)
	for _, name := range Names() {
		m, err := pr.Render(name, SampleData(name, "usd"))
		if err != nil {
			return written, fmt.Errorf("preview %s: %w", name, err)
		}
		file := name + ".html"
		path := filepath.Join(outDir, file)
		if err := os.WriteFile(path, []byte(m.HTML), 0o644); err != nil {
			return written, fmt.Errorf("write preview: %w", err)
		}
		written = append(written, path)
		pages = append(pages, previewPage{Name: name, File: file, Subject: m.Subject, To: m.To, Marketing: m.Marketing})
	}

	index, err := htemplate.New("index").Parse(previewIndex)
	if err != nil {
		return written, fmt.Errorf("parse preview index: %w", err)
	}
	var buf bytes.Buffer
	err = index.Execute(&buf, struct {
		Brand Brand
		Pages []previewPage
	}{r.Brand(), pages})
	if err != nil {
		return written, fmt.Errorf("render preview index: %w", err)
	}
	path := filepath.Join(outDir, "index.html")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return written, fmt.Errorf("write preview index: %w", err)
	}
	return append(written, path), nil
}
