// Command taosagent is the host control plane for opencode agents.
package main

import (
	"os"
	"syscall"

	"github.com/taosagent/taosagent/internal/cli"
	"github.com/taosagent/taosagent/internal/sandbox"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == sandbox.RelayArg {
		// Inside a tool's sandbox, before anything of the CLI. It ends
		// with its command, at once: no exit hooks to run (a race-built
		// binary's would hold every tool's end a second).
		syscall.Exit(sandbox.RunRelay(os.Args[2:]))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
