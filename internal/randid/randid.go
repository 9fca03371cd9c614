// Package randid makes taosagent's random ids and secrets: bytes of
// crypto/rand in hex. It is the one place they are made. crypto/rand's
// Read does not fail (since Go 1.24 it crashes the program rather than
// return short), so nothing here returns an error.
package randid

import (
	"crypto/rand"
	"encoding/hex"
)

// Hex returns n random bytes in hex: 2n characters.
func Hex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Secret returns 32 random bytes in hex: a token or a key.
func Secret() string { return Hex(32) }

// ID returns an id of a kind: prefix, "_", and 10 random bytes in hex
// ("turn_3f…"). It names, it does not protect.
func ID(prefix string) string { return prefix + "_" + Hex(10) }
