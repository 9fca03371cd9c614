package appkit

import (
	"fmt"
	"path"
	"strings"

	"github.com/taosagent/taosagent/internal/secretscan"
)

// textTypes are scanned for secrets; binary assets are not.
var textTypes = map[string]bool{
	".html": true, ".htm": true, ".css": true, ".js": true, ".mjs": true, ".map": true, ".json": true,
	".webmanifest": true, ".txt": true, ".md": true, ".xml": true, ".csv": true, ".svg": true,
}

// scanSecrets adds a finding for each credential in a text file
// (secretscan.Scan): an error for a recognisable one (a package is shared,
// and what is in it is public), a warning for a random-looking string.
func scanSecrets(name string, data []byte, add func(Finding)) {
	if !textTypes[strings.ToLower(path.Ext(name))] {
		return
	}
	for _, h := range secretscan.Scan(name, data) {
		sev := Warning
		if h.Certain {
			sev = Error
		}
		add(Finding{Rule: h.Rule, Path: fmt.Sprintf("%s:%d", name, h.Line), Severity: sev, Message: h.Message})
	}
}
