// Command probe tries one way out of the sandbox and reports what happened.
// It prints "escaped: …" and exits 3 when the attempt worked, or prints
// "blocked: …" and exits 0 when it failed. The sandbox tests run it inside
// the sandbox; it is built by the tests, never shipped.
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe ATTEMPT [ARG]")
		os.Exit(2)
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = os.WriteFile(arg, []byte("escaped"), 0o644)
	case "read":
		_, err = os.ReadFile(arg)
	case "connect":
		var c net.Conn
		c, err = net.DialTimeout("tcp", arg, 2*time.Second)
		if err == nil {
			c.Close()
		}
	case "ptrace":
		_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		err = errnoErr(e)
	case "mount":
		os.MkdirAll("/tmp/m", 0o755)
		err = syscall.Mount("none", "/tmp/m", "tmpfs", 0, "")
	case "setuid":
		_, _, e := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0)
		err = errnoErr(e)
	case "keyring":
		_, _, e := syscall.RawSyscall(syscall.SYS_KEYCTL, 0 /* KEYCTL_GET_KEYRING_ID */, ^uintptr(3) /* session */, 0)
		err = errnoErr(e)
	case "unshare":
		err = syscall.Unshare(syscall.CLONE_NEWUSER)
	case "memory":
		// Maps and touches 64 MiB at a time, up to 8 GiB, and reports a
		// failed mapping the way C programs and Node do.
		for i := 0; i < 128; i++ {
			b, err := syscall.Mmap(-1, 0, 64<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
			if err != nil {
				fmt.Fprintf(os.Stderr, "probe: mmap after %d MiB: %v\n", i*64, err)
				fmt.Printf("blocked: %v\n", err)
				os.Exit(1)
			}
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
		}
		fmt.Println("escaped: allocated 8192 MiB")
		os.Exit(3)
	case "spin":
		for {
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown attempt", os.Args[1])
		os.Exit(2)
	}
	if err == nil {
		fmt.Println("escaped:", os.Args[1], arg)
		os.Exit(3)
	}
	fmt.Println("blocked:", err)
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
