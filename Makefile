# taosagent. `make run` and `make test` install what they need on a fresh
# Debian machine with Go and Node: npm (apt), the pinned opencode (npm).

HOME_DIR ?= $(CURDIR)/.cache/home
BIN      := bin/taosagent
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build deps opencode run test check bench fuzz

build:
	go build -o $(BIN) ./cmd/taosagent

deps:
	@command -v npm >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nodejs npm; }

opencode: deps build
	$(BIN) setup --home $(HOME_DIR)

# Runs one demo turn on the real opencode against the scripted model.
run: opencode
	$(BIN) demo --home $(HOME_DIR)

check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	go vet ./...
	go mod tidy -diff

test: deps build check
	TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -race -timeout 25m ./...
	$(MAKE) fuzz FUZZTIME=10s

FUZZTIME ?= 60s
fuzz:
	go test -run '^$$' -fuzz '^FuzzSSEReader$$' -fuzztime $(FUZZTIME) ./internal/opencode
	go test -run '^$$' -fuzz '^FuzzCodec$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./internal/reply

bench: deps build
	TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -run '^$$' -bench . -benchtime 1x ./internal/supervisor
	go test -run '^$$' -bench . -benchmem ./internal/reply
