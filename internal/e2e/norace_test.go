//go:build !race

package e2e

// The daemon is built with -race when the tests are.
const raceFlag = ""
