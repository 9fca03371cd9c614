# taosagent. `make run` and `make test` install what they need on a fresh
# Debian machine with Go and Node: `run` only npm, bubblewrap and ripgrep (apt) and
# the pinned opencode (npm); `test` also tmux, chromium, procps and iproute2 (apt)
# and the official MCP and OpenAI clients (npm).

HOME_DIR ?= $(CURDIR)/.cache/home
BIN      := bin/taosagent
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build deps testdeps opencode run demo test check bench fuzz openapi mcpsdk openaijs mcpservers

build:
	go build -o $(BIN) ./cmd/taosagent

# What the daemon needs, and what the tests need besides, as COMMAND:PACKAGE
# pairs: apt-get installs the packages whose command is missing.
RUN_NEEDS  := npm:nodejs npm:npm bwrap:bubblewrap rg:ripgrep
TEST_NEEDS := $(RUN_NEEDS) tmux:tmux chromium:chromium ps:procps ip:iproute2 podman:podman runc:runc busybox:busybox-static pg_ctlcluster:postgresql
apt_install = @missing=$$(for n in $(1); do command -v $${n%%:*} >/dev/null || echo $${n\#*:}; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; fi

deps:
	$(call apt_install,$(RUN_NEEDS))

testdeps:
	$(call apt_install,$(TEST_NEEDS))

opencode: deps build
	$(BIN) setup --home $(HOME_DIR)

# Runs one demo turn on the real opencode against the scripted model.
run: opencode
	$(BIN) serve --home $(HOME_DIR)

# Runs one demo turn on the real opencode against the scripted model, no daemon.
demo: opencode
	$(BIN) demo --home $(HOME_DIR)

check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	go vet ./...
	go mod tidy -diff

# The official MCP TypeScript SDK: a client no one here wrote, that the
# tests point at taosagent's MCP server.
MCPSDK := .cache/mcpsdk/node_modules
mcpsdk: testdeps
	[ -d $(MCPSDK)/@modelcontextprotocol/sdk ] || (mkdir -p .cache/mcpsdk && cd .cache/mcpsdk && npm install --silent --no-audit --no-fund @modelcontextprotocol/sdk@1.32.2)

# The official OpenAI client (npm `openai`), pointed at the model gateway.
OPENAIJS := .cache/openai/node_modules
openaijs: testdeps
	[ -d $(OPENAIJS)/openai ] || (mkdir -p .cache/openai && cd .cache/openai && npm install --silent --no-audit --no-fund openai@7.59.0)

# Three MCP servers from the npm registry and the package opencode's tools
# import (the versions the e2e tests pin):
# installed here only to fill npm's cache, from which the daemon under test
# installs them (npmpkg, --prefer-offline).
MCPSERVERS := .cache/mcpservers/node_modules
mcpservers: testdeps
	[ -d $(MCPSERVERS)/@modelcontextprotocol/server-everything ] || (mkdir -p .cache/mcpservers && cd .cache/mcpservers && npm install --silent --no-audit --no-fund --ignore-scripts @modelcontextprotocol/server-memory@2026.8.31 @modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-everything@2026.8.31 @opencode-ai/plugin@1.18.33)

# The packages that run longest (they drive the real opencode) are named
# first, so that they start first: go test runs two packages at a time
# here, in the order given.
SLOW_PKGS := ./internal/e2e ./internal/runner ./internal/supervisor
test: testdeps build check mcpsdk openaijs mcpservers
	TAOSAGENT_OPENAI_JS=$(CURDIR)/$(OPENAIJS) TAOSAGENT_MCP_SDK=$(CURDIR)/$(MCPSDK) TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -race -timeout 25m $(SLOW_PKGS) ./...
	$(MAKE) fuzz FUZZSCALE=1
	$(MAKE) openapi

# Validates the API's OpenAPI document against the official 3.1 schemas.
OASV := .cache/oasv/node_modules/@seriousme/openapi-schema-validator
openapi:
	[ -d $(OASV) ] || (mkdir -p .cache/oasv && cd .cache/oasv && npm install --silent --no-audit --no-fund @seriousme/openapi-schema-validator@2.11.0)
	cp scripts/openapi-check.mjs .cache/oasv/check.mjs
	node .cache/oasv/check.mjs internal/httpapi/openapi.json

# Budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can race its own deadline on a loaded machine and fail
# with a bare "context deadline exceeded" (golang/go#75804). FUZZSCALE=1 is
# about 10 s a target here; make test uses it, make fuzz alone 6.
FUZZSCALE ?= 6
fuzz:
	go test -run '^$$' -fuzz '^FuzzSSEReader$$' -fuzztime $$((100000*$(FUZZSCALE)))x ./internal/opencode
	go test -run '^$$' -fuzz '^FuzzCodec$$' -fuzztime $$((20000*$(FUZZSCALE)))x -fuzzminimizetime 1000x ./internal/reply
	go test -run '^$$' -fuzz '^FuzzCheckURL$$' -fuzztime $$((400000*$(FUZZSCALE)))x ./internal/netguard
	go test -run '^$$' -fuzz '^FuzzArchive$$' -fuzztime $$((60000*$(FUZZSCALE)))x -fuzzminimizetime 1000x ./internal/appkit
	go test -run '^$$' -fuzz '^FuzzManifest$$' -fuzztime $$((100000*$(FUZZSCALE)))x ./internal/appkit
	go test -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $$((50000*$(FUZZSCALE)))x ./internal/eventlog
	go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $$((50000*$(FUZZSCALE)))x ./internal/httpapi
	go test -run '^$$' -fuzz '^FuzzCursor$$' -fuzztime $$((50000*$(FUZZSCALE)))x ./internal/httpapi

bench: testdeps build
	TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -run '^$$' -bench . -benchtime 1x ./internal/supervisor
	go test -run '^$$' -bench . -benchmem ./internal/reply
	go test -run '^$$' -bench StartOverhead -benchtime 200x ./internal/sandbox
	go test -run '^$$' -bench Validate10MB -benchtime 20x ./internal/appkit
	go test -run '^$$' -bench Ingest -benchtime 1x ./internal/eventlog
	go test -run '^$$' -bench 'AddedLatency|Replay' -benchtime 1x ./internal/httpapi
	go test -run '^$$' -bench ReadToolRoundTrip -benchtime 1x ./internal/mcpserver
	go test -run '^$$' -bench GatewayAddedLatency -benchtime 1x ./internal/gateway
	TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -run '^$$' -bench 'FullDoctor|DoctorOfATaOSBox' -benchtime 1x ./internal/doctor
	TAOSAGENT_OPENCODE="$$($(BIN) setup --home $(HOME_DIR) --quiet)" go test -run '^$$' -bench 'IdleRSS|TimeToFirstOutput|SoakUnderCap|PanelChatUnderLoad' -benchtime 1x ./internal/e2e
