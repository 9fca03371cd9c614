// Package opencode is taosagent's only door to the outside system opencode:
// it installs and verifies the pinned binary, writes an instance's config,
// talks to a running `opencode serve` over HTTP, and reads its event stream.
//
// Nothing here knows about agents, turns or the event log; it speaks
// opencode's own vocabulary and turns opencode's failures into the typed
// errors of this package.
package opencode

import "runtime"

// Version is the one opencode release taosagent runs. Every instance is
// checked against it at start (`--version` and GET /global/health).
const Version = "1.18.33"

// PluginPackage is the npm package a tool of opencode's imports ("import
// { tool } from \"@opencode-ai/plugin\""), at the release's version.
const PluginPackage = "@opencode-ai/plugin@" + Version

// npmPackage is the platform package that carries the opencode binary for
// this machine; installing it alone avoids opencode-ai's postinstall script
// and the duplicate "baseline" package (177 MB instead of 354 MB).
func npmPackage() (string, error) {
	if runtime.GOOS != "linux" {
		return "", errUnsupportedPlatform
	}
	switch runtime.GOARCH {
	case "amd64":
		return "opencode-linux-x64", nil
	case "arm64":
		return "opencode-linux-arm64", nil
	}
	return "", errUnsupportedPlatform
}
