// Command taosagent is the host control plane for opencode agents.
package main

import (
	"os"

	"github.com/taosagent/taosagent/internal/cli"
	"github.com/taosagent/taosagent/internal/sandbox"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == sandbox.RelayArg {
		// Inside a tool's sandbox, before anything of the CLI.
		os.Exit(sandbox.RunRelay(os.Args[2:]))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
