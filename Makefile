# paymentd: `make run` starts the dev stack, `make test` runs every test
# against a real PostgreSQL, `make bench` measures the engine.
GO       ?= go
TESTPG   := .data/testpg
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: run build test chaos bench vet clean

run:
	$(GO) run ./cmd/paymentd dev

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/paymentd ./cmd/paymentd

vet:
	$(GO) vet ./...

# Uses PAYMENTD_TEST_DATABASE_URL when set (CI sets it); otherwise starts a
# throwaway cluster under .data/testpg for the run and stops it afterwards.
test:
	@if [ -n "$$PAYMENTD_TEST_DATABASE_URL" ]; then \
		$(GO) test -count=1 -timeout 20m ./...; \
	else \
		url=$$($(GO) run ./internal/devpg/devpgctl start $(TESTPG)) || exit 1; \
		PAYMENTD_TEST_DATABASE_URL="$$url" $(GO) test -count=1 -timeout 20m ./...; rc=$$?; \
		$(GO) run ./internal/devpg/devpgctl stop $(TESTPG); exit $$rc; \
	fi

# The chaos acceptance of issue 10 at full size (1,000 purchases paid in two
# minutes, five kill -9s, a PostgreSQL restart; about six minutes). make test
# runs a smaller one.
chaos:
	@if [ -n "$$PAYMENTD_TEST_DATABASE_URL" ]; then \
		PAYMENTD_CHAOS=full $(GO) test -count=1 -timeout 15m -run '^TestChaos' -v ./cmd/paymentd; \
	else \
		url=$$($(GO) run ./internal/devpg/devpgctl start $(TESTPG)) || exit 1; \
		PAYMENTD_TEST_DATABASE_URL="$$url" PAYMENTD_CHAOS=full $(GO) test -count=1 -timeout 15m -run '^TestChaos' -v ./cmd/paymentd; rc=$$?; \
		$(GO) run ./internal/devpg/devpgctl stop $(TESTPG); exit $$rc; \
	fi

bench:
	@if [ -n "$$PAYMENTD_TEST_DATABASE_URL" ]; then \
		$(GO) run ./internal/bench -out bench-results.json; \
	else \
		url=$$($(GO) run ./internal/devpg/devpgctl start $(TESTPG)) || exit 1; \
		PAYMENTD_TEST_DATABASE_URL="$$url" $(GO) run ./internal/bench -out bench-results.json; rc=$$?; \
		$(GO) run ./internal/devpg/devpgctl stop $(TESTPG); exit $$rc; \
	fi

clean:
	rm -rf bin .data bench-results.json
