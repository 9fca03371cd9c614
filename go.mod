module github.com/taosagent/taosagent

go 1.26.8

require (
	github.com/elastic/go-seccomp-bpf v1.6.0
	golang.org/x/net v0.41.0
)

require golang.org/x/sys v0.33.0 // indirect
