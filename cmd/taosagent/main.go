// Command taosagent is the host control plane for opencode agents.
package main

import (
	"os"

	"github.com/taosagent/taosagent/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
