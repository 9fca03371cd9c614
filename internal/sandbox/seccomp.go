package sandbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"runtime"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Denied lists the system calls a build never needs. Inside the sandbox
// each returns EPERM. The list covers debugging other processes, mounting
// and namespace changes, kernel keyrings, eBPF and perf, kernel modules and
// kexec, the clock, swap, reboot, raw I/O ports, handle-based opens that
// bypass path checks, userfaultfd and io_uring (both frequent in kernel
// exploits).
var Denied = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"swapon", "swapoff", "reboot", "acct", "syslog", "quotactl", "vhangup",
	"iopl", "ioperm", "uselib",
	"open_by_handle_at", "name_to_handle_at",
	"userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// setidGuard refuses (EPERM) every call that would set a set-user-ID or
// set-group-ID bit on a file: a chmod, or a file made with one. A sandbox
// writes into a person's directory as its owner (Bind); a set-ID program
// left there would run as that owner for whoever starts it on the host.
func setidGuard() []seccomp.NameWithConditions {
	const setid = unix.S_ISUID | unix.S_ISGID
	mode := map[string]uint32{ // the argument that holds the mode
		"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2,
		"open": 2, "openat": 3, "creat": 1, "mknod": 1, "mknodat": 2,
	}
	var out []seccomp.NameWithConditions
	for _, n := range slices.Sorted(maps.Keys(mode)) {
		out = append(out, seccomp.NameWithConditions{Name: n,
			Conditions: seccomp.ArgumentConditions{{Argument: mode[n], Operation: seccomp.BitsSet, Value: setid}}})
	}
	return out
}

// seccompProgram returns the filter bwrap installs before it executes the
// command, as struct sock_filter records in host byte order: every call of
// Denied but those named in allow returns EPERM, and so does every call
// that would set a set-ID bit (setidGuard); openat2 returns ENOSYS.
//
// The library's own program allows every call made under a foreign
// architecture (it only filters the native one), which would let a 32-bit
// int 0x80 call slip past a deny list. This program kills the process for
// any architecture but the native one instead.
func seccompProgram(allow ...string) ([]byte, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("seccomp filter: architecture %s is not supported", runtime.GOARCH)
	}
	policy := seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno,
				Names: slices.DeleteFunc(slices.Clone(Denied), func(n string) bool { return slices.Contains(allow, n) })},
			{Action: seccomp.ActionErrno, NamesWithCondtions: setidGuard()},
			// Its mode is in a struct the filter cannot read; C libraries
			// fall back to openat on ENOSYS.
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"openat2"}},
		},
	}
	insns, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	const (
		archOffset       = 4          // offsetof(struct seccomp_data, arch)
		auditArchX86_64  = 0xc000003e // AUDIT_ARCH_X86_64
		retKillProcess   = 0x80000000 // SECCOMP_RET_KILL_PROCESS
		instructionBytes = 8
	)
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: archOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipTrue: 1},
		bpf.RetConstant{Val: retKillProcess},
	}
	raw, err := bpf.Assemble(append(guard, insns...))
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw) * instructionBytes)
	for _, r := range raw {
		binary.Write(&buf, binary.NativeEndian, r)
	}
	return buf.Bytes(), nil
}
