package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/taosagent/taosagent/internal/joinconn"
)

// RelayArg, as the first argument of taosagent's binary, makes it a tool
// relay (RunRelay) instead of the CLI.
const RelayArg = "tool-relay"

// The tool relay inside a tool's sandbox: where the tool's proxy settings
// point, and the socket of the daemon's egress proxy for the agent.
const (
	relayAddr  = "127.0.0.1:3128"
	relayProxy = "http://" + relayAddr
	relayBin   = "/run/taosagent/relay"
	relayDir   = "/run/taosagent/proxy"
	// ProxySocket is the name of the egress proxy's socket in a
	// service's ToolProxy directory.
	ProxySocket = "proxy.sock"
)

// RunRelay is a tool sandbox's way to the egress proxy: the sandbox has a
// network of its own with only a loopback, and no route out. args are
// ADDR SOCKET CMD…: it listens on the TCP address ADDR (which the tool's
// HTTPS_PROXY names), joins each connection to the unix socket SOCKET (the
// daemon's egress proxy for the agent, which judges every request by the
// agent's egress policy), runs CMD with its standard streams, passes it
// the signals it gets, and returns its exit status.
func RunRelay(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "taosagent tool-relay: want ADDR SOCKET CMD…")
		return 2
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "taosagent tool-relay:", err)
		return 125
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("unix", args[1])
				if err != nil {
					c.Close()
					return
				}
				joinconn.Join(c, up)
			}()
		}
	}()
	cmd := exec.Command(args[2], args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "taosagent tool-relay:", err)
		return 127
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}
