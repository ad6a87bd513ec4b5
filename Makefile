# opsrunner — build, test, bench.
#   make test        vet + the whole test suite with -race (installs test services first)
#   make test-deps   apt-get what integration tests start: Redis 7, ActiveMQ 5.17, RabbitMQ (+stomp), wrk,
#                    python3-stomp (a third-party STOMP client), Chromium (console tests)
#   make bench       benchmarks, each against a baseline measured in the same run
#                    (isolationbench: what a worker process per project would cost)
#   make fuzz        a short run of every fuzz target
#   make cluster-demo a local cluster: Redis, the standalone broker, three agents (Ctrl-C stops all)
#   make samples     deploy every sample project to a running agent (SERVER=..., default OPSRUNNER_SERVER or :8080)

GO       ?= go
PKGS     ?= ./...
TESTFLAGS?= -race -count=1 -timeout 30m
FUZZTIME ?= 20s
APT_PKGS := redis-server activemq rabbitmq-server wrk python3-stomp chromium

.PHONY: all build test test-deps test-cluster vet bench fuzz clean cluster-demo samples

all: build

build:
	$(GO) build -o bin/opsrunner ./cmd/opsrunner

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

test: test-deps vet
	$(GO) test $(TESTFLAGS) $(PKGS)

# Installs only what is missing; needs root (CI and these machines run as root).
test-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make test-deps needs root to apt-get install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

test-cluster: test-deps
	$(GO) test -race -count=1 -timeout 20m -run 'Chaos' ./internal/chaos/

bench: test-deps build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./runtime/ ./store/
	GOGC=400 $(GO) test -run '^$$' -bench WebhookHandler -benchtime 2s ./agent/
	$(GO) run ./bench/brokerbench
	$(GO) run ./bench/brokerbench -backlog 100000,1000000
	$(GO) run ./bench/webhookbench
	$(GO) run ./bench/iobench
	$(GO) run ./bench/listenerbench
	$(GO) run ./bench/isolationbench

fuzz:
	GO=$(GO) .ci/fuzz FuzzParseManifest ./scripts/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzReadBundle ./scripts/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzFrames ./broker/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzSelector ./broker/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzEncodeRun ./store/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzDecodeRunLog ./store/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzJSONParse ./runtime/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzEncodeJSON ./runtime/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzShapeResponse ./triggers/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz FuzzReadFrame ./internal/stompc/ $(FUZZTIME)

# Runs until Ctrl-C; the demo stops its processes itself (see cmd/clusterdemo).
cluster-demo: build
	$(GO) build -o bin/clusterdemo ./cmd/clusterdemo
	bin/clusterdemo -opsrunner bin/opsrunner

# Deploys each folder of samples/ to the agent at $(SERVER) (or OPSRUNNER_SERVER).
samples: build
	@for d in samples/*/; do \
	  [ -f "$$d/opsrunner.yaml" ] || continue; \
	  echo "deploy $$d"; \
	  bin/opsrunner $(if $(SERVER),--server $(SERVER)) deploy "$$d" || exit 1; \
	done

clean:
	rm -rf bin
