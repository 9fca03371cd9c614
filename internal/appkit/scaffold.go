package appkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrExists means the scaffold's directory already exists.
var ErrExists = errors.New("directory already exists")

var slugRe = regexp.MustCompile(`[^a-z0-9]+`)

// New writes the scaffold of a web app named name into dir, which must not
// exist: a manifest, an entry page with a strict Content Security Policy, a
// script, a style sheet and an icon. The scaffold passes Validate as it is;
// the app builder edits it rather than inventing the layout.
func New(dir, name string) (*Manifest, error) {
	name = strings.TrimSpace(name)
	slug := strings.Trim(slugRe.ReplaceAllString(strings.ToLower(name), ""), "-")
	if len(slug) < 2 || slug[0] < 'a' || slug[0] > 'z' {
		slug = "app" + slug
	}
	m := &Manifest{
		ID: "local." + slug, Name: name, Version: "0.1.0", Type: "web",
		Description: "A taOS web app.", Entry: "index.html", Icon: "icon.svg",
		Capabilities: []string{}, NetworkAllowlist: []string{},
	}
	var findings []Finding
	if data, _ := json.Marshal(m); parseManifest(data, func(f Finding) { findings = append(findings, f) }) == nil {
		return nil, fmt.Errorf("app name %q: %s", name, findings[0].Message)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrExists)
		}
		return nil, err
	}
	manifest, _ := json.MarshalIndent(m, "", "  ")
	title := htmlEscape(name)
	files := map[string]string{
		ManifestName: string(manifest) + "\n",
		"index.html": `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'">
  <title>` + title + `</title>
  <link rel="stylesheet" href="style.css">
  <link rel="icon" href="icon.svg">
</head>
<body>
  <main>
    <h1>` + title + `</h1>
    <p id="status">Loading…</p>
  </main>
  <script type="module" src="app.js"></script>
</body>
</html>
`,
		"app.js": `// Entry script. Scripts may come only from this package or from the
// origins listed in manifest.json's network_allowlist.
document.getElementById("status").textContent = "Ready.";
`,
		"style.css": `body { font-family: system-ui, sans-serif; margin: 2rem; }
`,
		"icon.svg": `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#3b82f6"/></svg>
`,
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
